"""Issue 11, in-process: the parsers and validators against hostile files, one case each.

The daemon-level stories (a real `wansync run` given the same files) are in
`test_hostile.py`; here each reader is driven directly, with real files in tmp folders.
"""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.poison import _alias_bomb
from wansync.core.errors import JobFileError, TaskFileError
from wansync.files.fsutil import write_bytes_atomic, write_json_atomic, write_new_file
from wansync.files.jobfile import parse as parse_job
from wansync.files.jobfile import read as read_job
from wansync.files.taskfile import parse as parse_task
from wansync.files.taskfile import read as read_task
from wansync.remote.api import parse_retry_after

ID = "af6efbc0-4bd4-4b2e-9a2b-1a2b3c4d5e6f"
FRAME = [{"type": "first_frame", "url": "https://example.com/frame.png"}]
MODEL = "wan2.7-i2v"


def job(**fields: object) -> bytes:
    return json.dumps({"prompt": "p", "media": FRAME, **fields}).encode()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# -- 1: a job's meta must fit the .task written for it ------------------------------------
def test_job_meta_over_the_task_limit_is_refused(tmp_path):
    """A job whose .task would pass 64 KiB is InvalidJobFile naming meta, before any send."""
    with pytest.raises(JobFileError, match=r"^meta: \d+ bytes as the job's \.task, over the 64"):
        parse_job(job(meta={"blob": "x" * (64 * 1024)}), MODEL, tmp_path, 10**6)
    spec = parse_job(job(meta={"blob": "x" * (60 * 1024)}), MODEL, tmp_path, 10**6)
    assert len(spec.meta["blob"]) == 60 * 1024


# -- 2 and 4: names --------------------------------------------------------------------------
def test_every_derived_name_of_a_250_byte_name_fits():
    """NAME.task may be 255 bytes; every other name is shortened (hash) to fit too."""
    from wansync.files import names

    name = "é" * 125  # 250 bytes
    names.check(name)
    for what, derived in names.derived(name).items():
        assert len(derived.encode()) <= 255, what
    assert names.producer_temp(f"{name}.task", 4194304).startswith(".")


def test_job_name_too_long_for_its_task_file_is_refused(tmp_path):
    """A 251-byte job name (NAME.task would be 256 bytes) is InvalidJobFile, read nothing."""
    path = tmp_path / ("J" * 251 + ".job")
    path.write_bytes(job())
    with pytest.raises(JobFileError, match=r"too long: 251 bytes, so its task file would be 256"):
        read_job(path, MODEL, 10**6)


def test_job_name_of_245_bytes_is_accepted(tmp_path):
    """245 bytes: `.NAME.task.PID.tmp` would pass 255, so wansync shortens that temp name."""
    path = tmp_path / ("J" * 245 + ".job")
    path.write_bytes(job())
    assert read_job(path, MODEL, 10**6).model == MODEL
    target = tmp_path / ("J" * 245 + ".task")
    write_new_file(target, b"x\n")  # the write the daemon does for the job's task
    assert target.read_bytes() == b"x\n"
    again = tmp_path / ("K" * 245 + ".task")
    write_bytes_atomic(again, b"y\n")  # `wansync add --name KKK…`: a producer-style temp
    assert again.read_bytes() == b"y\n"


def test_name_that_is_not_utf8_is_refused_and_escaped(tmp_path):
    """A name with bytes that are not UTF-8 is refused by both readers, shown escaped."""
    task = Path(os.fsdecode(os.fsencode(tmp_path) + b"/bad\xffname.task"))
    task.write_text(ID)
    with pytest.raises(TaskFileError, match=r"not valid UTF-8 \(shown as 'bad\\\\xffname'\)"):
        read_task(task)
    jobfile = task.with_name(task.name[:-5] + ".job")
    jobfile.write_bytes(job())
    with pytest.raises(JobFileError, match="not valid UTF-8"):
        read_job(jobfile, MODEL, 10**6)


# -- 3: YAML alias bomb ---------------------------------------------------------------------
def test_alias_bomb_job_is_refused_at_once(tmp_path):
    """560 bytes naming 9**9 strings: refused in well under a second, in little memory."""
    bomb = _alias_bomb().encode()
    assert len(bomb) < 700
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(JobFileError, match="more than 10000 values"):
            parse_job(bomb, MODEL, tmp_path, 10**6)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 1.0
    assert peak < 5 * 1024 * 1024


def test_many_aliases_within_bounds_are_fine(tmp_path):
    """Aliases as people use them (a shared block) still load."""
    text = (
        "prompt: p\nmedia: [{type: first_frame, url: 'https://e.com/a.png'}]\n"
        "meta:\n  base: &b {crew: [ann, bo], shot: 3}\n  take1: *b\n  take2: *b\n"
    )
    spec = parse_job(text.encode(), MODEL, tmp_path, 10**6)
    assert spec.meta["take2"] == {"crew": ["ann", "bo"], "shot": 3}


# -- 4: depth -------------------------------------------------------------------------------
def test_job_of_3000_brackets_is_refused_not_a_recursion_error(tmp_path):
    """3000 `[` then 3000 `]` is an InvalidJobFile saying how deep, never a RecursionError."""
    with pytest.raises(JobFileError, match="nested deeper than 64 levels"):
        parse_job(nested(3000).encode(), MODEL, tmp_path, 10**6)


def test_task_meta_980_deep_is_refused():
    """A .task whose meta is 980 levels deep is InvalidTaskFile (it could not be written)."""
    with pytest.raises(TaskFileError, match="nested deeper than 64 levels"):
        parse_task(f'{{"task_id": "{ID}", "meta": {nested(980)}}}'.encode())
    assert parse_task(f'{{"task_id": "{ID}", "meta": {nested(63)}}}'.encode()).task_id == ID


# -- 16: NaN and Infinity ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "shown"), [("NaN", "NaN"), ("-Infinity", "-Infinity"), ("1e999", "1e999")]
)
def test_task_meta_nan_or_infinity_is_refused(value, shown):
    """NaN/Infinity (and 1e999, which reads as infinity) are InvalidTaskFile naming it."""
    with pytest.raises(TaskFileError, match=shown):
        parse_task(f'{{"task_id": "{ID}", "score": {value}}}'.encode())


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1.0e+999"])
def test_job_meta_nan_or_infinity_is_refused(tmp_path, value):
    """A job's meta with NaN or infinity is InvalidJobFile naming the field."""
    text = "prompt: p\nmedia: [{type: first_frame, url: 'https://e.com/a.png'}]\n"
    text += f"meta: {{score: {value}}}\n"
    with pytest.raises(JobFileError, match=r"meta\.score: .* is not a number JSON allows"):
        parse_job(text.encode(), MODEL, tmp_path, 10**6)


def test_json_writes_are_strict(tmp_path):
    """Every JSON wansync writes is strict: NaN cannot be written (allow_nan=False)."""
    with pytest.raises(ValueError, match="JSON compliant"):
        write_json_atomic(tmp_path / "x.json", {"x": float("nan")})
    assert not (tmp_path / "x.json").exists()


# -- 8: Retry-After ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1e20", 600.0),
        ("inf", 600.0),
        ("-inf", 0.0),
        ("nan", None),
        ("-5", 0.0),
        ("99999999999", 600.0),
        ("9" * 5000, 600.0),
        ("Fri, 01 Jan 2100 00:00:00 GMT", 600.0),
        ("Fri, 01 Jan 9999 23:59:59 GMT", 600.0),
        ("Mon, 01 Jan 2001 00:00:00 GMT", 0.0),
        ("Mon, 99 Foo 99999 99:99:99 GMT", None),
        ("30", 30.0),
        ("0.5", 0.5),
        ("soon", None),
    ],
)
def test_retry_after_is_capped_at_ten_minutes(header, seconds):
    """Whatever the remote sends, at most 600 s, and nothing raises."""
    assert parse_retry_after(header) == seconds


# -- any bytes: only the file's own error ----------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_as_a_task_or_job_give_only_their_own_error(tmp_path_factory, data):
    """Arbitrary bytes: a TaskSpec/JobSpec or TaskFileError/JobFileError, nothing else."""
    base = tmp_path_factory.getbasetemp()
    for parse, error in ((parse_task, TaskFileError), (_parse_job_bytes(base), JobFileError)):
        try:
            parse(data)
        except error as exc:
            assert str(exc)


def _parse_job_bytes(base: Path):  # type: ignore[no-untyped-def]
    return lambda data: parse_job(data, MODEL, base, 10**6)


nasty_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["NaN", "1e999", "[" * 80, "&a [*a]", "*x", "!!binary aGk=", "2020-01-01"]),
)
nasty_yaml = st.lists(nasty_text, max_size=12).map(lambda parts: "\n".join(parts))


@settings(max_examples=300, deadline=None)
@given(nasty_yaml)
def test_any_yaml_like_text_gives_only_the_job_error(tmp_path_factory, text):
    """Text built from YAML's sharp edges: a JobSpec or a JobFileError, nothing else."""
    try:
        parse_job(text.encode(), MODEL, tmp_path_factory.getbasetemp(), 10**6)
    except JobFileError as exc:
        assert str(exc)
