"""The typed task record and its sidecar: real sidecars round-trip byte for byte.

tests/data/sidecars/ holds sidecars written by the daemon before the record was typed
(a `.task` and a `.job` through every state, with hook records, against the simulator),
plus the older and planted shapes wansync must keep reading.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from wansync.core.record import DownloadState, HookRecord, Output
from wansync.files import sidecar
from wansync.files.names import stem

SIDECARS = sorted((Path(__file__).parent / "data" / "sidecars").glob("*.json"))


def as_written(data: dict) -> bytes:
    """The bytes `write_json_atomic` puts on disk for `data`."""
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False).encode() + b"\n"


@pytest.mark.parametrize("path", SIDECARS, ids=lambda p: p.stem)
def test_a_real_sidecar_round_trips_byte_for_byte(path: Path) -> None:
    """from_json then to_json gives back the very bytes the daemon wrote."""
    raw = path.read_bytes()
    record = sidecar.from_json(json.loads(raw))
    assert as_written(sidecar.to_json(record)) == raw


@pytest.mark.parametrize("path", SIDECARS, ids=lambda p: p.stem)
def test_a_sidecar_read_and_written_again_is_unchanged_on_disk(path: Path, tmp_path: Path) -> None:
    """`read` (every check) and `write` (atomic) leave a sidecar's bytes as they were."""
    raw = path.read_bytes()
    live = tmp_path / f"{stem(json.loads(raw)['name'])}{sidecar.SUFFIX}"
    live.write_bytes(raw)
    record = sidecar.read(live)
    assert record is not None
    sidecar.write(live, record)
    assert live.read_bytes() == raw


def load(name: str) -> sidecar.TaskRecord:
    return sidecar.from_json(json.loads((SIDECARS[0].parent / f"{name}.json").read_bytes()))


def test_the_record_is_typed_and_the_video_is_its_first_mp4() -> None:
    """A succeeded job: one MP4 output (the legacy `video`), its download, hook and job."""
    record = load("succeeded-job")
    assert record.state == "succeeded" and record.polls > 0
    assert record.outputs == [record.video] and isinstance(record.video, Output)
    assert record.video.content_type == "video/mp4" and record.video.path.endswith(".mp4")
    assert (
        isinstance(record.download, DownloadState) and record.download.bytes == record.video.bytes
    )
    assert record.hook == HookRecord("succeeded", "pending", 0, None)
    assert record.job is not None and record.job.file.endswith(".job")


def test_an_older_shape_is_kept_until_that_part_changes() -> None:
    """A `download` with only its etag stays so; once the download moves, it is rewritten."""
    record = load("legacy-shapes-and-unknown-keys")
    assert sidecar.to_json(record)["download"] == {"etag": '"abc"'}
    assert sidecar.to_json(record)["note"] == {"by": "a later wansync", "keys": [1, 2]}
    record.download = dataclasses.replace(record.download, bytes=10)  # type: ignore[type-var]
    record.error = None
    out = sidecar.to_json(record)
    assert out["download"] == {"etag": '"abc"', "bytes": 10, "total": None}
    assert out["error"] is None and out["published_as"] is None


def test_a_part_set_to_none_leaves_the_sidecar() -> None:
    """Dropping the hook record drops the key (not a `null` a hook reader would refuse)."""
    record = load("failed-hook")
    record.hook = None
    assert "hook" not in sidecar.to_json(record)


def test_a_fresh_record_is_the_sidecar_wansync_always_started_with() -> None:
    """`new`: the 17 keys, in order, state polling."""
    out = sidecar.to_json(sidecar.new("clip", "task-1", {"shot": 1}, 0.0))
    assert list(out) == [
        *("schema", "name", "task_id", "meta", "state", "task_status", "polls", "first_seen"),
        *("last_polled", "next_poll", "finished", "request_id", "error", "output", "usage"),
        *("expires", "video"),
    ]
    assert out["state"] == "polling" and out["first_seen"] == "1970-01-01T00:00:00.000Z"


def test_from_json_refuses_a_field_of_the_wrong_type() -> None:
    """The validators stand in front of the record: no ill-typed value gets in."""
    data = json.loads((SIDECARS[0].parent / "polling-running.json").read_bytes())
    with pytest.raises(ValueError, match="polls"):
        sidecar.from_json({**data, "polls": "many"})


def test_importing_the_core_loads_no_io_module() -> None:
    """core/ depends on nothing outside core: no remote, files, run, config, log, nor
    urllib3, requests, yaml or structlog (a fresh interpreter, so nothing was loaded yet)."""
    code = (
        "import sys, wansync.core.lifecycle, wansync.core.tracker, wansync.core.messages,"
        " wansync.core.effects, wansync.core.record, wansync.core.events;"
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = out.stdout.split()
    ours = {m for m in loaded if m.startswith("wansync")}
    assert ours == {"wansync", "wansync.core"} | {m for m in ours if m.startswith("wansync.core.")}
    assert not {"urllib3", "requests", "yaml", "structlog"} & set(loaded)
