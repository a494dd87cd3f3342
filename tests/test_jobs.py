""".job files: from a picture and a prompt to an MP4, with the task created at most once.

Real daemon subprocesses against the simulator; the crash tests make the simulator hold
a create request unanswered (`Simulator.stall`) and `kill -9` the daemon while it waits.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.helpers import TEST_KEY, Env, parse_log, searches, wait_until
from wansync.core.record import JobRecord
from wansync.files import sidecar
from wansync.remote.api import SUBMIT_PATH
from wansync.simulator import Simulator
from wansync.simulator.model import SimTask

SAMPLE_PNG = bytes.fromhex("89504e470d0a1a0a") + b"a tiny picture, not decoded by anyone"
URL_FRAME = [{"type": "first_frame", "url": "https://example.com/frame.png"}]


def drop_job(inbox: Path, name: str, doc: Any) -> Path:
    """Write a job the way producers should: a hidden temp file, then a rename."""
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc)
    tmp = inbox / f".{name}.job.tmp"
    tmp.write_text(text)
    target = inbox / f"{name}.job"
    os.rename(tmp, target)
    return target


def job_ended(env: Env, name: str) -> dict[str, Any] | None:
    return env.ended(name, ".job")


def wait_jobs(env: Env, *names: str, timeout: float = 30) -> dict[str, dict[str, Any]]:
    return env.wait_ended(*names, timeout=timeout, kind=".job")


def created(sim: Simulator, prompt: str | None = None) -> list[dict[str, Any]]:
    return [c for c in sim.desk.created if prompt is None or c["prompt"] == prompt]


@pytest.fixture
def jobs_env(env: Env) -> Env:
    env.configure(submit={"max_per_second": 50, "search_for": 1.5})
    return env


def test_url_job_becomes_an_mp4_with_its_job_and_task_beside_it(jobs_env, sim):
    env = jobs_env
    drop_job(
        env.inbox,
        "cat",
        {
            "prompt": "a cat waves",
            "media": URL_FRAME,
            "resolution": "720p",
            "duration": 5,
            "seed": 42,
            "watermark": False,
            "prompt_extend": True,
            "meta": {"shot": 7},
        },
    )
    d = env.start("run")
    data = wait_jobs(env, "cat")["cat"]
    assert d.stop() == 0
    assert data["state"] == "succeeded"
    assert data["meta"] == {"shot": 7}
    assert data["job"]["model"] == "wan2.7-i2v" and data["job"]["attempts"] == 1
    made = created(sim)
    assert len(made) == 1 and made[0]["task_id"] == data["task_id"]
    assert made[0]["body"] == {
        "model": "wan2.7-i2v",
        "input": {"prompt": "a cat waves", "media": URL_FRAME},
        "parameters": {
            "resolution": "720P",
            "duration": 5,
            "seed": 42,
            "watermark": False,
            "prompt_extend": True,
        },
    }
    for suffix in (".mp4", ".job", ".task", ".status.json"):
        assert (env.outbox / f"cat{suffix}").exists(), suffix
    assert data["video"]["sha256"] == sim.video_sha256(data["task_id"])
    assert yaml.safe_load((env.outbox / "cat.task").read_text())["task_id"] == data["task_id"]
    assert not [p for p in env.inbox.iterdir() if not p.name.startswith(".")]


def test_local_files_are_uploaded_then_referenced_as_oss(jobs_env, sim, tmp_path):
    env = jobs_env
    pictures = env.inbox / "pictures"  # a real folder: no link, no `..` on the way
    pictures.mkdir()
    (pictures / "first.png").write_bytes(SAMPLE_PNG)
    (pictures / "last.png").write_bytes(SAMPLE_PNG[::-1])
    (pictures / "old.jpg").write_bytes(b"jpeg bytes")
    drop_job(
        env.inbox,
        "new",
        {
            "prompt": "from first to last",
            "media": [
                {"type": "first_frame", "path": str(pictures / "first.png")},
                {"type": "last_frame", "path": "pictures/last.png"},  # against the inbox
            ],
        },
    )
    drop_job(
        env.inbox, "old", {"model": "wan2.6-i2v", "prompt": "older", "image": "pictures/old.jpg"}
    )
    d = env.start("run")
    ended = wait_jobs(env, "new", "old")
    assert d.stop() == 0
    assert all(e["state"] == "succeeded" for e in ended.values())
    by_prompt = {c["prompt"]: c["body"]["input"] for c in created(sim)}
    media = by_prompt["from first to last"]["media"]
    assert [m["type"] for m in media] == ["first_frame", "last_frame"]
    first, last = (m["url"].removeprefix("oss://") for m in media)
    assert sim.desk.objects[first] == SAMPLE_PNG and first.endswith("/first.png")
    assert sim.desk.objects[last] == SAMPLE_PNG[::-1]
    old = by_prompt["older"]
    assert set(old) == {"prompt", "img_url"}
    assert sim.desk.objects[old["img_url"].removeprefix("oss://")] == b"jpeg bytes"
    assert (pictures / "first.png").exists(), "a user's picture is never moved or removed"


@pytest.mark.parametrize("key_name", ["key.txt", "key.png"])
def test_a_job_never_uploads_the_daemons_key_file(jobs_env, sim, key_name):
    """`api.key_file: key.txt` named as a Wan 3.0 `file` (a document: a URL only) or in
    the raw form, and the same key under a picture's name as a first frame (refused by
    device and inode): every job fails InvalidJobFile naming the field; nothing is
    uploaded or created."""
    env = jobs_env
    key = env.root / key_name
    key.write_text(TEST_KEY + "\n")
    key.chmod(0o600)
    env.configure(api={"key_file": str(key)})
    drop_job(
        env.inbox,
        "leak",
        {"model": "wan3.0-video", "prompt": "p", "media": [{"type": "file", "path": str(key)}]},
    )
    raw = {"prompt": "p", "media": [{"type": "first_frame", "url": {"path": str(key)}}]}
    drop_job(env.inbox, "raw", {"model": "wan3.0-video", "input": raw})
    frame = [{"type": "first_frame", "path": str(key)}]
    drop_job(env.inbox, "frame", {"model": "wan2.7-i2v", "prompt": "p", "media": frame})
    result = env.cli("once", "--timeout", "30", key=None)  # the key from key_file only
    assert result.returncode == 1, result.stderr
    errors = {n: job_ended(env, n)["error"] for n in ("leak", "raw", "frame")}
    assert {e["code"] for e in errors.values()} == {"InvalidJobFile"}
    assert "media[0].path: a file is a URL, not a local file" in errors["leak"]["message"]
    if key_name == "key.txt":
        assert "is not a picture, audio or video file" in errors["raw"]["message"]
        assert "is not a first_frame file" in errors["frame"]["message"]
    else:
        for name, where in (("raw", "input.media[0].url.path"), ("frame", "media[0].path")):
            assert f"{where}: {str(key)!r} is wansync's API key file" in errors[name]["message"]
    assert not sim.requests("upload") and not sim.requests("policy") and not created(sim)


def test_a_hundred_jobs_never_exceed_the_in_progress_limit(tmp_path):
    with Simulator(key=TEST_KEY, pending_polls=2, running_polls=2, max_in_progress=5) as sim:
        env = Env(tmp_path, sim, submit={"max_per_second": 50, "max_in_progress": 5})
        names = [f"job-{i:03d}" for i in range(100)]
        for name in names:
            drop_job(env.inbox, name, {"prompt": f"prompt {name}", "media": URL_FRAME})
        d = env.start("run")
        try:
            ended = wait_jobs(env, *names, timeout=150)
            assert d.stop() == 0
        finally:
            env.reap()
        assert all(e["state"] == "succeeded" for e in ended.values())
        assert len(created(sim)) == 100
        assert {c["prompt"] for c in created(sim)} == {f"prompt {n}" for n in names}
        assert sim.desk.most_in_progress == 5, "the limit was used, and never passed"
        assert sim.desk.rejected_busy == 0, "the daemon kept to the limit by itself"


def test_a_429_on_submit_backs_off_and_retries_until_a_slot_frees(tmp_path):
    """Another client uses the account: the service says 429 and nothing is lost."""
    with Simulator(key=TEST_KEY, pending_polls=3, running_polls=3, max_in_progress=2) as sim:
        env = Env(tmp_path, sim, submit={"max_per_second": 50, "max_in_progress": 5})
        names = [f"busy-{i}" for i in range(8)]
        for name in names:
            drop_job(env.inbox, name, {"prompt": name, "media": URL_FRAME})
        d = env.start("run")
        try:
            ended = wait_jobs(env, *names, timeout=90)
            assert d.stop() == 0
        finally:
            env.reap()
        assert all(e["state"] == "succeeded" for e in ended.values())
        assert sim.desk.rejected_busy > 0, "the test must have hit the service's limit"
        assert sorted(c["prompt"] for c in created(sim)) == sorted(names)
        assert d.events("job.retry_later", code="Throttling.AllocationQuota")


def test_every_invalid_field_fails_the_job_as_invalid_job_file(jobs_env, sim, tmp_path):
    env = jobs_env
    (tmp_path / "song.mp3").write_bytes(b"ID3 audio")
    (tmp_path / "empty.png").write_bytes(b"")
    bad: dict[str, tuple[Any, str]] = {
        "not-yaml": ("prompt: [unclosed", "not valid YAML"),
        "a-list": ("- just\n- a list\n", "must be a mapping"),
        "unknown": ({"prompt": "p", "media": URL_FRAME, "colour": "red"}, "colour: unknown"),
        "prompt-type": ({"prompt": 7, "media": URL_FRAME}, "prompt: must be non-empty text"),
        "prompt-long": ({"prompt": "x" * 5001, "media": URL_FRAME}, "prompt: longer than"),
        "neg-type": (
            {"prompt": "p", "negative_prompt": [], "media": URL_FRAME},
            "negative_prompt: must be",
        ),
        "model-type": ({"model": 2.7, "prompt": "p", "media": URL_FRAME}, "model: must be"),
        "no-media": ({"prompt": "p"}, "media: must be a list"),
        "media-item": ({"prompt": "p", "media": ["x.png"]}, "media[0]: must be a mapping"),
        "media-type": (
            {"prompt": "p", "media": [{"type": "middle", "url": "https://e.com/a.png"}]},
            "media[0].type: 'middle' is not one of",
        ),
        "media-key": (
            {"prompt": "p", "media": [{"type": "first_frame", "uri": "https://e.com/a.png"}]},
            "media[0].uri: unknown field",
        ),
        "media-both": (
            {"prompt": "p", "media": [{"type": "first_frame", "url": "https://e/a", "path": "a"}]},
            "media[0]: give exactly one of url or path",
        ),
        "media-url": (
            {"prompt": "p", "media": [{"type": "first_frame", "url": "ftp://e.com/a.png"}]},
            "media[0].url: must be an http(s):// or oss:// URL",
        ),
        "media-missing-file": (
            {"prompt": "p", "media": [{"type": "first_frame", "path": "nowhere.png"}]},
            "media[0].path: 'nowhere.png': no such file or directory (looked for ",
        ),
        "media-empty-file": (
            {"prompt": "p", "media": [{"type": "first_frame", "path": f"{tmp_path}/empty.png"}]},
            "is empty",
        ),
        "media-wrong-kind": (
            {"prompt": "p", "media": [{"type": "first_frame", "path": str(tmp_path / "song.mp3")}]},
            "is not a first_frame file",
        ),
        "media-twice": ({"prompt": "p", "media": URL_FRAME * 2}, "first_frame given twice"),
        "media-no-first": (
            {"prompt": "p", "media": [{"type": "last_frame", "url": "https://e.com/a.png"}]},
            "needs exactly one of first_frame or first_clip",
        ),
        "media-old-model": (
            {"model": "wan2.6-i2v", "prompt": "p", "media": URL_FRAME},
            "media: wan2.6-i2v takes one image",
        ),
        "img-url-new-model": (
            {"prompt": "p", "img_url": "https://e.com/a.png"},
            "img_url: wan2.7-i2v takes its image in media",
        ),
        "old-no-image": ({"model": "wan2.6-i2v", "prompt": "p"}, "img_url: give the first frame"),
        "resolution": ({"prompt": "p", "media": URL_FRAME, "resolution": "4K"}, "resolution:"),
        "duration-range": ({"prompt": "p", "media": URL_FRAME, "duration": 30}, "duration: 30"),
        "duration-type": (
            {"prompt": "p", "media": URL_FRAME, "duration": "5"},
            "duration: '5' is not a whole number",
        ),
        "seed": ({"prompt": "p", "media": URL_FRAME, "seed": -1}, "seed: -1 is not between"),
        "watermark": ({"prompt": "p", "media": URL_FRAME, "watermark": "no"}, "watermark:"),
        "prompt-extend": (
            {"prompt": "p", "media": URL_FRAME, "prompt_extend": 1},
            "prompt_extend: 1 is not true or false",
        ),
        "meta-type": ({"prompt": "p", "media": URL_FRAME, "meta": [1]}, "meta: must be a mapping"),
        "meta-date": (
            "prompt: p\nmedia: [{type: first_frame, url: 'https://e.com/a.png'}]\n"
            "meta: {when: 2026-01-01}\n",
            "meta.when: a date is not a JSON value",
        ),
    }
    for name, (doc, _) in bad.items():
        drop_job(env.inbox, name, doc)
    (env.inbox / "binary.job").write_bytes(b"\xff\xfe\x00bad")
    bad["binary"] = ("", "not UTF-8")
    result = env.cli("once", "--timeout", "30")
    assert result.returncode == 1, result.stderr
    for name, (_, words) in bad.items():
        data = job_ended(env, name)
        assert data is not None, name
        assert data["state"] == "failed", name
        assert data["error"]["code"] == "InvalidJobFile", name
        assert data["error"]["message"].startswith(f"{name}.job: "), data["error"]["message"]
        assert words in data["error"]["message"], (name, data["error"]["message"])
        assert (env.failed / f"{name}.job").exists()
    assert not sim.requests("submit"), "nothing invalid may be sent"


def test_a_4xx_answer_fails_the_job_with_its_code_and_is_not_retried(jobs_env, sim):
    env = jobs_env
    sim.add_fault("submit", "status", status=400, code="InvalidParameter.DataInspection")
    drop_job(env.inbox, "rude", {"prompt": "p", "media": URL_FRAME})
    result = env.cli("once", "--timeout", "30")
    assert result.returncode == 1
    data = job_ended(env, "rude")
    assert data["error"]["code"] == "InvalidParameter.DataInspection"
    assert len(sim.requests("submit")) == 1 and not created(sim)


def test_an_unanswered_create_is_found_in_the_task_list_not_sent_again(jobs_env, sim):
    env = jobs_env
    sim.add_fault("submit", "reset", created=True)  # the task is made, the answer is lost
    drop_job(env.inbox, "lost", {"prompt": "lost answer", "media": URL_FRAME})
    result = env.cli("once", "--timeout", "30")
    assert result.returncode == 0, result.stderr
    data = job_ended(env, "lost")
    assert data["state"] == "succeeded"
    assert data["job"]["found_by"] == "task list"
    assert len(sim.requests("submit")) == 1, "an uncertain create is never re-sent"
    assert [c["task_id"] for c in created(sim)] == [data["task_id"]]


STRANGER = "SOMEONE ELSE s clip"  # a task another program on the account made


def strangers_task(sim: Simulator, task_id: str, ended: bool) -> SimTask:
    """A task of the job's model, in its window, made by someone else with another prompt:
    `ended` already (its answer echoes its prompt), or PENDING until the test ends it."""
    polls = 0 if ended else 10**6
    return sim.add_task(
        task_id, model="wan2.2-t2v-plus", prompt=STRANGER, pending_polls=polls, running_polls=0
    )


MY_CLIP = {"model": "wan2.2-t2v-plus", "prompt": "my own clip"}


def lost_create_beside_a_stranger(env, sim, stranger_id: str, created: bool):
    """The job's create answer is lost (`created`: the task was made all the same) while a
    stranger's ended task of the same model is in the window; `once` runs to its end.
    Returns its result and the job's ended sidecar."""
    sim.add_fault("submit", "reset", **({"created": True} if created else {}))
    strangers_task(sim, stranger_id, ended=True)
    drop_job(env.inbox, "mine", MY_CLIP)
    result = env.cli("once", "--timeout", "30")
    return result, job_ended(env, "mine")


def test_a_strangers_task_in_the_window_is_not_taken_as_the_jobs(jobs_env, sim):
    """The create is lost (no task made) and someone else's ended task of the model is in
    the window: its answer echoes another prompt, so it is not taken; the job ends
    SubmitUncertain naming it, nothing published, the stranger's video untouched."""
    env = jobs_env
    result, data = lost_create_beside_a_stranger(env, sim, "stranger-ended-0001", created=False)
    assert result.returncode == 1, result.stderr
    assert data["state"] == "failed" and data["error"]["code"] == "SubmitUncertain"
    assert "so are not its: stranger-ended-0001" in data["error"]["message"]
    assert data["task_id"] is None and not (env.outbox / "mine.mp4").exists()
    assert not sim.requests("video"), "the stranger's video is never fetched"
    refused = [e for e in parse_log(result.stderr) if e["event"] == "job.not_ours"]
    assert [e["task_id"] for e in refused] == ["stranger-ended-0001"]
    assert len(sim.requests("submit")) == 1 and not created(sim)


def test_a_strangers_running_task_taken_from_the_list_is_refused_when_it_ends(jobs_env, sim):
    """Found while it echoed no prompt yet (RUNNING), the stranger's task is taken; its
    end echoes another prompt: nothing is fetched or published, the job ends
    SubmitUncertain in failed/ saying so."""
    env = jobs_env
    sim.add_fault("submit", "reset")
    stranger = strangers_task(sim, "stranger-running-01", ended=False)
    drop_job(env.inbox, "mine", MY_CLIP)
    d = env.start("once", "--timeout", "30")
    wait_until(
        lambda: (env.sidecar(env.inbox, "mine") or {}).get("task_id") == stranger.task_id,
        20,
        "the stranger's unended task to be taken from the list",
    )
    with sim._lock:  # its owner's task ends now: its answer echoes its prompt
        stranger.pending_polls = 0
    assert d.wait(30) == 1
    data = job_ended(env, "mine")
    assert data["state"] == "failed" and data["error"]["code"] == "SubmitUncertain"
    assert data["task_id"] == "stranger-running-01" and data["job"]["found_by"] == "task list"
    assert "is not this job's" in data["error"]["message"]
    assert not sim.requests("video") and not list(env.outbox.iterdir())
    assert (env.failed / "mine.job").exists()
    # the advice holds: `retry` searches again, skips that task, and creates nothing
    assert env.cli("retry", "mine").returncode == 0
    assert env.cli("once", "--timeout", "30").returncode == 1
    again = env.sidecar(env.failed, "mine-2")  # failed/mine.* is the first end's
    assert again["error"]["code"] == "SubmitUncertain" and again["task_id"] is None
    assert len(sim.requests("submit")) == 1 and not created(sim)


def test_the_jobs_own_task_is_taken_beside_a_strangers(jobs_env, sim):
    """The create made a task but its answer is lost, and a stranger's ended task of the
    model is in the window too: the stranger's echoes another prompt, so the job's own is
    the one left (before, two candidates ended it SubmitUncertain)."""
    env = jobs_env
    result, data = lost_create_beside_a_stranger(env, sim, "stranger-ended-0002", created=True)
    assert result.returncode == 0, result.stderr
    assert data["state"] == "succeeded" and data["job"]["found_by"] == "task list"
    assert [c["task_id"] for c in created(sim)] == [data["task_id"]]
    assert (env.outbox / "mine.mp4").exists()


def test_a_5xx_without_a_task_ends_as_submit_uncertain_with_advice(jobs_env, sim):
    env = jobs_env
    sim.add_fault("submit", "status", status=503)  # nothing made, but nobody can know that
    drop_job(env.inbox, "unsure", {"prompt": "p", "media": URL_FRAME})
    result = env.cli("once", "--timeout", "30")
    assert result.returncode == 1
    data = job_ended(env, "unsure")
    assert data["error"]["code"] == "SubmitUncertain"
    assert "wansync retry unsure" in data["error"]["message"]
    assert len(sim.requests("submit")) == 1
    assert len(searches(sim)) == 3, "searched three times before giving up"
    # the advice: `retry` searches the same window again first (nothing there: no create)
    assert env.cli("retry", "unsure").returncode == 0
    assert env.cli("once", "--timeout", "30").returncode == 1
    assert len(sim.requests("submit")) == 1 and not created(sim)
    # and only `retry --force` creates it anew
    assert env.cli("retry", "unsure", "--force").returncode == 0
    assert env.cli("once", "--timeout", "30").returncode == 0
    assert len(created(sim)) == 1


@pytest.mark.parametrize("when", ["before", "after"])
def test_kill_9_while_the_simulator_withholds_the_create_answer(jobs_env, sim, when):
    """Killed while its create waits (task not made / made): never re-sent, never lost."""
    env = jobs_env
    env.configure(api={"timeout": 30})  # the daemon must still be waiting when it is killed
    stall = sim.stall("create", when=when)
    drop_job(env.inbox, "crash", {"prompt": f"crash {when} the task is made", "media": URL_FRAME})
    d = env.start("run")
    assert stall.reached.wait(20), f"the create to reach the simulator ({when})"
    d.kill()
    wait_until(lambda: sim.requests("submit"), 10, "the held create to be logged")
    assert env.sidecar(env.inbox, "crash")["state"] == "submitting"
    made_before = len(created(sim))
    assert made_before == (0 if when == "before" else 1)
    result = env.cli("once", "--timeout", "30")
    data = job_ended(env, "crash")
    assert data is not None, "the job is never lost"
    assert len(created(sim)) == made_before, "a restart never creates the task again"
    assert len(sim.requests("submit")) == 1, "the create was sent once, and never again"
    if when == "before":  # a task may have been made: the user is told to check
        assert result.returncode == 1
        assert data["error"]["code"] == "SubmitUncertain"
    else:
        assert result.returncode == 0, result.stderr
        assert data["state"] == "succeeded" and data["task_id"] == created(sim)[0]["task_id"]
        assert data["job"]["found_by"] == "task list"


def test_a_restart_after_the_task_id_was_recorded_but_not_its_task_file(jobs_env, sim):
    """Crash state built on disk: the sidecar has the new task id, no `.task` yet; no re-create.

    This is the daemon killed between writing the task id into the job's sidecar
    (`state: polling`) and writing `NAME.task`: the test makes the task through the
    simulator's create endpoint, writes that sidecar itself, then starts the daemon on it.
    """
    env = jobs_env
    drop_job(env.inbox, "crash", {"prompt": "crash after the record", "media": URL_FRAME})
    answer = requests.post(
        sim.url + SUBMIT_PATH,
        json={
            "model": "wan2.7-i2v",
            "input": {"prompt": "crash after the record", "media": URL_FRAME},
        },
        headers={"Authorization": f"Bearer {TEST_KEY}", "X-DashScope-Async": "enable"},
        timeout=10,
    )
    task_id = answer.json()["output"]["task_id"]
    journal = sidecar.new("crash", task_id, {}, time.time())
    started = sidecar.utc_iso()
    journal.state = "polling"
    journal.job = JobRecord("crash.job", "wan2.7-i2v", 1, started, started, None)
    sidecar.write(env.inbox / "crash.status.json", journal)
    assert not (env.inbox / "crash.task").exists()
    result = env.cli("once", "--timeout", "30")
    assert result.returncode == 0, result.stderr
    data = job_ended(env, "crash")
    assert data is not None, "the job is never lost"
    assert data["state"] == "succeeded" and data["task_id"] == task_id
    assert data["job"]["found_by"] is None
    assert len(created(sim)) == 1, "a restart never creates the task again"
    assert len(sim.requests("submit")) == 1


def test_kill_9_while_the_create_is_on_the_wire(jobs_env, sim):
    """Sent, made, but the answer never read: the restart finds it in the list."""
    env = jobs_env
    sim.add_fault("submit", "slow", delay=30, created=True)
    drop_job(env.inbox, "wire", {"prompt": "on the wire", "media": URL_FRAME})
    d = env.start("run")
    wait_until(lambda: created(sim), 20, "the task to be made")
    d.kill()
    assert env.sidecar(env.inbox, "wire")["state"] == "submitting"
    assert env.cli("once", "--timeout", "30").returncode == 0
    data = job_ended(env, "wire")
    assert data["state"] == "succeeded" and data["job"]["found_by"] == "task list"
    assert len(created(sim)) == 1, "a re-sent create would have made a second task"


def test_a_queued_job_removed_from_the_inbox_is_forgotten(jobs_env, sim):
    env = jobs_env
    env.configure(submit={"max_in_progress": 1})
    sim.add_task("slow-external-task-1", pending_polls=10_000)
    (env.inbox / "holder.task").write_text("slow-external-task-1\n")  # fills the one slot
    job = drop_job(env.inbox, "later", {"prompt": "p", "media": URL_FRAME})
    d = env.start("run")
    d.wait_event("job.queued", name="later")
    wait_until(lambda: env.sidecar(env.inbox, "later"), 10, "the queued sidecar")
    job.unlink()
    d.wait_event("job.removed", name="later")
    wait_until(lambda: not (env.inbox / "later.status.json").exists(), 10, "sidecar removed")
    assert d.stop() == 0
    assert not created(sim)


def test_submit_wait_goes_from_a_picture_to_an_mp4(jobs_env, sim, tmp_path):
    env = jobs_env
    picture = tmp_path / "portrait.png"
    picture.write_bytes(SAMPLE_PNG)
    result = env.cli("submit", str(picture), "--prompt", "she smiles", "--wait", "--timeout", "30")
    assert result.returncode == 0, result.stderr
    mp4 = Path(result.stdout.strip())
    assert mp4 == env.outbox / "portrait.mp4"
    digest = hashlib.sha256(mp4.read_bytes()).hexdigest()
    assert digest == sim.video_sha256(created(sim)[0]["task_id"])
    # again, with a daemon running: the command watches instead, and picks a free name
    d = env.start("run")
    d.wait_ready()
    result = env.cli("submit", str(picture), "--prompt", "she laughs", "--wait", "--timeout", "30")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).read_bytes()[4:8] == b"ftyp"
    assert d.stop() == 0
    assert len(created(sim)) == 2


def test_submit_rejects_a_bad_picture_before_writing_anything(jobs_env, tmp_path):
    env = jobs_env
    result = env.cli("submit", str(tmp_path / "missing.png"), "--prompt", "p")
    assert result.returncode == 2
    assert result.stderr == f"wansync: {tmp_path / 'missing.png'}: no such file or directory\n"
    assert not list(env.inbox.glob("*.job"))
