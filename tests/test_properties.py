"""Property-based: any input gives a valid result or the documented error, never a traceback."""

from __future__ import annotations

import contextlib
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wansync import config
from wansync.core.errors import ConfigError, TaskFileError
from wansync.files.taskfile import TASK_ID, parse

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)  # JSON has neither (see test_hostile)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
task_ids = st.from_regex(TASK_ID, fullmatch=True)


def parse_or_error(data: bytes):
    try:
        spec = parse(data)
    except TaskFileError as exc:
        assert str(exc)  # always a reason
        return None
    assert TASK_ID.match(spec.task_id)
    return spec


@given(st.binary(max_size=512))
def test_any_bytes(data):
    parse_or_error(data)


@given(st.text(max_size=300))
def test_any_text(text):
    parse_or_error(text.encode("utf-8"))


@given(json_values)
def test_any_json(value):
    parse_or_error(json.dumps(value).encode())


@given(
    task_ids, st.dictionaries(st.text().filter(lambda k: k != "task_id"), json_values, max_size=4)
)
def test_valid_json_tasks_keep_meta(task_id, meta):
    spec = parse(json.dumps({"task_id": task_id, **meta}).encode())
    assert spec.task_id == task_id and spec.meta == meta


@given(task_ids, st.sampled_from(["", "\n", "\r\n", "  \n\n", "\t"]))
def test_valid_bare_ids(task_id, padding):
    assert parse(f"{padding}{task_id}{padding}".encode()).task_id == task_id


keys = st.sampled_from(
    sorted(
        {k.split(".")[0] for k in config.SCHEMA}
        | {k.split(".", 1)[-1] for k in config.SCHEMA}
        | {"x"}
    )
)
documents = st.recursive(
    json_values, lambda inner: st.dictionaries(keys, inner, max_size=5), max_leaves=15
)


@given(documents)
def test_any_config_document(doc):
    try:
        cfg = config.from_mapping(doc)
    except ConfigError as exc:
        assert str(exc).split(":")[0]  # names the key (or "config")
        return
    assert cfg.poll.interval > 0 and cfg.download.concurrency >= 1


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_any_yaml_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "wansync.yaml"
    path.write_text(text, encoding="utf-8")
    with contextlib.suppress(ConfigError):
        config.load(str(path))
