"""Issue 11, in-process: the parsers and validators against hostile files, one case each.

The daemon-level stories (a real `wansync run` given the same files) are in
`test_hostile.py`; here each reader is driven directly, with real files in tmp folders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import TEST_KEY
from tests.poison import _alias_bomb
from wansync import sidecar
from wansync.api import parse_retry_after
from wansync.errors import JobFileError, TaskFailed, TaskFileError
from wansync.fsutil import sweep_temp_files, write_bytes_atomic, write_json_atomic
from wansync.jobfile import parse as parse_job
from wansync.jobfile import read as read_job
from wansync.publish import Folders, free_name, publish, resume
from wansync.simulator import Simulator
from wansync.taskfile import parse as parse_task
from wansync.taskfile import read as read_task

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
    from wansync import names

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
    write_bytes_atomic(target, b"x\n")  # the write the daemon does for the job's task
    assert target.read_bytes() == b"x\n"


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


# -- 5 and 11: sidecars read back -----------------------------------------------------------
def good_sidecar(name: str = "t", **fields: object) -> dict:
    data = sidecar.new(name, ID, {"shot": 1}, 1_800_000_000.0)
    data.update(fields)
    return data


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
    sidecar.write(path, data)
    assert sidecar.read(path) == data
    del data["usage"], data["expires"]
    path.write_text(json.dumps(data))
    assert sidecar.read(path)["usage"] is None


@pytest.mark.parametrize("escape", ["../../ESCAPE", "/etc/passwd", ".hidden", "a/b", "x\0y", ""])
def test_published_as_must_be_a_plain_name(tmp_path, escape):
    """`published_as` that is a path (or hidden, or empty) makes the sidecar absent."""
    path = tmp_path / "t.status.json"
    error = sidecar.error("X", "m", False)
    path.write_text(json.dumps(good_sidecar(state="failed", error=error, published_as=escape)))
    assert sidecar.read(path) is None


def test_publish_never_moves_outside_its_folders(tmp_path):
    """Even handed a `published_as` of `../../ESCAPE`, publish chooses a plain name."""
    folders = Folders(*(tmp_path / "w" / n for n in ("inbox", "outbox", "failed")))
    for folder in (folders.inbox, folders.outbox, folders.failed):
        folder.mkdir(parents=True)
    folders.task("t").write_text(ID)
    data = good_sidecar(state="failed", error=sidecar.error("X", "m", False))
    data["published_as"] = "../../ESCAPE"
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
    data = good_sidecar(state="failed", error=sidecar.error("X", "m", False))
    publish_target = folders.failed / "t.status.json"
    data["published_as"] = "t"
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
    publish(folders, good_sidecar(state="succeeded", video=video))
    assert not os.path.lexists(folders.outbox / "t.mp4")


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


@pytest.fixture
def uploader():
    """An Uploader talking to the simulator's upload policy and storage."""
    from wansync.api import TaskApi
    from wansync.upload import Uploader

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
from wansync.api import TaskApi
from wansync.upload import Uploader
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


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


SIDECAR_FIELDS = [*sidecar.new("h", ID, {}, 0.0), "download", "published_as", "job"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(SIDECAR_FIELDS), json_like))
def test_any_sidecar_fields_read_or_are_absent(tmp_path_factory, fields):
    """Any values in a sidecar's known fields: read whole, or None; never an exception."""
    path = tmp_path_factory.getbasetemp() / "h.status.json"
    data = {**good_sidecar("h"), **fields}
    path.write_text(json.dumps(data))
    assert sidecar.read(path) in (None, {**data})
