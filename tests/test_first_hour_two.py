"""The first hour, round two: the trips of a new user wiring wansync into a pipeline and a
service, each as it is met (a `.task` saved from curl, `check` as root for a service user,
a hook beside the config, a wide name in `status`, a bare `wansync`, a key file 0644)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import TEST_KEY, Env, drop, wait_until
from tests.tty import PtyRun, cells
from wansync import config
from wansync.cli import checks, reach
from wansync.cli import unit as service_unit
from wansync.files import sidecar
from wansync.simulator import Simulator

REPO = Path(__file__).resolve().parent.parent


# -- fixtures: a real other user, folders that user may reach ------------------------------
@pytest.fixture
def nobody() -> reach.User:
    """The system's `nobody`: a real user who owns nothing here."""
    try:
        return reach.User.named("nobody")
    except KeyError:
        pytest.skip("this machine has no user nobody")


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temp folder of our own directly in the system's temp folder, mode 0755.

    pytest's `tmp_path` lies under a 0700 folder: every path in it is closed to another
    user before the test begins. This one is open, so each test closes what it means to.
    """
    folder = Path(tempfile.mkdtemp(prefix="wansync-reach-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _needs_root(why: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"needs root to {why}")


def _runs_as(user: reach.User, argv: list[str]) -> bool:
    """Whether `argv` starts and exits 0 when run as `user` (the kernel's verdict)."""
    entry = pwd.getpwnam(user.name)
    try:
        result = subprocess.run(
            argv,
            user=entry.pw_uid,
            group=entry.pw_gid,
            extra_groups=[],
            cwd="/",
            capture_output=True,
            timeout=60,
        )
    except PermissionError:  # EACCES from execve: a folder or the file refused
        return False
    return result.returncode == 0


def _in_child_as(user: reach.User, work: Callable[[], str]) -> str:
    """`work()` in a forked child that has become `user` (uid, gid, no other groups)."""
    entry = pwd.getpwnam(user.name)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            os.write(write_end, work().encode())
        except BaseException as exc:
            os.write(write_end, f"child failed: {exc!r}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        said = fh.read().decode()
    os.waitpid(pid, 0)
    return said


# -- 4: a .task holding DashScope's create answer -------------------------------------------
def test_a_task_file_saved_from_the_create_answer_is_fetched(env: Env, sim: Simulator) -> None:
    """`curl … > clip.task` (the create answer, id in `output.task_id`) ends as a video;
    the rest of the answer is kept as meta."""
    answer = {
        "request_id": "req-0001",
        "output": {"task_id": "task-curl-00000001", "task_status": "PENDING"},
    }
    drop(env.inbox, "clip", json.dumps(answer))
    assert env.start("once").wait() == 0
    data = env.wait_ended("clip")["clip"]
    assert data["state"] == "succeeded" and data["task_id"] == "task-curl-00000001"
    assert data["meta"] == answer
    assert (env.outbox / "clip.mp4").exists()


# -- 6: an executable the service user cannot reach ---------------------------------------------
def test_the_reach_verdict_agrees_with_the_kernel(open_tmp: Path, nobody: reach.User) -> None:
    """A program in a 0700 folder, behind a link into it, without `x`, a script without
    `r`, and a program anyone may run: `check`'s verdict is what execve says as nobody."""
    _needs_root("run a child as another user")
    closed = open_tmp / "closed"
    closed.mkdir(mode=0o700)
    programs: dict[str, Path] = {}
    for name, folder, mode in (
        ("in-closed", closed, 0o755),
        ("no-x", open_tmp, 0o644),
        ("no-r", open_tmp, 0o711),
        ("fine", open_tmp, 0o755),
    ):
        programs[name] = folder / f"{name}.sh"
        programs[name].write_text("#!/bin/sh\nexit 0\n")
        programs[name].chmod(mode)
    programs["link"] = open_tmp / "link.sh"
    programs["link"].symlink_to(programs["in-closed"])
    blocked_at = {"in-closed": closed, "link": closed, "no-x": programs["no-x"]}
    blocked_at["no-r"] = programs["no-r"]
    for name, program in programs.items():
        _, blocked = reach.program_blocks(nobody, program)
        assert (blocked is None) == _runs_as(nobody, [str(program)]), (name, blocked)
        assert (blocked.path if blocked else None) == blocked_at.get(name), name
    _, blocked = reach.program_blocks(nobody, programs["in-closed"])
    assert blocked is not None and "mode 0700" in blocked.why and "nobody" in blocked.why
    assert f"chmod o+x {closed}" in blocked.fix


def test_protect_home_hides_a_home_folder_whatever_its_mode(open_tmp: Path) -> None:
    """Under `ProtectHome=yes` a program below /root or /home cannot start, even as root."""
    root = reach.User("root", 0, frozenset({0}))
    hidden = reach.Hidden(reach.HOME_FOLDERS, "ProtectHome=yes of x.service")
    for path in (Path("/root", "venv", "bin", "python3"), Path("/home/alice/venv/bin")):
        blocked = reach.first_block(root, path, reach.EXECUTE, hidden)
        assert blocked is not None and blocked.path == Path("/" + path.parts[1])
        assert "ProtectHome=yes of x.service hides it" in blocked.why
        assert "outside home folders" in blocked.fix
    assert reach.first_block(root, Path("/bin/sh"), reach.EXECUTE, hidden) is None


def test_check_names_the_folder_that_keeps_the_units_user_out(
    env: Env, open_tmp: Path, nobody: reach.User, tmp_path: Path
) -> None:
    """A venv in a 0700 folder, run by a unit as nobody: `check --unit` exits 2 naming the
    folder, its mode and a fix; opened, `check` says what execve says."""
    closed = open_tmp / "closed"
    closed.mkdir(mode=0o700)
    venv = closed / "venv"
    made = subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python3"
    unit = tmp_path / "wansync.service"
    unit.write_text(
        "[Unit]\nDescription=test\n[Service]\nUser=nobody\nProtectHome=no\n"
        f"ExecStart={python} -m wansync run -c {env.config_path}\n"
    )
    result = env.cli("check", "--unit", str(unit))
    assert result.returncode == 2, result.stdout + result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert line.startswith(f"wansync: service: user nobody (User= of {unit}) cannot start {python}")
    assert f"{closed}: mode 0700" in line and f"chmod o+x {closed}" in line
    if os.geteuid() == 0:
        assert not _runs_as(nobody, [str(python), "-c", "pass"])
    closed.chmod(0o755)
    result = env.cli("check", "--unit", str(unit))
    assert str(closed) + ":" not in result.stderr
    if os.geteuid() == 0:  # the interpreter's own home decides now: the kernel agrees
        assert (result.returncode == 0) == _runs_as(nobody, [str(python), "-c", "pass"])
    if result.returncode == 0:
        assert f"service: ok (user nobody, User= of {unit}, can start {python})" in result.stdout


def test_check_with_an_unknown_user_says_so(env: Env) -> None:
    """`check --user` naming no user: one line, exit 2."""
    result = env.cli("check", "--user", "no-such-user-wansync")
    assert result.returncode == 2
    assert result.stderr.startswith("wansync: service: no user no-such-user-wansync on this")


def test_the_unit_for_a_config_and_its_drop_ins(tmp_path: Path) -> None:
    """The shipped units say User=wansync, /opt/wansync/bin/wansync, ProtectHome=yes; an
    instance's config finds the template; a drop-in's User= wins."""
    shipped = service_unit.read(REPO / "systemd" / "wansync.service")
    assert (shipped.user, shipped.program, shipped.hides_home) == (
        "wansync",
        Path("/opt/wansync/bin/wansync"),
        True,
    )
    etc, lib = tmp_path / "etc", tmp_path / "lib"
    (etc / "wansync@.service.d").mkdir(parents=True)
    lib.mkdir()
    shutil.copy(REPO / "systemd" / "wansync@.service", lib)
    (etc / "wansync@.service.d" / "user.conf").write_text("[Service]\nUser=media\n")
    beijing = config.from_mapping(None, source=Path("/etc/wansync/beijing.yaml"))
    found = service_unit.find(beijing, (etc, lib))
    assert found is not None and found.path == lib / "wansync@.service"
    assert found.user == "media" and found.program == Path("/opt/wansync/bin/wansync")
    assert service_unit.find(config.from_mapping(None), (etc, lib)) is None


# -- 7: a hint that fits the folder -------------------------------------------------------------
def _access(**changes: object) -> checks.FolderAccess:
    base = checks.FolderAccess(
        folder=Path("/srv/media/inbox"),
        mode=0o40755,
        owner="root",
        owner_uid=0,
        group="root",
        gid=0,
        group_members=(),
        user="alice",
        uid=1000,
        user_gid=1000,
        session_gids=frozenset({1000}),
        service_group="wansync",
    )
    return checks.dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", [0o40755, 0o40775, 0o40770])
def test_a_root_owned_folder_is_never_solved_with_group_root(mode: int) -> None:
    """root:root, whatever the group bits: give the folder to the service's group (g+ws)
    or an ACL; never `usermod -aG root`."""
    hint = checks.folder_hint(_access(mode=mode))
    assert "-aG root" not in hint and "newgrp root" not in hint
    assert f"mode {mode & 0o7777:04o}, owner root:root: only root may write it" in hint
    assert "`sudo chgrp wansync /srv/media/inbox && sudo chmod g+ws /srv/media/inbox`" in hint
    assert "`sudo usermod -aG wansync alice`" in hint
    assert "`sudo setfacl -m u:alice:rwx /srv/media/inbox`" in hint


def test_the_hint_follows_the_mode_and_owner() -> None:
    """The service's group without g+w: chmod only; g+w and not a member: join it; the
    owner: chmod u+w; no service group on this machine: a placeholder."""
    no_gw = checks.folder_hint(_access(group="wansync", gid=900, group_members=("alice",)))
    assert "`sudo chmod g+ws /srv/media/inbox`;" in no_gw and "chgrp" not in no_gw
    join = checks.folder_hint(_access(group="media", gid=901, mode=0o42775))
    assert "group media may write it: `sudo usermod -aG media alice`" in join
    own = checks.folder_hint(_access(owner="alice", owner_uid=1000, mode=0o40555))
    assert own == " (you own it, mode 0555: `chmod u+w /srv/media/inbox`)"
    assert "sudo chgrp GROUP" in checks.folder_hint(_access(service_group=None))


def test_the_hint_for_a_real_root_owned_folder_as_another_user(
    open_tmp: Path, nobody: reach.User
) -> None:
    """As nobody, a real root:root 0755 folder refuses a file, and the hint shares it
    through a group or an ACL, never group root; a group-writable one says join it."""
    _needs_root("become another user")
    folder = open_tmp / "inbox"
    folder.mkdir(mode=0o755)
    os.chown(folder, 0, 0)

    def attempt() -> str:
        try:
            (folder / "x.task").write_text("x")
        except PermissionError:
            return checks.permission_hint(folder)
        return "written"

    hint = _in_child_as(nobody, attempt)
    assert "only root may write it" in hint and "chmod g+ws" in hint, hint
    assert "-aG root" not in hint and "setfacl -m u:nobody:rwx" in hint
    try:
        daemon_gid = checks.grp.getgrnam("daemon").gr_gid
    except KeyError:
        return
    os.chown(folder, 0, daemon_gid)
    folder.chmod(0o775)
    hint = _in_child_as(nobody, attempt)
    assert "group daemon may write it: `sudo usermod -aG daemon nobody`" in hint, hint


# -- 8: a hook beside the config ---------------------------------------------------------------
def test_a_relative_hook_program_resolves_against_the_config_folder(tmp_path: Path) -> None:
    """`./myhook.sh` is the config's neighbour; `~/x` is expanded; a bare name and the
    arguments are left as written."""
    source = tmp_path / "conf" / "wansync.yaml"
    hooks = config.from_mapping(
        {"hooks": {"on_success": "./bin/myhook.sh 'a b' ./arg", "on_failure": "notify 'x y'"}},
        source=source,
    ).hooks
    assert hooks.on_success == f"{tmp_path}/conf/bin/myhook.sh 'a b' ./arg"
    assert hooks.on_failure == "notify 'x y'"
    home = config.from_mapping({"hooks": {"on_success": "~/h.sh"}}, source=source).hooks
    assert home.on_success == str(Path("~/h.sh").expanduser())


def test_a_hook_beside_the_config_runs_from_the_daemon(env: Env, tmp_path: Path) -> None:
    """`hooks.on_success: ./myhook.sh` in a config in another folder than the daemon's:
    the hook beside the config runs (once, ok)."""
    marker = tmp_path / "ran.txt"
    hook = env.config_path.parent / "myhook.sh"
    hook.write_text(f'#!/bin/sh\necho "$WANSYNC_NAME" >> {marker}\n')
    hook.chmod(0o755)
    env.configure(hooks={"on_success": "./myhook.sh", "attempts": 1})
    drop(env.inbox, "clip", "task-hook-rel-0001")
    daemon = env.start("run")
    ran = daemon.wait_event("hook.ran", 30, name="clip")
    assert daemon.stop() == 0
    assert ran["result"] == "ok", daemon.events("hook.failed")
    assert marker.read_text() == "clip\n"


# -- 9: the status table -------------------------------------------------------------------------
def test_status_lists_names_in_natural_order_in_every_folder(env: Env) -> None:
    """In failed/ and outbox/ too: `bad` before `bad-2`, `clip-2` before `clip-10`."""
    for folder, names in (
        (env.outbox, ("clip-10", "clip", "clip-2")),
        (env.failed, ("bad-2", "bad")),
    ):
        for name in names:
            data = sidecar.new(name, f"task-{name}-000001", {}, 1_700_000_000.0)
            data.published_as = name
            sidecar.write(sidecar.path_for(folder, name), data)
    rows = json.loads(env.cli("status", "--json").stdout)
    assert [r["name"] for r in rows] == ["clip", "clip-2", "clip-10", "bad", "bad-2"]


def test_status_shows_pending_and_running(env: Env, sim: Simulator) -> None:
    """A task the API holds PENDING, one RUNNING: `polling PENDING`, `polling RUNNING`."""
    sim.add_task("held-pending-0001", pending_polls=10**6)
    sim.add_task("held-running-0001", pending_polls=0, running_polls=10**6)
    drop(env.inbox, "early", "held-pending-0001")
    drop(env.inbox, "late", "held-running-0001")
    daemon = env.start("run")
    for name, status in (("early", "PENDING"), ("late", "RUNNING")):
        wait_until(
            lambda n=name, s=status: (env.sidecar(env.inbox, n) or {}).get("task_status") == s,
            20,
            f"{name} {status}",
        )
    table = env.cli("status").stdout
    assert daemon.stop() == 0
    lines = {line.split()[1]: line for line in table.splitlines()[1:]}
    assert "polling PENDING" in lines["early"] and "polling RUNNING" in lines["late"]


def test_wide_names_keep_the_columns_in_line_on_a_terminal(env: Env) -> None:
    """Chinese names take two columns a character: every task id starts in one column."""
    for name, task_id in (("视频-日落海滩", "task-wide-00001"), ("clip", "task-narrow-0001")):
        drop(env.inbox, name, task_id)
    run = PtyRun("status", "-c", str(env.config_path), env=env.env())
    assert run.wait(60) == 0
    grid = cells(run.text())

    def column_of(text: str) -> int | None:
        for row in grid:
            line = "".join(c or "\0" for c in row)
            if text in line:
                return line.index(text)
        return None

    starts = {column_of("TASK ID"), column_of("task-wide-00001"), column_of("task-narrow-0001")}
    assert len(starts) == 1 and None not in starts, starts


# -- 10: the bare command, -V, a host that does not resolve --------------------------------------
def _wansync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wansync", *args], capture_output=True, text=True, timeout=60
    )


def test_wansync_alone_prints_the_commands_and_exits_2() -> None:
    """No command: the full help (every command) on stderr, exit 2, as for a usage error."""
    result = _wansync()
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("usage: wansync")
    for command in ("run", "once", "add", "submit", "status", "retry", "check", "cancel"):
        assert f"\n    {command} " in result.stderr, command


def test_dash_capital_v_prints_the_version() -> None:
    from wansync import __version__

    for flag in ("-V", "--version"):
        result = _wansync(flag)
        assert result.returncode == 0 and result.stdout == f"wansync {__version__}\n"


def test_check_online_names_the_host_it_cannot_resolve(env: Env) -> None:
    """A host no DNS knows (`.invalid`): one line naming it, not a bare `gaierror`."""
    env.configure(api={"base_url": "https://wansync-check.invalid"})
    result = env.cli("check", "--online", timeout=120)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "wansync: api.base_url: cannot resolve the host wansync-check.invalid ("
    ), last
    assert "gaierror" not in result.stderr


# -- issue 21, 10: a key file others can read -------------------------------------------------
def test_a_key_file_others_can_read_is_warned_about(env: Env, tmp_path: Path) -> None:
    """Mode 0644: `check` warns on stderr and `run` logs `key_file.permissions`, naming the
    file and the mode, never the key; mode 0600 says nothing."""
    key_file = tmp_path / "api.key"
    key_file.write_text(TEST_KEY + "\n")
    key_file.chmod(0o644)
    env.configure(api={"key_file": str(key_file)})
    result = env.cli("check", key=None)
    assert result.returncode == 0, result.stderr
    assert (
        f"wansync: warning: key file {key_file} is readable by its group and every user "
        f"(mode 0644): `chmod 600 {key_file}`"
    ) in result.stderr
    assert TEST_KEY not in result.stdout + result.stderr
    daemon = env.start("once", key=None)
    assert daemon.wait() == 0
    [line] = daemon.events("key_file.permissions")
    assert line["level"] == "warning" and line["file"] == str(key_file) and line["mode"] == "0644"
    key_file.chmod(0o600)
    assert "warning" not in env.cli("check", key=None).stderr
    quiet = env.start("once", key=None)
    assert quiet.wait() == 0 and quiet.events("key_file.permissions") == []
