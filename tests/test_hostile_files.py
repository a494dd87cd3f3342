"""Issue 11, in-process: sidecars read back, publish targets, scratch files and uploads.

What wansync reads back or writes in its folders, and a job's local files, against
links, FIFOs, swaps and wrong types; real files in tmp folders, the simulator for the
uploads. The parsers are in `test_hostile_units.py`, the daemon in `test_hostile.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import TEST_KEY
from wansync.core.errors import JobFileError, TaskFailed
from wansync.files import sidecar
from wansync.files.fsutil import sweep_temp_files, write_json_atomic
from wansync.files.jobfile import parse as parse_job
from wansync.run.publish import Folders, free_name, publish, resume
from wansync.simulator import Simulator

ID = "af6efbc0-4bd4-4b2e-9a2b-1a2b3c4d5e6f"
FRAME = [{"type": "first_frame", "url": "https://example.com/frame.png"}]
MODEL = "wan2.7-i2v"


# -- 5 and 11: sidecars read back -----------------------------------------------------------
def good_sidecar(name: str = "t", **fields: object) -> dict:
    data = sidecar.to_json(sidecar.new(name, ID, {"shot": 1}, 1_800_000_000.0))
    data.update(fields)
    return data


def error_json(code: str, message: str, transient: bool) -> dict:
    """`sidecar.error` as it is on disk."""
    record = sidecar.new("e", None, {}, 0.0)
    record.error = sidecar.error(code, message, transient)
    return sidecar.to_json(record)["error"]


@pytest.mark.parametrize(
    "fields",
    [
        {"polls": "many"},
        {"polls": -1},
        {"polls": True},
        {"state": "downloading", "download": "etag"},
        {"state": "downloading", "output": {"video_url": 5}},
        {"state": "downloading", "output": {"no_url": 1}},
        {"state": "exploded"},
        {"state": "failed", "error": None},
        {"error": "boom"},
        {"error": {"code": 1, "message": "m", "transient": False}},
        {"meta": [1, 2]},
        {"task_id": "../../etc"},
        {"first_seen": 5},
        {"output": "x"},
        {"video": {"path": "../v.mp4", "bytes": 1, "sha256": "x", "content_type": "v"}},
        {"state": "submitting"},  # a job's state without the job's record
        {"job": {"file": "x.job", "model": 5, "attempts": 0}},
        {"schema": 2},
        {"name": "other"},  # a sidecar of another task, renamed into place
    ],
)
def test_wrongly_typed_sidecar_reads_as_absent(tmp_path, fields):
    """Any field of the wrong type (or a state without what it needs) → None: rebuilt."""
    path = tmp_path / "t.status.json"
    path.write_text(json.dumps(good_sidecar(**fields)))
    assert sidecar.read(path) is None


def test_valid_sidecars_read_back_whole(tmp_path):
    """The sidecars wansync writes pass, and a missing optional field reads as its default."""
    path = tmp_path / "t.status.json"
    data = good_sidecar(state="downloading", output={"video_url": "https://x/v.mp4"})
    data["download"] = {"etag": '"abc"', "bytes": 10, "total": None}
    write_json_atomic(path, data)
    assert sidecar.to_json(sidecar.read(path)) == data
    del data["usage"], data["expires"]
    path.write_text(json.dumps(data))
    assert sidecar.read(path).usage is None


@pytest.mark.parametrize("escape", ["../../ESCAPE", "/etc/passwd", ".hidden", "a/b", "x\0y", ""])
def test_published_as_must_be_a_plain_name(tmp_path, escape):
    """`published_as` that is a path (or hidden, or empty) makes the sidecar absent."""
    path = tmp_path / "t.status.json"
    error = error_json("X", "m", False)
    path.write_text(json.dumps(good_sidecar(state="failed", error=error, published_as=escape)))
    assert sidecar.read(path) is None


def test_publish_never_moves_outside_its_folders(tmp_path):
    """Even handed a `published_as` of `../../ESCAPE`, publish chooses a plain name."""
    folders = Folders(*(tmp_path / "w" / n for n in ("inbox", "outbox", "failed")))
    for folder in (folders.inbox, folders.outbox, folders.failed):
        folder.mkdir(parents=True)
    folders.task("t").write_text(ID)
    data = sidecar.from_json(good_sidecar(state="failed", error=error_json("X", "m", False)))
    data.published_as = "../../ESCAPE"
    sidecar.write(folders.sidecar("t"), data)
    final = resume(folders, data, task_file_is_ours=True)
    assert final == folders.failed / "t.status.json"
    assert sorted(p.name for p in folders.failed.iterdir()) == ["t.status.json", "t.task"]
    assert not list(tmp_path.glob("ESCAPE*"))


# -- 6: links at publish targets --------------------------------------------------------------
def test_free_name_counts_a_dangling_link_as_taken(tmp_path):
    """A link that points nowhere still takes its name: nothing is written through it."""
    (tmp_path / "t.status.json").symlink_to(tmp_path / "nowhere")
    assert free_name(tmp_path, "t") == "t-2"


def test_resume_goes_around_a_link_planted_at_its_target(tmp_path):
    """A dangling link at the chosen sidecar name: the rest goes to a new free name."""
    folders = Folders(*(tmp_path / n for n in ("inbox", "outbox", "failed")))
    for folder in (folders.inbox, folders.outbox, folders.failed):
        folder.mkdir()
    folders.task("t").write_text(ID)
    data = sidecar.from_json(good_sidecar(state="failed", error=error_json("X", "m", False)))
    publish_target = folders.failed / "t.status.json"
    data.published_as = "t"
    sidecar.write(folders.sidecar("t"), data)
    publish_target.symlink_to(tmp_path / "nowhere")  # planted after the name was chosen
    final = resume(folders, data, task_file_is_ours=True)
    assert final == folders.failed / "t-2.status.json"
    assert json.loads(final.read_text())["published_as"] == "t-2"
    assert (folders.failed / "t-2.task").read_text() == ID
    assert publish_target.is_symlink() and not (tmp_path / "nowhere").exists()


def test_a_link_at_the_part_is_never_published(tmp_path):
    """A `.part` that is a link is not moved into the outbox as the video."""
    folders = Folders(*(tmp_path / n for n in ("inbox", "outbox", "failed")))
    for folder in (folders.inbox, folders.outbox, folders.failed):
        folder.mkdir()
    (tmp_path / "secret").write_text("key")
    folders.part("t").symlink_to(tmp_path / "secret")
    folders.task("t").write_text(ID)
    video = {"path": "t.mp4", "bytes": 3, "sha256": "x", "content_type": "video/mp4"}
    publish(folders, sidecar.from_json(good_sidecar(state="succeeded", video=video)))
    assert not os.path.lexists(folders.outbox / "t.mp4")


# -- 10: scratch files and reads --------------------------------------------------------------
def test_sidecar_write_never_goes_through_a_planted_link(tmp_path):
    """Links at the old temp name, or at the scratch folder itself, are not written through."""
    target = tmp_path / "t.status.json"
    scratch = tmp_path / ".wansync"
    scratch.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (scratch / "t.status.json.wansync-tmp").symlink_to(victim)
    write_json_atomic(target, {"a": 1})
    assert victim.read_text() == "keep" and json.loads(target.read_text()) == {"a": 1}
    sweep_temp_files(tmp_path)
    assert victim.read_text() == "keep"
    # the whole scratch folder replaced by a link to somewhere else
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.wansync-tmp").write_text("not ours")
    os.rename(scratch, tmp_path / "old-scratch")
    scratch.symlink_to(elsewhere)
    assert sweep_temp_files(tmp_path) == []
    assert (elsewhere / "x.wansync-tmp").exists()
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert sorted(p.name for p in elsewhere.iterdir()) == ["x.wansync-tmp"]
    assert scratch.is_dir() and not scratch.is_symlink()


def test_sidecar_that_is_a_fifo_or_link_is_not_read(tmp_path):
    """A FIFO at the sidecar's name does not block; a link is not followed."""
    os.mkfifo(tmp_path / "f.status.json")
    done = []
    reader = threading.Thread(
        target=lambda: done.append(sidecar.read(tmp_path / "f.status.json")), daemon=True
    )
    reader.start()
    reader.join(5)
    if reader.is_alive():  # blocked on the FIFO: free it, so the test run can end
        os.close(os.open(tmp_path / "f.status.json", os.O_WRONLY | os.O_NONBLOCK))
    assert done == [None]
    real = tmp_path / "real.json"
    real.write_text(json.dumps(good_sidecar("l")))
    (tmp_path / "l.status.json").symlink_to(real)
    assert sidecar.read(tmp_path / "l.status.json") is None


# -- 14: sidecar size -------------------------------------------------------------------------
def test_sidecar_over_1_mib_is_not_read(tmp_path):
    """A valid but 2 MiB sidecar reads as absent, and costs no 2 MiB to refuse."""
    path = tmp_path / "t.status.json"
    path.write_text(json.dumps(good_sidecar(meta={"pad": "p" * (2 * 1024 * 1024)})))
    tracemalloc.start()
    try:
        assert sidecar.read(path) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 512 * 1024


# -- 12: a job's local files ------------------------------------------------------------------
def test_job_image_that_is_a_link_is_refused(tmp_path):
    """`innocent.png -> ~/.ssh/id_x`: InvalidJobFile naming the field, nothing to upload."""
    (tmp_path / "id_x").write_text("PRIVATE KEY")
    (tmp_path / "innocent.png").symlink_to(tmp_path / "id_x")
    doc = {"prompt": "p", "media": [{"type": "first_frame", "path": "innocent.png"}]}
    with pytest.raises(JobFileError, match=r"media\[0\]\.path: 'innocent.png' is a symbolic link"):
        parse_job(json.dumps(doc).encode(), MODEL, tmp_path, 10**6)
    os.mkfifo(tmp_path / "fifo.png")
    old = {"model": "wan2.6-i2v", "prompt": "p", "image": "fifo.png"}
    with pytest.raises(JobFileError, match=r"image: 'fifo\.png' is not a regular file"):
        parse_job(json.dumps(old).encode(), MODEL, tmp_path, 10**6)


def test_only_pictures_audio_and_clips_are_local_files(tmp_path):
    """A document (`.txt`, `.md`, `.pdf`: common names for secrets) is never a local file,
    in the fields form (a Wan 3.0 `file` is a URL only) or the raw form."""
    (tmp_path / "notes.txt").write_text("a secret")
    doc = {"model": "wan3.0-video", "prompt": "p", "media": [{"type": "file", "path": "notes.txt"}]}
    with pytest.raises(JobFileError, match=r"media\[0\]\.path: a file is a URL, not a local file"):
        parse_job(json.dumps(doc).encode(), MODEL, tmp_path, 10**6)
    url = {
        "model": "wan3.0-video",
        "prompt": "p",
        "media": [{"type": "file", "url": "https://h/a.pdf"}],
    }
    assert parse_job(json.dumps(url).encode(), MODEL, tmp_path, 10**6).uploads == ()
    raw = {"model": "wan9.9-x", "endpoint": "aigc/video-generation/video-synthesis"}
    raw["input"] = {"prompt": "p", "file_url": {"path": "notes.txt"}}
    with pytest.raises(JobFileError, match=r"'notes.txt' is not a picture, audio or video file"):
        parse_job(json.dumps(raw).encode(), MODEL, tmp_path, 10**6)


def test_the_key_file_is_never_uploaded_whatever_its_name(tmp_path):
    """The API key file named like a picture: refused by device and inode on the opened
    descriptor, naming the field; the same file's twin (another inode) is a picture."""
    (tmp_path / "key.png").write_text("sk-secret\n")
    (tmp_path / "twin.png").write_text("sk-secret\n")
    st = os.stat(tmp_path / "key.png")
    keys = frozenset({(st.st_dev, st.st_ino)})
    for path in ("key.png", str(tmp_path / "key.png")):
        doc = {"prompt": "p", "media": [{"type": "first_frame", "path": path}]}
        with pytest.raises(JobFileError, match=r"media\[0\]\.path: .* is wansync's API key file"):
            parse_job(json.dumps(doc).encode(), MODEL, tmp_path, 10**6, keys)
    raw = {"input": {"prompt": "p", "media": [{"type": "first_frame", "url": {"path": "key.png"}}]}}
    with pytest.raises(JobFileError, match=r"input\.media\[0\]\.url\.path: 'key.png' is wansync"):
        parse_job(json.dumps(raw).encode(), MODEL, tmp_path, 10**6, keys)
    twin = {"prompt": "p", "media": [{"type": "first_frame", "path": "twin.png"}]}
    assert len(parse_job(json.dumps(twin).encode(), MODEL, tmp_path, 10**6, keys).uploads) == 1


@pytest.fixture
def uploader():
    """An Uploader talking to the simulator's upload policy and storage."""
    from wansync.remote.api import TaskApi
    from wansync.remote.upload import Uploader

    with Simulator(key=TEST_KEY) as sim:
        api = TaskApi(sim.url, TEST_KEY, 5.0)
        yield Uploader(api, 5.0), sim
        api.close()


@pytest.mark.parametrize("swap", ["fifo", "link to /dev/zero", "bigger file"])
def test_file_swapped_after_the_check_is_not_uploaded(tmp_path, uploader, swap):
    """Swapped for a FIFO, a link to /dev/zero or another file: UploadFailed, at once."""
    up, sim = uploader
    picture = tmp_path / "p.png"
    picture.write_bytes(b"\x89PNG" + b"x" * 100)
    doc = {"prompt": "p", "media": [{"type": "first_frame", "path": "p.png"}]}
    spec = parse_job(json.dumps(doc).encode(), MODEL, tmp_path, 10**6)
    picture.unlink()
    if swap == "fifo":
        os.mkfifo(picture)
    elif swap == "link to /dev/zero":
        picture.symlink_to("/dev/zero")
    else:
        picture.write_bytes(b"\x89PNG" + b"y" * 5000)
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(up.upload_all(MODEL, list(spec.uploads)))
        except TaskFailed as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    assert outcome, "the upload blocked"
    assert isinstance(outcome[0], TaskFailed) and outcome[0].code == "UploadFailed"
    assert "not sent" in outcome[0].message
    assert not sim.desk.objects


RSS_CHILD = """
import resource, sys
from pathlib import Path
from wansync.remote.api import TaskApi
from wansync.remote.upload import Uploader
api = TaskApi(sys.argv[1], sys.argv[2], 10.0)
up = Uploader(api, 10.0)
small = Path(sys.argv[3]).with_name("small.png"); small.write_bytes(b"x" * 100)
up.upload_all("wan2.7-i2v", [small])  # warm: imports, pools, policy
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
url, = up.upload_all("wan2.7-i2v", [Path(sys.argv[3])])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(after - before, url)
"""


def test_upload_streams_a_large_file_in_constant_memory(tmp_path):
    """A 64 MiB upload is streamed from its descriptor: peak RSS grows by under 16 MB."""
    big = tmp_path / "big.png"
    with big.open("wb") as fh:
        for i in range(64):
            fh.write(bytes([i]) * (1024 * 1024))
    with Simulator(key=TEST_KEY) as sim:
        out = subprocess.run(
            [sys.executable, "-c", RSS_CHILD, sim.url, TEST_KEY, str(big)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        grew_kib, url = out.stdout.split()
        stored = sim.desk.objects[url.removeprefix("oss://")]
    assert len(stored) == 64 * 1024 * 1024 and stored[-1:] == bytes([63])
    assert int(grew_kib) < 16 * 1024, f"peak RSS grew by {int(grew_kib) // 1024} MiB"


# -- any sidecar: read whole or absent ----------------------------------------------------
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


SIDECAR_FIELDS = [
    *sidecar.to_json(sidecar.new("h", ID, {}, 0.0)),
    "download",
    "published_as",
    "job",
]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(SIDECAR_FIELDS), json_like))
def test_any_sidecar_fields_read_or_are_absent(tmp_path_factory, fields):
    """Any values in a sidecar's known fields: read whole, or None; never an exception."""
    path = tmp_path_factory.getbasetemp() / "h.status.json"
    data = {**good_sidecar("h"), **fields}
    path.write_text(json.dumps(data))
    record = sidecar.read(path)
    assert record is None or sidecar.to_json(record) == {**data}
