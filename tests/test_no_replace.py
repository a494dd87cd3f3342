"""A name wansync chose as free is never written over, even when it is taken meanwhile.

`wansync add` / `submit` run at the same moment (real processes, released together),
a file that appears at a publish target in the instant before the rename, and a kill
during the write of a job's `.task` (its temp file must be one the restart sweeps).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Env
from tests.test_hostile_files import ID, error_json, good_sidecar
from tests.test_jobs import URL_FRAME, created, drop_job
from wansync.files import fsutil, sidecar
from wansync.run.publish import Folders, move_to_free, resume

USER = b"the user's own file\n"

# A process that runs wansync's own command line once per line read from stdin (the
# arguments as JSON) and answers [exit code, stdout]: imported once, so that the commands
# of several such processes start in the same instant when their lines are sent together.
COMMANDS = """
import contextlib, io, json, sys
from wansync.cli.main import main
for line in sys.stdin:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(json.loads(line))
    print(json.dumps([code, out.getvalue().strip()]), flush=True)
"""

# `wansync` killed (SIGKILL) when it is about to make a `.task` temp file durable: after
# the write, before the rename, as a kill -9 mid-write leaves it.
KILLED_MID_TASK_WRITE = """
import os, runpy, signal, sys
real_fsync = os.fsync
def fsync(fd):
    try:
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        name = ""
    if ".task." in name and name.endswith("tmp"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_fsync(fd)
os.fsync = fsync
sys.argv[0] = "wansync"
runpy.run_module("wansync", run_name="__main__")
"""


# -- the helper ---------------------------------------------------------------------------------
def no_renameat2(monkeypatch: pytest.MonkeyPatch) -> None:
    """A filesystem without `RENAME_NOREPLACE` (NFS): renameat2 answers EINVAL."""

    def refuse(*_: object) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(fsutil, "renameat2", refuse)


def no_hard_links(monkeypatch: pytest.MonkeyPatch) -> None:
    """...and no hard links either (vfat, some FUSE): link answers EPERM."""
    no_renameat2(monkeypatch)

    def refuse(*_: object, **__: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)


@pytest.mark.parametrize(
    "filesystem",
    [lambda _: None, no_renameat2, no_hard_links],
    ids=["renameat2", "link-unlink", "check-rename"],
)
def test_rename_noreplace_moves_to_a_free_name_and_never_onto_a_taken_one(
    tmp_path, monkeypatch, filesystem
):
    """Each way the helper may take moves to a free name, and leaves a file, a link or a
    dangling link at the target as it is (`FileExistsError`), the source in place."""
    filesystem(monkeypatch)
    src = tmp_path / "src"
    src.write_bytes(b"ours")
    fsutil.rename_noreplace(src, tmp_path / "free")
    assert (tmp_path / "free").read_bytes() == b"ours" and not src.exists()
    (tmp_path / "taken").write_bytes(USER)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for target in (tmp_path / "taken", tmp_path / "dangling"):
        with pytest.raises(FileExistsError, match="already exists"):
            fsutil.rename_noreplace(tmp_path / "free", target)
    assert (tmp_path / "taken").read_bytes() == USER
    assert (tmp_path / "dangling").is_symlink() and not (tmp_path / "nowhere").exists()
    assert (tmp_path / "free").read_bytes() == b"ours"
    assert (tmp_path / "free").stat().st_nlink == 1


def test_write_new_file_keeps_what_is_there_and_leaves_no_temp_file(tmp_path):
    """A job's `.task` written where a producer's appeared: refused, theirs kept, our
    temp file gone from the scratch folder."""
    target = tmp_path / "clip.task"
    target.write_bytes(USER)
    with pytest.raises(FileExistsError):
        fsutil.write_new_file(target, b"task-of-the-job-0001\n")
    assert target.read_bytes() == USER
    assert os.listdir(tmp_path / fsutil.SCRATCH) == []


# -- publishing -----------------------------------------------------------------------------
def appears_before_the_rename(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    """The user's file appears at `target` in the instant before wansync renames a file
    there, whichever call makes the move (renameat2, or a plain rename)."""

    def appear(dst: str | Path) -> None:
        if Path(os.fsdecode(dst)) == target and not os.path.lexists(target):
            target.write_bytes(USER)

    real_renameat2, real_rename = fsutil.renameat2, os.rename

    def renameat2(src_fd: int, src: str | Path, dst_fd: int, dst: str | Path, flags: int) -> None:
        appear(dst)
        real_renameat2(src_fd, src, dst_fd, dst, flags)

    def rename(src: Any, dst: Any, **kw: Any) -> None:
        appear(dst)
        real_rename(src, dst, **kw)

    monkeypatch.setattr(fsutil, "renameat2", renameat2, raising=False)
    monkeypatch.setattr(os, "rename", rename)


def test_a_file_that_appears_at_a_publish_target_is_kept_and_the_group_moves_on(
    tmp_path, monkeypatch
):
    """`failed/t.task` appears between the check and the move: the user's file stays, the
    whole group is published as `t-2` (docs/folders.md: nothing is ever overwritten)."""
    folders = Folders(*(tmp_path / n for n in ("inbox", "outbox", "failed")))
    for folder in (folders.inbox, folders.outbox, folders.failed):
        folder.mkdir()
    folders.task("t").write_text(ID)
    data = sidecar.from_json(good_sidecar(state="failed", error=error_json("X", "m", False)))
    data.published_as = "t"
    sidecar.write(folders.sidecar("t"), data)
    appears_before_the_rename(monkeypatch, folders.failed / "t.task")
    final = resume(folders, data, task_file_is_ours=True)
    assert (folders.failed / "t.task").read_bytes() == USER
    assert final == folders.failed / "t-2.status.json"
    assert json.loads(final.read_text())["published_as"] == "t-2"
    assert (folders.failed / "t-2.task").read_text() == ID
    assert sorted(os.listdir(folders.inbox)) == [fsutil.SCRATCH]


def test_a_move_to_a_free_name_taken_meanwhile_takes_the_next(tmp_path, monkeypatch):
    """A user's sidecar moved aside to `failed/`: the name it chose is taken in the instant
    before the move, so it goes to the next free one, and the other file stays."""
    (tmp_path / "failed").mkdir()
    src = tmp_path / "t.status.json"
    src.write_text("{}")
    appears_before_the_rename(monkeypatch, tmp_path / "failed" / "t.status.json")
    went = move_to_free(src, tmp_path / "failed", "t", ".status.json")
    assert went == tmp_path / "failed" / "t-2.status.json" and went.read_text() == "{}"
    assert (tmp_path / "failed" / "t.status.json").read_bytes() == USER


# -- commands at the same moment ------------------------------------------------------------
def command_runners(env: Env, count: int) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", COMMANDS],
            env=env.env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]


def at_once(runners: list[subprocess.Popen[str]], commands: list[list[str]]) -> list[Any]:
    """Each runner runs its command, all started together; their [exit code, stdout]."""
    for runner, argv in zip(runners, commands, strict=True):
        assert runner.stdin is not None
        runner.stdin.write(json.dumps(argv) + "\n")
    for runner in runners:
        assert runner.stdin is not None
        runner.stdin.flush()
    answers = []
    for runner in runners:
        assert runner.stdout is not None
        answers.append(json.loads(runner.stdout.readline()))
    return answers


def close(runners: list[subprocess.Popen[str]]) -> None:
    for runner in runners:
        assert runner.stdin is not None
        runner.stdin.close()
        assert runner.wait(timeout=30) == 0


def test_submits_at_the_same_moment_each_get_their_own_job_file(env):
    """8 `wansync submit` at once, 3 times: 24 exit 0, 24 different `.job` files, each
    holding the prompt of the command that printed it; none overwritten."""
    runners = command_runners(env, 8)
    config = ["-c", str(env.config_path)]
    printed: dict[str, str] = {}
    try:
        for round_ in range(3):
            prompts = [f"parallel clip {round_}-{i}" for i in range(len(runners))]
            commands = [
                ["submit", "--model", "wan2.7-t2v", "--prompt", p, *config] for p in prompts
            ]
            for prompt, (code, out) in zip(prompts, at_once(runners, commands), strict=True):
                assert code == 0, (prompt, out)
                assert out not in printed, f"{out} printed for {printed.get(out)} and {prompt}"
                printed[out] = prompt
    finally:
        close(runners)
    for path, prompt in printed.items():
        assert f"prompt: {prompt}\n" in Path(path).read_text(), path
    assert len(list(env.inbox.glob("*.job"))) == 24
    assert not [p for p in env.inbox.iterdir() if p.name.endswith(".tmp")]


def test_two_adds_of_one_name_at_the_same_moment_one_is_refused(env):
    """`wansync add ID --name same` twice at once, 20 times: one writes, the other is
    refused with the documented line (exit 2); the file holds the id of the one that
    said it wrote it."""
    runners = command_runners(env, 2)
    config = ["-c", str(env.config_path)]
    try:
        for round_ in range(20):
            ids = [f"task-{round_:02d}-first-0001", f"task-{round_:02d}-second-001"]
            name = f"same-{round_}"
            commands = [["add", task_id, "--name", name, *config] for task_id in ids]
            answers = at_once(runners, commands)
            wrote = [task_id for task_id, (code, _) in zip(ids, answers, strict=True) if code == 0]
            assert sorted(code for code, _ in answers) == [0, 2], answers
            assert (env.inbox / f"{name}.task").read_text() == f"{wrote[0]}\n"
    finally:
        close(runners)
    assert sorted(p.name for p in env.inbox.iterdir()) == sorted(
        f"same-{r}.task" for r in range(20)
    )


# -- a kill during the write of a job's `.task` ---------------------------------------------
def test_a_kill_while_a_jobs_task_file_is_written_leaves_no_temp_file(env, sim):
    """kill -9 after the `.task` temp file is written, before its rename; the restart
    completes the job (one create) and sweeps that temp file, while the producers' own
    temp files (`.x.task.tmp`, `.x.task.PID.tmp`: docs/folders.md) are never touched."""
    env.configure(submit={"max_per_second": 50, "search_for": 1.5})
    drop_job(env.inbox, "clip", {"prompt": "killed mid-write", "media": URL_FRAME})
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_MID_TASK_WRITE, "once", "-c", str(env.config_path)],
        env=env.env(),
        capture_output=True,
        timeout=60,
    )
    assert killed.returncode == -9, killed.stderr
    assert not (env.inbox / "clip.task").exists() and len(created(sim)) == 1
    producers = [env.inbox / ".x.task.tmp", env.inbox / ".y.task.4242.tmp"]
    for path in producers:
        path.write_bytes(USER)
    again = env.cli("once")
    assert again.returncode == 0, again.stderr
    assert len(created(sim)) == 1, "the job was not sent again"
    assert (env.outbox / "clip.mp4").exists() and (env.outbox / "clip.task").exists()
    left = sorted(str(p.relative_to(env.inbox)) for p in env.inbox.rglob("*"))
    assert left == sorted(
        [fsutil.SCRATCH, ".wansync.live", ".wansync.lock", ".x.task.tmp", ".y.task.4242.tmp"]
    ), left
    assert all(path.read_bytes() == USER for path in producers)
