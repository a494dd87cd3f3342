"""Without a config file every command but `status` refuses, and writes nothing.

The defaults are the service's folders (`/var/lib/wansync/…`): `add` or `submit` run from
a folder without its `wansync.yaml` (the README's walk without `cd walk`) used to create
that inbox and drop the work where no daemon of the user's looks (docs/commands.md,
"Config file, errors and exit codes").
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Env

DEFAULT_ROOT = Path("/var/lib/wansync")  # the parent of the default folders

pytestmark = pytest.mark.skipif(
    Path("/etc/wansync/config.yaml").exists(), reason="/etc/wansync/config.yaml exists here"
)


def _without_config(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`wansync ARGS` from a folder with no wansync.yaml, no $WANSYNC_CONFIG, HOME there."""
    env = {k: v for k, v in os.environ.items() if k != "WANSYNC_CONFIG"}
    env.update(HOME=str(tmp_path), DASHSCOPE_API_KEY="sim-key")
    return subprocess.run(
        [sys.executable, "-m", "wansync", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["add", "abcdefgh-task-0001"],
        ["submit", "--model", "wan2.7-t2v", "--prompt", "a lost prompt"],
        ["once"],
    ],
    ids=lambda args: args[0],
)
def test_a_command_that_writes_refuses_without_a_config_file(
    tmp_path: Path, args: list[str]
) -> None:
    """Exit 2, one line saying what was looked for and where, and how to point at a
    config; the default folders are not created, nothing is written."""
    existed = DEFAULT_ROOT.exists()
    result = _without_config(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    line = result.stderr
    assert line.startswith("wansync: no config file found ($WANSYNC_CONFIG is not set; ")
    assert f"no wansync.yaml in {tmp_path}; no /etc/wansync/config.yaml)" in line
    assert "nothing done" in line and "-c FILE" in line and "WANSYNC_CONFIG=FILE" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    if not existed:  # (a machine with the service's folders already: nothing to tell)
        assert not DEFAULT_ROOT.exists(), "the service's default folders were created"


def test_an_empty_config_file_means_every_default(tmp_path: Path) -> None:
    """A file that sets nothing is a config: `check` reads the defaults from it."""
    (tmp_path / "wansync.yaml").write_text("")
    result = _without_config(tmp_path, "check")
    assert "no config file found" not in result.stderr
    assert f"config: ok ({tmp_path / 'wansync.yaml'})" in result.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["add", "abcdefgh-task-0001", "--name", "x.job"], "'x.job' ends in .job"),
        (["add", "abcdefgh-task-0001", "--name", "x.status.json"], "ends in .status.json"),
        (["submit", "--model", "wan2.7-t2v", "--prompt", "p", "--name", "x.task"], "in .task"),
    ],
)
def test_a_name_ending_in_a_suffix_of_wansync_is_refused(
    env: Env, args: list[str], said: str
) -> None:
    """`add --name x.job` would write `x.job.task`: exit 2, one line saying so and what
    to give instead; nothing written."""
    result = env.cli(*args)
    assert result.returncode == 2, result.stderr
    assert said in result.stderr and "give the name alone (--name x writes x." in result.stderr
    assert result.stderr.count("\n") == 1
    assert list(env.inbox.iterdir()) == []


def test_add_name_x_task_still_means_x(env: Env) -> None:
    """The file's own suffix is taken off, as documented: `--name x.task` writes x.task."""
    result = env.cli("add", "abcdefgh-task-0001", "--name", "x.task")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(env.inbox / "x.task")
