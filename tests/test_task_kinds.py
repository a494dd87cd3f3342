"""Every task kind's files, through the real daemon against the simulator.

A SUCCEEDED answer names one video (`video_url`) or pictures (`results[]`, `choices[]`):
each file comes down into its own `.part`, is checked for what it is, and the group is
published under one free name (`NAME.EXT`, or `NAME.1.EXT` … for several), the sidecar
and the task file last. Each story checks the bytes (sha256 against what the simulator
served), the names and the sidecar.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import TEST_KEY, Daemon, Env, drop, wait_until
from tests.kindsamples import EXAMPLES
from wansync.core import jobcheck, kinds
from wansync.core.record import Output
from wansync.files import sidecar
from wansync.run import publish

PNG = "image/png"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def outbox_names(env: Env) -> list[str]:
    """What a consumer that ignores dotfiles sees in the outbox."""
    return sorted(p.name for p in env.outbox.iterdir() if not p.name.startswith("."))


def succeeded_polls(sim: Any, task_id: str) -> int:
    """How many polls of `task_id` the simulator answered SUCCEEDED."""
    return sum(1 for r in sim.requests("task", task_id) if r.get("task_status") == "SUCCEEDED")


def assert_group(env: Env, data: dict[str, Any], name: str, hashes: list[str], types: list[str]):
    """The sidecar lists the group's files, in order, and each is the file it says."""
    outputs = data["outputs"]
    assert [o["sha256"] for o in outputs] == hashes
    assert [o["content_type"] for o in outputs] == types
    for output in outputs:
        path = env.outbox / output["path"]
        assert path.stat().st_size == output["bytes"] and sha256(path) == output["sha256"]
    assert data["state"] == "succeeded" and data["error"] is None
    assert data["published_as"] == name
    videos = [o for o in outputs if o["content_type"] == "video/mp4"]
    assert data["video"] == (videos[0] if videos else None)
    return [o["path"] for o in outputs]


# -- pictures ---------------------------------------------------------------------------------
def test_a_picture_task_lands_every_picture_in_one_poll_cycle_of_succeeded(env, sim):
    """results[] with n=4, one a failed sub-result: three PNGs, numbered in the answer's
    order, the sidecar and the task, after the one poll that saw SUCCEEDED."""
    task_id = "t2i-pictures-0001"
    sim.add_task(task_id, shape="results", pictures=4, failed_results=1)
    drop(env.inbox, "kite", task_id)
    result = env.cli("once", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    assert outbox_names(env) == [
        "kite.1.png",
        "kite.2.png",
        "kite.3.png",
        "kite.status.json",
        "kite.task",
    ]
    assert succeeded_polls(sim, task_id) == 1  # no poll after the one that saw SUCCEEDED
    data = env.sidecar(env.outbox, "kite")
    paths = assert_group(env, data, "kite", sim.picture_sha256s(task_id), [PNG] * 3)
    assert paths == ["kite.1.png", "kite.2.png", "kite.3.png"]
    failed = [r for r in data["output"]["results"] if "url" not in r]
    assert len(failed) == 1 and failed[0]["code"] == "InternalError.Timeout"  # kept
    deadlines = [
        int(r["url"].split("Expires=")[1].split("&")[0])
        for r in data["output"]["results"]
        if "url" in r
    ]
    assert sidecar.parse_iso(data["expires"]) == min(deadlines)
    assert data["download"]["files"] and len(data["download"]["files"]) == 3
    assert not [p for p in env.outbox.iterdir() if p.name.endswith(".part")]


def test_a_messages_style_task_lands_its_choices(env, sim):
    """choices[].message.content[].image: one picture per item, in the answer's order."""
    task_id = "image-choices-0001"
    sim.add_task(task_id, shape="choices", pictures=3)
    drop(env.inbox, "shop", task_id)
    result = env.cli("once", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    data = env.sidecar(env.outbox, "shop")
    paths = assert_group(env, data, "shop", sim.picture_sha256s(task_id), [PNG] * 3)
    assert paths == ["shop.1.png", "shop.2.png", "shop.3.png"]
    assert outbox_names(env) == [*paths, "shop.status.json", "shop.task"]
    assert len(data["output"]["choices"]) == 3 and succeeded_polls(sim, task_id) == 1


@pytest.mark.parametrize(
    ("fmt", "pictures", "names", "types"),
    [
        ("jpeg", 1, ["one.jpg"], ["image/jpeg"]),
        ("webp", 1, ["one.webp"], ["image/webp"]),
        ("mixed", 2, ["one.1.png", "one.2.jpg"], [PNG, "image/jpeg"]),
    ],
)
def test_a_pictures_name_comes_from_what_its_bytes_are(env, sim, fmt, pictures, names, types):
    """One picture is `NAME.EXT`; EXT is `jpg`, `webp` or `png` from the bytes' signature."""
    task_id = f"pictures-{fmt}-0001"
    sim.add_task(task_id, shape="results", pictures=pictures, picture_format=fmt)
    drop(env.inbox, "one", task_id)
    result = env.cli("once", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    data = env.sidecar(env.outbox, "one")
    assert assert_group(env, data, "one", sim.picture_sha256s(task_id), types) == names
    assert outbox_names(env) == sorted([*names, "one.status.json", "one.task"])


def test_a_text_to_video_task_lands_one_mp4(env, sim):
    """A wan2.7-t2v task made at its create endpoint: one MP4, `NAME.mp4`, as `video` and
    as the one entry of `outputs`."""
    model, fields = EXAMPLES["text-to-video (wan2.7)"]
    kind = kinds.kind_for(model)
    assert kind is not None and kind.files == "mp4"
    body = jobcheck.request_body(kind, model, fields)
    answer = requests.post(
        sim.url + kinds.SERVICES + kind.endpoint,
        json=body,
        headers={"Authorization": f"Bearer {TEST_KEY}", "X-DashScope-Async": "enable"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["output"]["task_id"]
    drop(env.inbox, "lighthouse", task_id)
    result = env.cli("once", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    data = env.sidecar(env.outbox, "lighthouse")
    paths = assert_group(env, data, "lighthouse", [sim.video_sha256(task_id)], ["video/mp4"])
    assert paths == ["lighthouse.mp4"] and data["video"] == data["outputs"][0]
    assert outbox_names(env) == ["lighthouse.mp4", "lighthouse.status.json", "lighthouse.task"]


# -- what cannot be fetched -------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["video_url", "results", "choices"])
def test_an_answer_naming_no_file_ends_as_unsupported_output_after_three(env, sim, shape):
    """SUCCEEDED with no file to fetch: retried as MalformedResponse twice, the third
    answer ends it in failed/ as UnsupportedOutput, its output kept (not 24 h of polls)."""
    task_id = f"no-files-{shape.replace('_', '-')}-01"
    sim.add_task(task_id, shape=shape, pictures=2, with_url=False)
    drop(env.inbox, "empty", task_id)
    started = time.monotonic()
    result = env.cli("once", "--timeout", "60")
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 30
    data = env.sidecar(env.failed, "empty")
    assert data["error"]["code"] == "UnsupportedOutput" and data["error"]["transient"] is False
    assert "3 answers in a row" in data["error"]["message"]
    assert data["output"]["task_status"] == "SUCCEEDED"  # the answer is kept to read
    assert data["outputs"] is None and data["video"] is None
    assert succeeded_polls(sim, task_id) == 3
    transient = [json.loads(line) for line in result.stderr.splitlines() if "transient" in line]
    codes = [e["code"] for e in transient if e.get("event") == "task.transient_error"]
    assert codes == ["MalformedResponse", "MalformedResponse"]
    assert sorted(p.name for p in env.failed.iterdir()) == ["empty.status.json", "empty.task"]


def test_a_picture_that_is_an_html_page_is_download_rejected(env, sim):
    """Storage's HTML page served as `image/png`, or as text/html: never a picture."""
    from tests.videohost import VideoHost

    page = b"<html><body>AccessDenied</body></html>"
    with VideoHost(body=page) as host:
        url = f"http://127.0.0.1:{host.port}/pictures/a.png?Expires=1&Signature=x"
        sim.add_task("html-picture-0001", shape="results", pictures=2, picture_urls=[url, url])
        sim.add_task("html-picture-0002", shape="results", pictures=2)
        sim.add_fault("picture", "html", task_id="html-picture-0002", count=10)
        drop(env.inbox, "page", "html-picture-0001")
        drop(env.inbox, "typed", "html-picture-0002")
        result = env.cli("once", "--timeout", "60")
    assert result.returncode == 1, result.stderr
    page_error = env.sidecar(env.failed, "page")["error"]
    assert page_error["code"] == "DownloadRejected"
    assert "not a PNG, JPEG or WebP picture" in page_error["message"]
    typed = env.sidecar(env.failed, "typed")["error"]
    assert typed["code"] == "DownloadRejected" and "text/html" in typed["message"]
    assert outbox_names(env) == []
    assert not [p.name for p in env.outbox.iterdir()], "no .part is left behind"


# -- names ------------------------------------------------------------------------------------
def test_a_name_clash_moves_the_whole_group_to_name_2(env, sim):
    """`kite.2.png` is someone else's: the group is `kite-2.*`, every file of it, and the
    file that was there is untouched."""
    (env.outbox / "kite.2.png").write_bytes(b"not ours")
    task_id = "clash-pictures-0001"
    sim.add_task(task_id, shape="results", pictures=3)
    drop(env.inbox, "kite", task_id)
    result = env.cli("once", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    data = env.sidecar(env.outbox, "kite-2")
    assert data["name"] == "kite"
    paths = assert_group(env, data, "kite-2", sim.picture_sha256s(task_id), [PNG] * 3)
    assert paths == ["kite-2.1.png", "kite-2.2.png", "kite-2.3.png"]
    assert outbox_names(env) == sorted([*paths, "kite-2.status.json", "kite-2.task", "kite.2.png"])
    assert (env.outbox / "kite.2.png").read_bytes() == b"not ours"


# -- hooks, status ----------------------------------------------------------------------------
RECORDER = """
import json, os, sys
with open(sys.argv[1], "a") as fh:
    fh.write(json.dumps({k: v for k, v in os.environ.items() if k.startswith("WANSYNC_")}) + "\\n")
"""


def test_a_picture_tasks_hook_gets_every_file_and_no_video(env, sim, monkeypatch):
    """WANSYNC_OUTPUTS: every published file, one absolute path a line; no WANSYNC_VIDEO
    (one inherited is dropped)."""
    monkeypatch.setenv("WANSYNC_VIDEO", "/inherited.mp4")
    script, runs = env.root / "recorder.py", env.root / "runs.jsonl"
    script.write_text(RECORDER)
    env.configure(hooks={"on_success": f"{sys.executable} {script} {runs}"})
    task_id = "hook-pictures-0001"
    sim.add_task(task_id, shape="results", pictures=2)
    drop(env.inbox, "duo", task_id)
    result = env.cli("once", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    [seen] = [json.loads(line) for line in runs.read_text().splitlines()]
    files = [str(env.outbox / "duo.1.png"), str(env.outbox / "duo.2.png")]
    assert seen["WANSYNC_OUTPUTS"] == "\n".join(files)
    assert "WANSYNC_VIDEO" not in seen
    assert seen["WANSYNC_NAME"] == "duo" and seen["WANSYNC_EVENT"] == "succeeded"
    assert seen["WANSYNC_SIDECAR"] == str(env.outbox / "duo.status.json")
    assert [sha256(Path(f)) for f in files] == sim.picture_sha256s(task_id)
    assert env.sidecar(env.outbox, "duo")["hook"]["state"] == "done"


def test_a_video_tasks_hook_gets_its_video_both_ways(env, sim):
    """A video task: WANSYNC_VIDEO and WANSYNC_OUTPUTS both name the MP4."""
    script, runs = env.root / "recorder.py", env.root / "runs.jsonl"
    script.write_text(RECORDER)
    env.configure(hooks={"on_success": f"{sys.executable} {script} {runs}"})
    drop(env.inbox, "clip", "hook-video-0001")
    result = env.cli("once", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    [seen] = [json.loads(line) for line in runs.read_text().splitlines()]
    assert seen["WANSYNC_VIDEO"] == seen["WANSYNC_OUTPUTS"] == str(env.outbox / "clip.mp4")


def test_status_shows_a_tasks_files(env, sim):
    """`status`: the one file's name, or a count for several; `--json` lists them."""
    sim.add_task("status-pictures-01", shape="results", pictures=4)
    drop(env.inbox, "many", "status-pictures-01")
    drop(env.inbox, "clip", "status-video-0001")
    assert env.cli("once", "--timeout", "60").returncode == 0
    table = env.cli("status").stdout.splitlines()
    assert table[0].split()[:5] == ["WHERE", "NAME", "TASK", "ID", "STATE"]
    assert "FILES" in table[0]
    rows = {line.split()[1]: line for line in table[1:]}
    assert "4 files" in rows["many"] and "clip.mp4" in rows["clip"]
    shown = {r["name"]: r for r in json.loads(env.cli("status", "--json").stdout)}
    assert [o["path"] for o in shown["many"]["outputs"]] == [f"many.{k}.png" for k in range(1, 5)]
    assert [o["sha256"] for o in shown["many"]["outputs"]] == sim.picture_sha256s(
        "status-pictures-01"
    )
    assert [o["path"] for o in shown["clip"]["outputs"]] == ["clip.mp4"]


# -- a group publish cut by kill -9 -----------------------------------------------------------
def answer(sim: Any, task_id: str) -> dict[str, Any]:
    """The task's SUCCEEDED answer, as the daemon gets it (polled until it says so)."""

    def poll() -> dict[str, Any] | None:
        got = requests.get(
            f"{sim.url}/api/v1/tasks/{task_id}",
            headers={"Authorization": f"Bearer {TEST_KEY}"},
            timeout=10,
        ).json()
        return got if got["output"]["task_status"] == "SUCCEEDED" else None

    return wait_until(poll, 10, f"{task_id} to succeed")


def test_a_picture_that_is_an_mp4_is_download_rejected(env, sim):
    """A `results[]` URL that serves a video: a picture task's file must be a picture."""
    sim.add_task("video-as-picture-1")
    url = answer(sim, "video-as-picture-1")["output"]["video_url"]
    sim.add_task("mp4-picture-0001", shape="results", pictures=1, picture_urls=[url])
    drop(env.inbox, "movie", "mp4-picture-0001")
    result = env.cli("once", "--timeout", "60")
    assert result.returncode == 1, result.stderr
    error = env.sidecar(env.failed, "movie")["error"]
    assert error["code"] == "DownloadRejected" and "not a PNG, JPEG or WebP" in error["message"]


def prepare_group_publish(env: Env, sim: Any, name: str, task_id: str) -> list[Path]:
    """The inbox and outbox as a daemon leaves them once every file of a 3-picture task
    is whole and verified and the publish's first step (the name, durable in the inbox
    sidecar) is done: the `.part` files, the `.task`, the terminal sidecar. Returns the
    moves still to do, in order: (the parts, the task, the sidecar)."""
    sim.add_task(task_id, shape="results", pictures=3)
    got = answer(sim, task_id)
    folders = publish.Folders(env.inbox, env.outbox, env.failed)
    task = sim.tasks[task_id]
    record = sidecar.new(name, task_id, {}, time.time())
    record.state, record.task_status, record.output = "succeeded", "SUCCEEDED", got["output"]
    parts = []
    for k, made in enumerate(sim.pictures.made(task)):
        body = sim.pictures.body(task, made)
        parts.append(folders.part(name, k, 3, "png"))
        parts[-1].write_bytes(body)
        digest = hashlib.sha256(body).hexdigest()
        record.outputs.append(Output(f"{name}.{k + 1}.png", len(body), digest, PNG))
    drop(env.inbox, name, task_id)
    publish.finalize(folders, record)
    return [*parts, env.inbox / f"{name}.task", env.inbox / f"{name}.status.json"]


@pytest.mark.parametrize("moves_done", [0, 1, 2, 3, 4])
def test_a_group_publish_cut_between_two_renames_is_finished_under_its_name(env, sim, moves_done):
    """kill -9 after any of the group's moves (the files, the task; the sidecar last):
    the next start moves the rest under the name chosen before the first, so every file
    is published once under one name, and nothing is fetched again."""
    (env.outbox / "pics.3.png").write_bytes(b"an older picture")  # the group is pics-2
    moves = prepare_group_publish(env, sim, "pics", "crash-pictures-01")
    polls = len(sim.requests("task"))
    suffixes = [".1.png", ".2.png", ".3.png", ".task", ".status.json"]
    for src, suffix in list(zip(moves, suffixes, strict=True))[:moves_done]:
        os.rename(src, env.outbox / f"pics-2{suffix}")  # what the daemon had done
    result = env.cli("once", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    data = env.sidecar(env.outbox, "pics-2")
    paths = assert_group(env, data, "pics-2", sim.picture_sha256s("crash-pictures-01"), [PNG] * 3)
    assert outbox_names(env) == sorted([*paths, "pics-2.status.json", "pics-2.task", "pics.3.png"])
    assert (env.outbox / "pics.3.png").read_bytes() == b"an older picture"
    assert [p.name for p in env.inbox.iterdir() if not p.name.startswith(".")] == []
    assert len(sim.requests("task")) == polls and not sim.requests("picture")


def strace_kills_before_renaming(path: Path) -> list[str]:
    """strace, as a prefix of a command, that sends SIGKILL to it on entering the first
    rename of `path` (the kernel's kill -9; the rename never happens)."""
    calls = "rename,renameat,renameat2"
    return ["strace", "-qq", "-o", os.devnull, "-e", f"trace={calls}", "-P", str(path),
            "-e", f"inject={calls}:signal=KILL:when=1"]  # fmt: skip


def ptrace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    probe = subprocess.run(
        [*strace_kills_before_renaming(Path("/nonexistent")), "true"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.skipif(not ptrace_works(), reason="needs strace and ptrace")
def test_kill_9_between_two_renames_of_a_group_under_load(env, sim):
    """A real kill -9, right before the rename of the second of four pictures, with a
    dozen other tasks (pictures and videos) on their way: after a restart every group is
    published once, whole, under one name; nothing is duplicated or left behind."""
    env.configure(download={"concurrency": 4})
    names = {}
    for i in range(6):
        names[f"p{i}"] = f"load-pictures-{i:04d}"
        sim.add_task(names[f"p{i}"], shape="results", pictures=4, running_polls=1 + i % 3)
    for i in range(4):
        names[f"v{i}"] = f"load-video-{i:06d}"
        sim.add_task(names[f"v{i}"], video_size=400_000, running_polls=1 + i % 3)
    names["target"] = "load-target-0001"
    sim.add_task(names["target"], shape="results", pictures=4, picture_format="mixed")
    for name, task_id in names.items():
        drop(env.inbox, name, task_id)
    part = env.outbox / ".target.2.jpg.part"  # "mixed": png, jpg, png, jpg
    argv = [*strace_kills_before_renaming(part), sys.executable, "-m", "wansync", "once"]
    argv += ["-c", str(env.config_path)]
    killed = Daemon(argv, env.env(), env.root / "killed.log")
    assert killed.wait(120) == -signal.SIGKILL or killed.proc.returncode == 128 + signal.SIGKILL
    assert (env.outbox / "target.1.png").exists() and part.exists()  # cut between the two
    assert not (env.outbox / "target.status.json").exists()
    result = env.cli("once", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    seen: dict[str, list[str]] = {}
    for path in env.outbox.glob("*.status.json"):
        seen.setdefault(json.loads(path.read_text())["name"], []).append(path.name)
    assert sorted(seen) == sorted(names) and all(len(v) == 1 for v in seen.values()), seen
    data = env.sidecar(env.outbox, "target")
    paths = assert_group(
        env, data, "target", sim.picture_sha256s(names["target"]), [PNG, "image/jpeg"] * 2
    )
    assert paths == ["target.1.png", "target.2.jpg", "target.3.png", "target.4.jpg"]
    files = {p.name for p in env.outbox.iterdir()}
    assert not [f for f in files if f.startswith(".")], files
    groups = [env.sidecar(env.outbox, n)["outputs"] for n in names]
    assert len(files) == sum(len(g) for g in groups) + 2 * len(names)  # + sidecar, task each


# -- the commands and numbers work for pictures too -------------------------------------------
def test_retry_of_a_failed_picture_task_fetches_it_again(env, sim):
    """DownloadRejected (storage's HTML page), `retry NAME`, and the next run lands the
    pictures; a retry of the success says where its files are."""
    task_id = "retry-pictures-0001"
    sim.add_task(task_id, shape="results", pictures=2)
    sim.add_fault("picture", "html", task_id=task_id, count=1)
    drop(env.inbox, "again", task_id)
    assert env.cli("once", "--timeout", "60").returncode == 1
    assert env.sidecar(env.failed, "again")["error"]["code"] == "DownloadRejected"
    retried = env.cli("retry", "again")
    assert retried.returncode == 0, retried.stderr
    assert (env.inbox / "again.task").exists()
    assert env.cli("once", "--timeout", "60").returncode == 0
    data = env.sidecar(env.outbox, "again")
    assert_group(env, data, "again", sim.picture_sha256s(task_id), [PNG] * 2)
    refused = env.cli("retry", "again")
    files = ", ".join(str(env.outbox / f"again.{k}.png") for k in (1, 2))
    assert refused.returncode == 2 and f"its 2 files are {files}" in refused.stderr


def test_cancel_of_a_pending_picture_task(env, sim):
    """`cancel NAME` of a PENDING picture task: it ends in failed/ as TaskCanceled."""
    sim.add_task("cancel-pictures-01", shape="results", pictures=4, pending_polls=10_000)
    drop(env.inbox, "later", "cancel-pictures-01")
    daemon = env.start("run")
    wait_until(
        lambda: (env.sidecar(env.inbox, "later") or {}).get("task_status") == "PENDING",
        20,
        "the task to be polled PENDING",
    )
    result = env.cli("cancel", "later")
    assert result.returncode == 0, result.stderr
    data = env.wait_ended("later")["later"]
    assert daemon.stop() == 0
    assert data["error"]["code"] == "TaskCanceled" and data["outputs"] is None
    assert not sim.requests("picture")


def test_metrics_count_every_files_bytes(env, sim):
    """wansync_download_bytes_total is the bytes of every file of every task; a picture
    task counts as one task finished."""
    from tests.test_outlets import free_port, scrape

    port = free_port()
    env.configure(metrics={"listen": f"127.0.0.1:{port}"})
    sim.add_task("metrics-pictures-1", shape="results", pictures=3, picture_format="mixed")
    drop(env.inbox, "pics", "metrics-pictures-1")
    drop(env.inbox, "clip", "metrics-video-0001")
    daemon = env.start()
    env.wait_ended("pics", "clip")
    values = wait_until(
        lambda: (
            (v := scrape(port)).get("wansync_tasks_finished_total{outcome=succeeded}") == 2 and v
        ),
        10,
        "the finished counter",
    )
    files = [p for p in env.outbox.iterdir() if p.suffix in (".png", ".jpg", ".mp4")]
    assert len(files) == 4
    assert values["wansync_download_bytes_total"] == sum(p.stat().st_size for p in files)
    assert daemon.stop() == 0


# -- resume, per file -------------------------------------------------------------------------
def test_each_picture_cut_short_resumes_with_range(env, sim):
    """Every picture's body cut at 1,000 bytes: each `.part` resumes with Range/If-Range
    from where it stopped (206), and the group lands whole."""
    task_id = "resume-pictures-01"
    sim.add_task(task_id, shape="results", pictures=3, picture_format="mixed")
    sim.add_fault("picture", "truncate", task_id=task_id, at=1000, count=3)
    drop(env.inbox, "cut", task_id)
    result = env.cli("once", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    data = env.sidecar(env.outbox, "cut")
    assert_group(env, data, "cut", sim.picture_sha256s(task_id), [PNG, "image/jpeg", PNG])
    requests_ = sim.requests("picture", task_id)
    firsts = [r for r in requests_ if r["range"] is None]
    resumed = [r for r in requests_ if r["range"] is not None]
    assert len(firsts) == 3 and sorted(r["index"] for r in resumed) == [0, 1, 2]
    assert all(r["range"] == "bytes=1000-" and r["status"] == 206 for r in resumed)


def test_a_restart_resumes_every_part_of_a_group(env, sim):
    """The state a kill -9 mid-group leaves (each `.part` partly there, each file's ETag in
    the sidecar): the next start asks each file only for the rest, with If-Range."""
    task_id = "restart-pictures-1"
    sim.add_task(task_id, shape="results", pictures=3)
    got = answer(sim, task_id)
    task = sim.tasks[task_id]
    folders = publish.Folders(env.inbox, env.outbox, env.failed)
    record = sidecar.new("again", task_id, {}, time.time())
    record.state, record.task_status, record.output = "downloading", "SUCCEEDED", got["output"]
    block = sidecar.DownloadState(None)
    for k in range(3):
        body = sim.pictures.body(task, k)
        folders.part("again", k, 3, "png").write_bytes(body[: 500 * (k + 1)])
        state = sidecar.FileDownload(sim.pictures.etag(task, k), 500 * (k + 1), len(body))
        block = block.with_file(k, 3, state)
    record.download = block
    drop(env.inbox, "again", task_id)
    sidecar.write(folders.sidecar("again"), record)
    polls = len(sim.requests("task"))
    result = env.cli("once", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    assert len(sim.requests("task")) == polls  # downloading: no poll first
    data = env.sidecar(env.outbox, "again")
    assert_group(env, data, "again", sim.picture_sha256s(task_id), [PNG] * 3)
    ranges = sorted((r["index"], r["range"], r["status"]) for r in sim.requests("picture"))
    assert ranges == [(k, f"bytes={500 * (k + 1)}-", 206) for k in range(3)]


def test_a_video_resumed_after_a_cut_ends_with_no_error(env, sim):
    """A transient error on the way (the body cut short, then resumed) is not left in the
    final sidecar: on success `error` is null (it was kept before this fix)."""
    sim.add_task("video-cut-000001", video_size=300_000)
    sim.add_fault("video", "truncate", task_id="video-cut-000001", at=1000, count=1)
    drop(env.inbox, "clip", "video-cut-000001")
    result = env.cli("once", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    assert "task.transient_error" in result.stderr  # it was cut, and said so
    data = env.sidecar(env.outbox, "clip")
    assert data["state"] == "succeeded" and data["error"] is None, data["error"]
    assert_group(env, data, "clip", [sim.video_sha256("video-cut-000001")], ["video/mp4"])


# -- storage's 403 ----------------------------------------------------------------------------
def test_a_refused_picture_url_asks_once_more_and_lands_with_the_fresh_urls(env, sim):
    """Storage answers 403 (the first answer's URLs are stale): the task is polled once
    more at once, and its fresh URL set comes down."""
    task_id = "fresh-pictures-0001"
    sim.add_task(task_id, shape="results", pictures=2, pending_polls=0, running_polls=0)
    stale = f"{sim.url}/pictures/{task_id}/0.png?Expires=1&OSSAccessKeyId=sim&Signature=old"
    first = {"task_id": task_id, "task_status": "SUCCEEDED", "results": [{"url": stale}] * 2}
    body = json.dumps({"request_id": "r", "output": first}).encode()
    sim.add_fault("task", "malformed", task_id=task_id, count=1, body=body)
    drop(env.inbox, "fresh", task_id)
    result = env.cli("once", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    data = env.sidecar(env.outbox, "fresh")
    assert_group(env, data, "fresh", sim.picture_sha256s(task_id), [PNG] * 2)
    statuses = [r["status"] for r in sim.requests("picture", task_id)]
    assert statuses.count(403) >= 1 and statuses.count(200) == 2
    assert len(sim.requests("task", task_id)) == 2  # the stale answer, then one more


def test_a_refused_picture_url_handed_out_again_is_video_url_expired(env, sim):
    """Storage refuses a picture and the next answer holds the same URL: expired, at once."""
    task_id = "expired-pictures-01"
    sim.add_task(task_id, shape="results", pictures=2)
    sim.add_fault("picture", "expired", task_id=task_id, count=1)
    drop(env.inbox, "gone", task_id)
    result = env.cli("once", "--timeout", "60")
    assert result.returncode == 1, result.stderr
    data = env.sidecar(env.failed, "gone")
    assert data["error"]["code"] == "VideoUrlExpired" and data["outputs"] is None
    assert succeeded_polls(sim, task_id) == 2
    assert not [p.name for p in env.outbox.iterdir()], "no file, no .part left"


# -- every row of the kinds table, fetched ----------------------------------------------------
def _row_name(row: str) -> str:
    return "row-" + "".join(c if c.isalnum() else "-" for c in row.lower()).strip("-")


@pytest.fixture(scope="module")
def every_row_fetched(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One task of every row, made at its create endpoint, dropped as a `.task`, fetched by
    one `once` with a hook that records what it is told: (env, sim, task ids, hook runs)."""
    from wansync.simulator import Simulator

    root = tmp_path_factory.mktemp("every-row-fetched")
    with Simulator(key=TEST_KEY, max_in_progress=50) as sim:
        env = Env(root, sim)
        script, runs = root / "recorder.py", root / "runs.jsonl"
        script.write_text(RECORDER)
        env.configure(hooks={"on_success": f"{sys.executable} {script} {runs}"})
        ids = {}
        for row, (model, fields) in EXAMPLES.items():
            kind = kinds.kind_for(model)
            assert kind is not None
            answer_ = requests.post(
                sim.url + kinds.SERVICES + kind.endpoint,
                json=jobcheck.request_body(kind, model, fields),
                headers={"Authorization": f"Bearer {TEST_KEY}", "X-DashScope-Async": "enable"},
                timeout=10,
            )
            assert answer_.status_code == 200, (row, answer_.text)
            ids[row] = answer_.json()["output"]["task_id"]
            drop(env.inbox, _row_name(row), ids[row])
        result = env.cli("once", "--timeout", "120", timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
        seen = {}
        for line in runs.read_text().splitlines():
            hook_env = json.loads(line)
            seen[hook_env["WANSYNC_NAME"]] = hook_env
        yield env, sim, ids, seen


@pytest.mark.parametrize("row", sorted(EXAMPLES))
def test_every_rows_task_lands_its_files(every_row_fetched, row):
    """A task of every kind: its files under `NAME.EXT` / `NAME.k.EXT`, the bytes served,
    the sidecar's outputs, and its hook told every file (and the video when there is one)."""
    env, sim, ids, seen = every_row_fetched
    name, task_id = _row_name(row), ids[row]
    kind = kinds.kind_for(EXAMPLES[row][0])
    assert kind is not None
    data = env.sidecar(env.outbox, name)
    if kind.files == "mp4":
        hashes, types = [sim.video_sha256(task_id)], ["video/mp4"]
    else:
        hashes = sim.picture_sha256s(task_id)
        types = [o["content_type"] for o in data["outputs"]]
        assert set(types) <= {PNG, "image/jpeg", "image/webp"}
    paths = assert_group(env, data, name, hashes, types)
    n = len(hashes)
    assert n == (1 if kind.files == "mp4" else EXAMPLES[row][1].get("n", kind.default_n))
    ext = {"video/mp4": "mp4", PNG: "png", "image/jpeg": "jpg", "image/webp": "webp"}
    expected = [
        f"{name}.{ext[t]}" if n == 1 else f"{name}.{k}.{ext[t]}" for k, t in enumerate(types, 1)
    ]
    assert paths == expected
    hook = seen[name]
    assert hook["WANSYNC_OUTPUTS"].split("\n") == [str(env.outbox / p) for p in paths]
    assert hook.get("WANSYNC_VIDEO") == (
        str(env.outbox / paths[0]) if kind.files == "mp4" else None
    )


def test_submit_wait_of_a_picture_job_prints_every_picture(env, sim):
    """`submit --model wan2.2-t2i-flash --n 2 --wait`: exit 0 and each picture's path, one
    a line, in file order (a picture job has no MP4 to print)."""
    env.configure(submit={"max_per_second": 50})
    result = env.cli(
        "submit", "--model", "wan2.2-t2i-flash", "--prompt", "a kite", "--n", "2",
        "--wait", "--timeout", "30",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = env.sidecar(env.outbox, "picture")
    assert [Path(line) for line in result.stdout.splitlines()] == [
        env.outbox / "picture.1.png",
        env.outbox / "picture.2.png",
    ]
    assert_group(env, data, "picture", sim.picture_sha256s(data["task_id"]), [PNG] * 2)
