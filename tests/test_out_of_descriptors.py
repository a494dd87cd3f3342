"""No descriptor left (EMFILE): a `.task` or `.job` is never judged invalid for it.

The limit is real: the daemon's own RLIMIT_NOFILE is lowered from outside
(`resource.prlimit`, what `prlimit --pid` does) to 3, below the descriptors it already
holds, so every new open in it fails with EMFILE however many it has; raising it back is
the pressure going away. The file-level case runs a child that lowers its own limit.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import Env, drop

ONLY_STD_STREAMS = 3  # descriptors 0, 1 and 2: any new one is over the limit

needs_prlimit = pytest.mark.skipif(
    not hasattr(resource, "prlimit"), reason="resource.prlimit is Linux-only"
)


@needs_prlimit
def test_files_read_without_descriptors_stay_and_finish_once_there_are_some(
    env: Env, tmp_path: Path
) -> None:
    """Under EMFILE a `.task` and a `.job` stay in the inbox (no `task.invalid`, nothing in
    failed/); with descriptors back, both end as videos."""
    env.configure(submit={"max_per_second": 50, "search_for": 1.5})
    daemon = env.start("run")
    daemon.wait_ready()
    pid = daemon.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (ONLY_STD_STREAMS, hard))
    try:
        drop(env.inbox, "clip", json.dumps({"task_id": "task-emfile-0001", "shot": 1}))
        job = {"prompt": "waves", "media": [{"type": "first_frame", "url": "https://e.com/a.png"}]}
        tmp = env.inbox / ".reel.job.tmp"
        tmp.write_text(yaml.safe_dump(job))
        os.rename(tmp, env.inbox / "reel.job")
        for name in ("clip", "reel"):
            daemon.wait_event("file.read_later", 20, name=name)
        # Hold the pressure over a few of the once-a-second retries.
        time.sleep(2.5)
        assert sorted(p.name for p in env.inbox.iterdir() if not p.name.startswith(".")) == [
            "clip.task",
            "reel.job",
        ]
        assert list(env.failed.iterdir()) == []
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    ended = env.wait_ended("clip", timeout=30)
    assert ended["clip"]["state"] == "succeeded" and ended["clip"]["meta"] == {"shot": 1}
    assert env.wait_ended("reel", timeout=30, kind=".job")["reel"]["state"] == "succeeded"
    assert daemon.stop() == 0
    events = [e["event"] for e in daemon.logs()]
    assert "task.invalid" not in events and "job.invalid" not in events
    assert events.count("file.read_later") == 2  # said once per file, not once a try
    assert not [p for p in env.failed.iterdir() if not p.name.startswith(".")]


READ_UNDER_EMFILE = """
import resource, sys
from pathlib import Path
from wansync.core.errors import OutOfResources
from wansync.files import jobfile, taskfile
task, job = Path(sys.argv[1]), Path(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
said = []
def attempt(limit, read):
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        read()
        said.append("read")
    except OutOfResources as exc:
        said.append(f"OutOfResources {exc}")
    except Exception as exc:
        said.append(f"{type(exc).__name__} {exc}")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
attempt(3, lambda: taskfile.read(task))
attempt(3, lambda: jobfile.read(job, "wan2.7-i2v", 10**6))
attempt(4, lambda: jobfile.read(job, "wan2.7-i2v", 10**6))  # the job, not its picture
said.append(taskfile.read(task).task_id)
said.append(str(len(jobfile.read(job, "wan2.7-i2v", 10**6).uploads)))
print("\\n".join(said))
"""


def test_the_readers_raise_out_of_resources_not_a_file_error(tmp_path: Path) -> None:
    """`taskfile.read` and `jobfile.read` (the job, then its picture) with no descriptor
    left: `OutOfResources`, not `TaskFileError`/`JobFileError`; the same files read fine
    once descriptors are back."""
    task = tmp_path / "clip.task"
    task.write_text("task-emfile-0002\n")
    job = tmp_path / "reel.job"
    frame = [{"type": "first_frame", "path": "a.png"}]
    job.write_text(yaml.safe_dump({"prompt": "p", "media": frame}))
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    repo = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", READ_UNDER_EMFILE, str(task), str(job)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "OutOfResources clip.task: too many open files",
        "OutOfResources reel.job: too many open files",
        "OutOfResources a.png: too many open files",
        "task-emfile-0002",
        "1",
    ]
