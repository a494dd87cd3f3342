"""The typed task record and its sidecar: real sidecars round-trip byte for byte.

tests/data/sidecars/ holds sidecars written by the daemon (a `.task` and a `.job`
through every state, with hook records, against the simulator; a picture task's group),
plus the older and planted shapes wansync must keep reading. tests/data/
sidecars-before-outputs/ holds the same sidecars as the daemon wrote them before the
`outputs` key: read and written again, each is its sidecars/ twin.
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
BEFORE_OUTPUTS = sorted((Path(__file__).parent / "data" / "sidecars-before-outputs").glob("*.json"))


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


@pytest.mark.parametrize("path", BEFORE_OUTPUTS, ids=lambda p: p.stem)
def test_a_sidecar_from_before_outputs_gains_them_and_nothing_else(path: Path) -> None:
    """An older sidecar (no `outputs` key) written again: `outputs` right after `video`
    (its video, or null), every other byte as it was."""
    raw = path.read_bytes()
    written = as_written(sidecar.to_json(sidecar.from_json(json.loads(raw))))
    assert written == (path.parent.parent / "sidecars" / path.name).read_bytes()
    data = json.loads(written)
    assert data.pop("outputs") == ([data["video"]] if data["video"] else None)
    assert as_written(data) == raw


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


def test_a_picture_groups_sidecar_names_every_file_and_each_files_download() -> None:
    """Written by the daemon for four pictures asked, one not made, png and jpeg mixed:
    three outputs in file order, no video; while downloading, each file's own ETag."""
    done = load("succeeded-pictures")
    assert [o.path for o in done.outputs] == ["kite.1.jpg", "kite.2.png", "kite.3.jpg"]
    assert done.video is None and done.published_as == "kite"
    assert [o.extension for o in done.outputs] == ["jpg", "png", "jpg"]
    going = load("downloading-pictures")
    assert going.outputs == [] and going.download is not None
    assert [f.etag for f in going.download.files] == [
        going.download.file(k, 3).etag for k in range(3)
    ]
    assert going.download.bytes == sum(f.bytes for f in going.download.files)


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
    """`new`: the 18 keys, in order, state polling, no files yet."""
    out = sidecar.to_json(sidecar.new("clip", "task-1", {"shot": 1}, 0.0))
    assert list(out) == [
        *("schema", "name", "task_id", "meta", "state", "task_status", "polls", "first_seen"),
        *("last_polled", "next_poll", "finished", "request_id", "error", "output", "usage"),
        *("expires", "video", "outputs"),
    ]
    assert out["video"] is None and out["outputs"] is None
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


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"path": "../../escape.png"}, "outputs must be"),
        ({"path": "other.2.png"}, "outputs[1].path 'other.2.png' is not 'kite.2.png'"),
        ({"path": "kite.2.jpg"}, "is not 'kite.2.png'"),  # a PNG's name ends .png
        ({"content_type": "text/html"}, "outputs must be"),
        ({"bytes": -1}, "outputs must be"),
    ],
)
def test_a_planted_outputs_entry_is_refused(change: dict, why: str, tmp_path: Path) -> None:
    """`outputs` read back names this task's published group only: plain names, the
    group's own (`published_as` + `.k.EXT`, EXT what the type says), known types."""
    data = json.loads((SIDECARS[0].parent / "succeeded-pictures.json").read_bytes())
    data["outputs"][1] = {**data["outputs"][1], "content_type": "image/png", **change}
    if "path" not in change:
        data["outputs"][1]["path"] = "kite.2.png"
    path = tmp_path / "kite.status.json"
    path.write_text(json.dumps(data))
    assert why in str(sidecar.problem(data, path.name, published=True))
    assert sidecar.read(path, published=True) is None


def test_outputs_of_more_than_sixteen_files_or_a_video_not_among_them_is_refused() -> None:
    """At most 16 files; `video`, when set, is one of `outputs`."""
    data = json.loads((SIDECARS[0].parent / "succeeded-pictures.json").read_bytes())
    many = {**data, "outputs": [data["outputs"][0]] * 17}
    assert "outputs must be" in str(sidecar.problem(many, "kite.status.json", True))
    stray = {**data, "video": {"path": "kite.mp4", "bytes": 1}}
    assert sidecar.problem(stray, "kite.status.json", True) == "video is not one of outputs"
