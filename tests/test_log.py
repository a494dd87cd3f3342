"""Redaction: no URL query string and no registered secret survives into a log line."""

from __future__ import annotations

import dataclasses
import io
import json
import logging

import pytest

from wansync import log


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        ("https://v.aliyuncs.com/a.mp4?Expires=1&Signature=abc", "https://v.aliyuncs.com/a.mp4"),
        (
            "Max retries exceeded with url: /v/x.mp4?Expires=1&Signature=07 (Caused by X)",
            "Max retries exceeded with url: /v/x.mp4 (Caused by X)",
        ),
        ("why? no query here", "why? no query here"),
    ],
)
def test_query_strings_are_removed(text, clean):
    assert log.scrub(text) == clean


def test_json_lines_carry_no_secret_even_from_stdlib_loggers():
    """structlog and stdlib (urllib3, watchdog) lines are both JSON and both scrubbed."""
    stream = io.StringIO()
    log.add_secret("sk-unit-test-secret")
    log.configure("info", "json", stream=stream)
    log.get("test").info(
        "task.polled", url="https://h/v.mp4?Signature=x", detail="key sk-unit-test-secret"
    )
    logging.getLogger("urllib3.connectionpool").warning("retrying /v.mp4?Expires=1&Signature=2")
    try:
        raise ValueError("boom sk-unit-test-secret")
    except ValueError:
        log.get("test").exception("daemon.crashed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert next(e["event"] for e in lines) == "task.polled" and len(lines) == 3
    text = stream.getvalue()
    assert "sk-unit-test-secret" not in text and "Signature" not in text
    assert isinstance(lines[2]["exception"], list)  # a structured field, one line


def test_a_line_below_the_level_is_never_built_and_a_reload_changes_that_at_once():
    """Most polls are a debug line: at level info it must not be made (its fields, the
    structlog chain) only to be dropped; a reload to debug makes it again."""
    from wansync.core import events as ev

    stream = io.StringIO()
    log.configure("info", "json", stream)
    made: list[str] = []

    class Logger:
        def __getattr__(self, level: str):
            return lambda event, **fields: made.append(f"{level} {event}")

    consume = ev.log_consumer(Logger(), log.enabled("wansync.daemon"))
    polled = ev.TaskPolled(
        at=0.0,
        name="a",
        task_id="t-1",
        task_status="RUNNING",
        polls=2,
        seconds=0.1,
        changed=False,
        url=None,
        found_by=None,
        started=None,
    )
    changed = dataclasses.replace(polled, task_status="SUCCEEDED", changed=True)
    consume(polled)
    consume(changed)
    assert made == ["info task.polled"], "the unchanged poll's debug line is not made"
    log.set_level("debug")
    consume(polled)
    assert made == ["info task.polled", "debug task.polled"]
    log.set_level("info")
