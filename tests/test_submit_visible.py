"""`submit` refuses, up front, a picture the inbox's daemon (the service's user) cannot read.

The walk as the kernel would do it for another user, in-process on real folders; then
`submit` itself, with the inbox's lock and `.wansync.live` another user's (root only:
the files must belong to someone else).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Env
from tests.test_jobs import SAMPLE_PNG
from wansync.cli.reach import Hidden, User
from wansync.cli.visible import Reader, blocked
from wansync.files import liveness
from wansync.files.lock import LOCK_NAME
from wansync.simulator import Simulator

NOBODY = Reader(User("nobody", 65534, frozenset({65534})))


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder anyone may enter (tmp_path's parents are 0700); removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="wansync-visible-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_home_folder_hidden_by_the_unit_is_refused() -> None:
    """`ProtectHome=yes` (the record's `cannot_see`): refused whatever the modes say."""
    hidden = Hidden((Path("/home"), Path("/root")), "the unit's ProtectHome=yes")
    who = Reader(User("wansync", 999, frozenset({999})), hidden)
    assert blocked(Path("/home/alice/pic.png"), who) == (
        "/home: the unit's ProtectHome=yes hides it from the service, whatever its mode"
    )


def test_a_private_tmp_is_refused() -> None:
    """`PrivateTmp=yes`: the daemon's /tmp is another folder than ours (its dev:ino)."""
    who = Reader(User("wansync", 999, frozenset()), temps={"/tmp": "0:0"})
    assert "PrivateTmp=yes" in (blocked(Path("/tmp/pic.png"), who) or "")


def test_a_folder_on_the_way_that_it_may_not_enter_is_named(open_folder: Path) -> None:
    """`~/pics` is 0700: named with its mode and owner; opened up, the picture passes;
    a picture of mode 0600 is named as the file it may not read."""
    pics = open_folder / "pics"
    pics.mkdir(mode=0o700)
    picture = pics / "a.png"
    picture.write_bytes(SAMPLE_PNG)
    picture.chmod(0o644)
    why = blocked(picture, NOBODY) or ""
    assert why.startswith(f"{pics}: mode 0700, owner ") and "may not enter it" in why
    pics.chmod(0o755)
    assert blocked(picture, NOBODY) is None
    picture.chmod(0o600)
    why = blocked(picture, NOBODY) or ""
    assert why.startswith(f"{picture}: mode 0600") and "may not read it" in why


# -- submit, with the inbox's daemon another user -----------------------------------------
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="files of another user need root")


def _service_is_nobody(inbox: Path) -> None:
    """The inbox as a service running as `nobody` leaves it: its lock and its record."""
    nobody = pwd.getpwnam("nobody").pw_uid
    lock = inbox / LOCK_NAME
    lock.write_text("")
    lock.chmod(0o600)
    os.chown(lock, nobody, -1)
    record = liveness.describe_self(lock.stat().st_ino, "2026-01-01T00:00:00.000Z")
    data = {**record.__dict__, "schema": 1, "uid": nobody, "user": "nobody", "gids": [65534]}
    data.update(pid=4_194_304, stopped="2026-01-01T01:00:00.000Z", cannot_see=[])
    (inbox / liveness.LIVE_NAME).write_text(json.dumps(data))


@needs_root
def test_submit_refuses_a_picture_the_service_user_cannot_read(
    env: Env, sim: Simulator, tmp_path: Path
) -> None:
    """A picture in a folder the daemon's user may not enter: exit 2 at once, one line
    naming the user, the folder and where to put it; no job is written."""
    _service_is_nobody(env.inbox)
    picture = tmp_path / "mine.png"
    picture.write_bytes(SAMPLE_PNG)
    result = env.cli("submit", str(picture), "--prompt", "p")
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert f"IMAGE_OR_URL: {picture}: the daemon of {env.inbox} runs as user nobody, who" in line
    assert "may not enter it" in line and f"{env.inbox}/pictures" in line
    assert not list(env.inbox.glob("*.job"))


@needs_root
def test_submit_takes_a_picture_the_service_user_can_read(
    sim: Simulator, open_folder: Path
) -> None:
    """The same, with the picture in a folder of the inbox that the daemon can read."""
    env = Env(open_folder, sim)
    _service_is_nobody(env.inbox)
    (env.inbox / "pictures").mkdir(mode=0o755)
    picture = env.inbox / "pictures" / "mine.png"
    picture.write_bytes(SAMPLE_PNG)
    picture.chmod(0o644)
    result = env.cli("submit", str(picture), "--prompt", "p")
    assert result.returncode == 0, result.stderr
    assert (env.inbox / "mine.job").exists()
