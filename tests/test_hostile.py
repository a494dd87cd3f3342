"""Issue 11 through the real daemon: hostile files end as their own error, never the daemon's.

Each test drops what an attacker (or an accident) would into real folders, runs
`wansync once`/`run` as a subprocess against the simulator, and checks that the file
ended where it must, that good work beside it finished, and that nothing was created,
uploaded, written or read that must not be. The in-process checks of the same readers
are in `test_hostile_units.py` and `test_hostile_files.py`; every case's file is in the
corpus, `tests/poison.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Env, drop, wait_until
from tests.poison import (
    _alias_bomb,
    replace_tracked,
    settled,
    untouched,
    write_corpus,
)
from wansync.simulator import Simulator

URL_FRAME = [{"type": "first_frame", "url": "https://example.com/frame.png"}]
GOOD_ID = "good-task-0001"


@pytest.fixture
def jobs_env(env: Env) -> Env:
    env.configure(submit={"max_per_second": 50, "search_for": 1.5})
    return env


def put(path: Path, content: str | bytes) -> Path:
    """A file written in place (a hostile producer does not bother with temp names)."""
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def job_text(**fields: Any) -> str:
    return json.dumps({"prompt": "p", "media": URL_FRAME, **fields})


def refused(env: Env, name: str, kind: str, code: str) -> dict[str, Any]:
    """The failed/ sidecar of a file refused with `code`, its file beside it."""
    data = env.ended(name, kind)
    assert data is not None, f"{name}{kind} did not end"
    assert data["state"] == "failed" and data["error"]["code"] == code, data["error"]
    assert (env.failed / f"{name}{kind}").exists() or (env.failed / f"{name}{kind}").is_symlink()
    return data


def good_task_finished(env: Env) -> None:
    data = env.ended("good")
    assert data is not None and data["state"] == "succeeded", data


def no_task_created(sim: Simulator) -> None:
    assert not sim.requests("submit"), "a create request was sent"
    assert not sim.desk.created


def test_job_meta_over_the_task_limit_is_refused_before_create(jobs_env, sim):
    """1: a job whose .task would pass 64 KiB is InvalidJobFile; no create is ever sent."""
    env = jobs_env
    put(env.inbox / "huge.job", job_text(meta={"blob": "x" * (70 * 1024)}))
    drop(env.inbox, "good", GOOD_ID)
    result = env.cli("once", "--timeout", "20")
    assert result.returncode == 1, result.stderr[-2000:]
    data = refused(env, "huge", ".job", "InvalidJobFile")
    assert data["error"]["message"].startswith("huge.job: meta: ")
    assert "64 KiB" in data["error"]["message"]
    assert not (env.failed / "huge.task").exists()
    no_task_created(sim)
    good_task_finished(env)


def test_job_name_of_245_bytes_is_created_once_and_finishes(jobs_env, sim):
    """2: a 245-byte job name: one create, its .task written, the video published."""
    from wansync.files.names import stem

    env = jobs_env
    name = "N" * 245
    put(env.inbox / f"{name}.job", job_text())
    result = env.cli("once", "--timeout", "40")
    assert result.returncode == 0, result.stderr[-2000:]
    data = env.ended(stem(name), ".job")
    assert data is not None and data["state"] == "succeeded", data
    assert data["name"] == name
    assert len(sim.desk.created) == 1 and len(sim.requests("submit")) == 1
    assert (env.outbox / f"{stem(name)}.mp4").stat().st_size > 0


def test_alias_bomb_job(jobs_env, sim):
    """3: a 560-byte YAML alias bomb is InvalidJobFile at once; the daemon stays small."""
    env = jobs_env
    put(env.inbox / "bomb.job", _alias_bomb())
    drop(env.inbox, "good", GOOD_ID)
    d = env.start("run")
    wait_until(lambda: env.ended("bomb", ".job") and env.ended("good"), 30, "both to end")
    assert d.proc.poll() is None, "the daemon died"
    rss_kib = int(Path(f"/proc/{d.proc.pid}/status").read_text().split("VmHWM:")[1].split()[0])
    assert d.stop() == 0
    data = refused(env, "bomb", ".job", "InvalidJobFile")
    assert "more than 10000 values" in data["error"]["message"]
    assert rss_kib < 100 * 1024, f"peak RSS {rss_kib // 1024} MiB"
    no_task_created(sim)
    good_task_finished(env)


def test_deep_job_and_deep_task_are_refused(env, sim):
    """4: `[`*3000 as a job, a .task 980 levels deep: each its file's error, no crash."""
    put(env.inbox / "brackets.job", "[" * 3000 + "]" * 3000)
    put(env.inbox / "deep.task", f'{{"task_id": "deep-task-0001", "m": {"[" * 980 + "]" * 980}}}')
    drop(env.inbox, "good", GOOD_ID)
    result = env.cli("once", "--timeout", "20")
    assert result.returncode == 1, result.stderr[-2000:]
    for name, kind, code in (("brackets", ".job", "InvalidJobFile"), ("deep", ".task", "")):
        data = refused(env, name, kind, code or "InvalidTaskFile")
        assert "nested deeper than 64 levels" in data["error"]["message"]
    no_task_created(sim)
    good_task_finished(env)


def test_task_name_not_utf8_goes_to_failed_under_an_escaped_name(env, sim):
    """4: `bad\\xff.task` goes to failed/ as `bad\\\\xff.task` (escaped), with its reason."""
    raw = os.fsencode(env.inbox) + b"/bad\xff.task"
    with open(raw, "wb") as fh:
        fh.write(b"bad-name-task-0001\n")
    drop(env.inbox, "good", GOOD_ID)
    d = env.start("run")
    wait_until(lambda: env.ended("bad\\xff") and env.ended("good"), 30, "both to end")
    assert d.proc.poll() is None, "the daemon died"
    assert d.stop() == 0
    data = refused(env, "bad\\xff", ".task", "InvalidTaskFile")
    assert data["name"] == "bad\\xff" and "not valid UTF-8" in data["error"]["message"]
    assert os.listdir(os.fsencode(env.failed)).count(b"bad\\xff.task") == 1
    assert not sim.requests("task", task_id="bad-name-task-0001")
    assert d.events("task.failed", name="bad\\xff", code="InvalidTaskFile")  # hooks, metrics
    good_task_finished(env)


def test_job_name_of_251_bytes_is_refused_before_create(jobs_env, sim):
    """4: a 251-byte job name (NAME.task would be 256 bytes): InvalidJobFile, no create."""
    from wansync.files.names import stem

    env = jobs_env
    name = "J" * 251
    put(env.inbox / f"{name}.job", job_text())
    drop(env.inbox, "good", GOOD_ID)
    d = env.start("run")
    wait_until(lambda: env.ended(stem(name), ".job") and env.ended("good"), 30, "both to end")
    assert d.proc.poll() is None, "the daemon died"
    assert d.stop() == 0
    data = refused(env, stem(name), ".job", "InvalidJobFile")
    assert "task file would be 256 bytes" in data["error"]["message"]
    no_task_created(sim)
    good_task_finished(env)


def sidecar_text(name: str, task_id: str, **fields: Any) -> str:
    data = {
        "schema": 1,
        "name": name,
        "task_id": task_id,
        "meta": {},
        "state": "polling",
        "polls": 2,
        "first_seen": "2026-11-28T18:00:00.000Z",
        "error": None,
        "output": None,
        "video": None,
    }
    return json.dumps({**data, **fields})


def test_wrongly_typed_sidecars_are_rebuilt_from_their_task(env, sim):
    """5: `polls: many`, `download: etag`, `video_url: 5`: rebuilt, and every task finishes."""
    edits = {
        "polls": {"polls": "many"},
        "etag": {"state": "downloading", "download": "etag"},
        "url": {"state": "downloading", "output": {"video_url": 5}},
    }
    for i, (name, fields) in enumerate(edits.items()):
        task_id = f"typed-task-000{i}"
        put(env.inbox / f"{name}.status.json", sidecar_text(name, task_id, **fields))
        drop(env.inbox, name, task_id)
    d = env.start("run")
    ended = env.wait_ended(*edits, timeout=30)
    assert d.proc.poll() is None, "the daemon died"
    invalid = {e["file"] for e in d.events("sidecar.invalid")}
    assert d.stop() == 0
    assert all(data["state"] == "succeeded" for data in ended.values()), ended
    assert invalid == {f"{n}.status.json" for n in edits}


def test_dangling_link_at_the_publish_target_at_start_up(env, sim):
    """6: a publish cut short, its sidecar's target now a dangling link: finished elsewhere."""
    put(env.failed / "cut.task", "cut-task-00001\n")
    (env.failed / "cut.status.json").symlink_to(env.root / "nowhere")
    error = {"code": "TaskFailed", "message": "m", "transient": False}
    put(
        env.inbox / "cut.status.json",
        sidecar_text("cut", "cut-task-00001", state="failed", published_as="cut", error=error),
    )
    drop(env.inbox, "good", GOOD_ID)
    d = env.start("run")
    d.wait_ready()
    wait_until(lambda: env.ended("good"), 30, "the good task to end")
    assert d.proc.poll() is None, "the daemon died"
    assert d.stop() == 0
    assert not (env.inbox / "cut.status.json").exists()
    final = json.loads((env.failed / "cut-2.status.json").read_text())
    assert final["published_as"] == "cut-2" and final["error"]["code"] == "TaskFailed"
    assert (env.failed / "cut.status.json").is_symlink()
    assert not (env.root / "nowhere").exists()


def test_published_as_outside_the_folders_is_not_followed(env, sim):
    """11: a sidecar saying `published_as: ../../ESCAPE` is ignored; nothing leaves the folders."""
    error = {"code": "X", "message": "m", "transient": False}
    fields = {"state": "failed", "published_as": "../../ESCAPE", "error": error}
    put(env.inbox / "esc.status.json", sidecar_text("esc", "escape-task-0001", **fields))
    drop(env.inbox, "esc", "escape-task-0001")
    result = env.cli("once", "--timeout", "20")
    assert result.returncode == 0, result.stderr[-2000:]
    data = env.ended("esc")
    assert data is not None and data["state"] == "succeeded", data
    outside = [env.failed / f"../../ESCAPE{s}" for s in (".task", ".status.json")]
    assert not any(os.path.lexists(p) for p in outside)


def test_job_image_that_is_a_link_is_refused_and_nothing_uploaded(jobs_env, sim, tmp_path):
    """12: `innocent.png -> id_key`: InvalidJobFile naming the field; no upload, no create."""
    env = jobs_env
    aside = tmp_path / "home"
    aside.mkdir()
    put(aside / "id_key", "-----BEGIN PRIVATE KEY-----\n")
    (aside / "innocent.png").symlink_to(aside / "id_key")
    media = [{"type": "first_frame", "path": str(aside / "innocent.png")}]
    put(env.inbox / "linked.job", json.dumps({"prompt": "p", "media": media}))
    result = env.cli("once", "--timeout", "20")
    assert result.returncode == 1, result.stderr[-2000:]
    data = refused(env, "linked", ".job", "InvalidJobFile")
    assert "media[0].path: " in data["error"]["message"]
    assert "is a symbolic link" in data["error"]["message"]
    assert not sim.requests("upload") and not sim.requests("policy")
    assert not sim.desk.objects
    no_task_created(sim)


def test_nan_in_a_task_meta_fails_it_and_every_sidecar_is_strict_json(env, sim):
    """16: NaN in a task's meta is InvalidTaskFile naming it; every sidecar is strict JSON."""
    put(env.inbox / "nan.task", '{"task_id": "nan-task-00001", "score": NaN}')
    drop(env.inbox, "good", GOOD_ID)
    result = env.cli("once", "--timeout", "20")
    assert result.returncode == 1, result.stderr[-2000:]
    data = refused(env, "nan", ".task", "InvalidTaskFile")
    assert "NaN" in data["error"]["message"]
    good_task_finished(env)

    def strict(name: str) -> None:
        raise ValueError(f"{name} in a sidecar")

    for path in [*env.outbox.glob("*.status.json"), *env.failed.glob("*.status.json")]:
        json.loads(path.read_text(), parse_constant=strict)
    assert not sim.requests("task", task_id="nan-task-00001")


def test_poison_corpus_into_a_running_daemon(jobs_env, sim, tmp_path):
    """Every poison at once beside good tasks: all settle, the good ones finish, no escape;
    no poison job made a create request (the name-clash job is left alone)."""
    env = jobs_env
    aside = tmp_path / "aside"
    corpus = write_corpus(env.inbox, env.outbox, env.failed, aside, sim)
    for i in range(3):
        drop(env.inbox, f"good-{i}", f"good-task-000{i}")
    d = env.start("run")
    d.wait_event("task.polled", name="swap")
    replace_tracked(env.inbox)

    def unsettled() -> list[str]:
        return [p.what for p in corpus if not settled(p, env.inbox, env.outbox, env.failed)]

    wait_until(
        lambda: not unsettled(), 60, lambda: "every poison to settle: " + ", ".join(unsettled())
    )
    env.wait_ended("good-0", "good-1", "good-2", timeout=30)
    assert d.proc.poll() is None, "the daemon died"
    assert d.stop() == 0
    assert untouched(aside, env.failed)
    assert [c["prompt"] for c in sim.desk.created] == []
    assert (env.inbox / "clash.job").is_file(), "the name-clash job, left alone"
    [taken] = d.events("job.name_taken", name="clash")
    assert taken["level"] == "error" and not d.events("job.queued", name="clash")
    assert not sim.desk.objects
