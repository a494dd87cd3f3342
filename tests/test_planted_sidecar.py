"""A sidecar planted in the inbox (anyone in the group may write there) names another task:
it must never publish, move or delete that task's files."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from tests.helpers import drop, wait_until
from wansync.files import sidecar
from wansync.files.fsutil import write_json_atomic
from wansync.run import publish
from wansync.run.publish import Folders

VICTIM_ID = "victim-task-000001"
SIZE = 3_000_000


def planted(name: str, published_as: str, state: str, **extra: object) -> dict[str, object]:
    """What the attacker wrote: a terminal sidecar naming the victim's task."""
    record = sidecar.new(name, VICTIM_ID, {}, time.time())
    if state == "failed":
        record.error = sidecar.error("TaskFailed", "planted", False)
    data = sidecar.to_json(record)
    data.update(state=state, published_as=published_as, finished=sidecar.utc_iso(), **extra)
    return data


def test_a_live_sidecar_must_be_named_after_its_own_task(tmp_path):
    """In the inbox only `stem(name).status.json` is a task's sidecar; published_as must be
    `stem(name)` or `stem(name)-k`, the video `published_as.mp4`; published files may be
    named `published_as.status.json`."""
    video = {"path": "X.mp4", "bytes": 5}
    cases = [
        ("X.status.json", planted("victim", "X", "succeeded", video=video), False, False),
        ("X.status.json", planted("victim", "X", "succeeded", video=video), True, False),
        ("victim.status.json", planted("victim", "X", "succeeded", video=video), False, False),
        ("victim.status.json", planted("victim", "victim-02", "failed"), False, False),
        ("victim-2.status.json", planted("victim", "victim-2", "failed"), False, False),
        ("victim-2.status.json", planted("victim", "victim-2", "failed"), True, True),
        ("victim.status.json", planted("victim", "victim", "succeeded", video=video), True, False),
        ("victim.status.json", planted("victim", "victim-3", "failed"), False, True),
    ]
    for filename, data, published, ok in cases:
        path = tmp_path / filename
        path.write_text(json.dumps(data))
        assert (sidecar.read(path, published=published) is not None) == ok, (filename, data)


def test_resume_never_publishes_a_part_that_is_not_the_recorded_whole_mp4(tmp_path):
    """A terminal sidecar whose `.part` is cut short (another download still growing) or of
    another size: `PartRefused`, and nothing moved: the part, the task, the sidecar stay."""
    folders = Folders(*(tmp_path / n for n in ("inbox", "outbox", "failed")))
    for folder in (folders.inbox, folders.outbox, folders.failed):
        folder.mkdir()
    whole = b"\0\0\0\x10ftypisom\0\0\0\0" + b"\0\0\0\x10moov" + b"\0" * 8
    for body, recorded in ((whole[:20], 20), (whole, len(whole) + 1), (b"x" * 32, 32)):
        folders.part("victim").write_bytes(body)
        drop(folders.inbox, "victim", VICTIM_ID)
        data = planted("victim", "victim", "succeeded", video={"path": "victim.mp4", "bytes": 0})
        data["video"]["bytes"] = recorded
        write_json_atomic(folders.sidecar("victim"), data)
        with pytest.raises(publish.PartRefused):
            publish.resume(folders, sidecar.from_json(data), task_file_is_ours=True)
        assert folders.part("victim").read_bytes() == body
        assert folders.task("victim").exists() and folders.sidecar("victim").exists()
        assert sorted(p.name for p in folders.outbox.iterdir()) == [".victim.mp4.part"]
    folders.part("victim").write_bytes(whole)  # the real thing goes through
    data["video"]["bytes"] = len(whole)
    final = publish.resume(folders, sidecar.from_json(data), task_file_is_ours=True)
    assert final == folders.outbox / "victim.status.json"
    assert (folders.outbox / "victim.mp4").read_bytes() == whole


def test_a_planted_sidecar_naming_a_live_download_changes_nothing_of_it(env, sim):
    """The attacker's t1_orphan: while `victim` downloads, stop, plant X.status.json
    (succeeded, published_as X) and Y.status.json (failed) naming victim, restart: no
    X.* or Y.* is published, victim's `.part` is neither published nor deleted, and victim
    resumes from it and ends with its whole video. The planted files are not wansync's:
    moved to failed/ as they are (a user's file is never deleted)."""
    task = sim.add_task(VICTIM_ID, video_size=SIZE, video_rate=400_000)
    drop(env.inbox, "victim", VICTIM_ID)
    daemon = env.start()
    part = env.outbox / ".victim.mp4.part"
    wait_until(lambda: part.exists() and part.stat().st_size > 300_000, 30, "a partial download")
    assert daemon.stop() == 0
    size = part.stat().st_size
    video = {"path": "X.mp4", "bytes": 5}
    plants = {
        "X.status.json": json.dumps(planted("victim", "X", "succeeded", video=video)),
        "Y.status.json": json.dumps(planted("victim", "Y", "failed")),
    }
    for file, text in plants.items():
        (env.inbox / file).write_text(text)
    task.video_rate = None  # the rest comes at once
    again = env.start()
    ended = env.wait_ended("victim", timeout=60)["victim"]
    assert again.stop() == 0
    started = again.events("download.started", name="victim")
    assert started and started[0]["resume_from"] == size, started  # its part was kept
    assert ended["state"] == "succeeded" and ended["video"]["bytes"] == SIZE
    body = (env.outbox / "victim.mp4").read_bytes()
    assert hashlib.sha256(body).hexdigest() == ended["video"]["sha256"]
    assert not [p.name for p in env.outbox.iterdir() if p.name.startswith(("X", "Y"))]
    kept = {p.name: p.read_text() for p in env.failed.iterdir() if p.name.startswith(("X", "Y"))}
    assert kept == plants
    assert not again.events("task.publish_resumed")
    assert {e["file"] for e in again.events("sidecar.invalid")} >= {
        "X.status.json",
        "Y.status.json",
    }
