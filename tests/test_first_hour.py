"""What a newcomer walking the README meets: every error one line naming the problem and
the file, key or option; no traceback. Each test runs the real `wansync` command."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TEST_KEY, Env, drop, sigint_default, wait_until
from wansync.simulator import Simulator

WANSYNC = [sys.executable, "-m", "wansync"]
PNG = bytes.fromhex("89504e470d0a1a0a") + b"a tiny picture, not decoded by anyone"


def wansync(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*WANSYNC, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={
            k: v for k, v in os.environ.items() if k not in ("DASHSCOPE_API_KEY", "WANSYNC_CONFIG")
        },
    )


def one_line(result: subprocess.CompletedProcess, code: int = 2) -> str:
    """The command failed with `code` and exactly one stderr line, which is returned."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    return str(result.stderr.strip())


# -- 1: simulate ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--port", "99999"], "argument --port: 99999 is not a port (0 to 65535)"),
        (["--port", "-1"], "argument --port: -1 is not a port"),
        (["--polls", "-1"], "argument --polls: -1 is negative"),
        (["--seconds", "-5"], "argument --seconds: -5 is not a number of seconds above 0"),
        (["--seconds", "nan"], "argument --seconds: nan is not a number of seconds"),
    ],
)
def test_simulate_refuses_numbers_out_of_range_in_one_line(args: list[str], said: str) -> None:
    """Out-of-range options: exit 2, one line naming the option, before anything starts."""
    line = one_line(wansync("simulate", *args))
    assert line.startswith("wansync simulate: ") and said in line


def test_simulate_on_a_port_in_use_names_the_address() -> None:
    """A taken port: one line `cannot listen on HOST:PORT: address already in use`."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line(wansync("simulate", "--port", str(port)))
    assert line == f"wansync: simulate: cannot listen on 127.0.0.1:{port}: address already in use"


def test_simulate_names_a_missing_or_non_pem_certificate(tmp_path: Path) -> None:
    """--tls-cert that does not exist, or is not PEM: one line naming the file."""
    missing = one_line(wansync("simulate", "--port", "0", "--tls-cert", "/nonexist"))
    assert missing == "wansync: --tls-cert: /nonexist: no such file or directory"
    text = tmp_path / "cert.pem"
    text.write_text("hello\n")
    not_pem = one_line(wansync("simulate", "--port", "0", "--tls-cert", str(text)))
    assert not_pem.startswith(f"wansync: --tls-cert: {text}: not a PEM certificate")
    cert = tmp_path / "only-cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    key = one_line(
        wansync("simulate", "--port", "0", "--tls-cert", str(cert), "--tls-key", str(text))
    )
    assert key.startswith(f"wansync: --tls-key: {text}: not a PEM private key")
    cert.write_text(
        cert.read_text() + "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )
    garbage = one_line(wansync("simulate", "--port", "0", "--tls-cert", str(cert)))
    assert garbage.startswith(f"wansync: --tls-cert: {cert}: not a valid PEM certificate and")


# -- 3: where the key came from ---------------------------------------------------------------
def test_key_messages_say_where_the_key_came_from(env: Env, sim: Simulator) -> None:
    """A refused key names $DASHSCOPE_API_KEY; no key names every place looked at."""
    wrong = one_line(env.cli("check", "--online", key="wrong-key-1234567"))
    assert wrong.startswith("wansync: the API rejected the key from $DASHSCOPE_API_KEY (")
    assert "InvalidApiKey" in wrong and "api.key_file" not in wrong
    assert "wrong-key-1234567" not in wrong
    for command in ("check", "once", "run"):
        line = one_line(env.cli(command, key=None))
        assert line == (
            "wansync: no API key: set api.key_file, $DASHSCOPE_API_KEY, "
            "or (under systemd) the dashscope_api_key credential"
        ), command
    env.configure(api={"key_file": str(env.root / "no-such.key")})
    named = one_line(env.cli("check", key=None))
    assert named.startswith(f"wansync: api.key_file: cannot read {env.root / 'no-such.key'}")


# -- 4: cancel of something no file here tracks -------------------------------------------------
def test_cancel_of_an_untracked_id_says_nothing_here_tracks_it(env: Env, sim: Simulator) -> None:
    """An argument that is no name in the inbox is sent as an id, and the output says so."""
    result = env.cli("cancel", "no-such-name")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "no-such-name: not a task in the inbox; sent as a task id: "
        "cancel accepted (no task file here tracks it)\n"
    )
    drop(env.inbox, "later", "held-task-00001")
    by_id = env.cli("cancel", "held-task-00001")
    assert by_id.returncode == 0, by_id.stderr
    assert by_id.stdout.startswith("later (held-task-00001): cancel accepted; the task will end")


# -- 5: status ----------------------------------------------------------------------------------
def test_status_shows_files_not_picked_up_as_waiting_in_natural_order(env: Env) -> None:
    """A `.task` no daemon has seen is `waiting`; `pic` comes before `pic-2` and `pic-10`."""
    for name in ("pic-10", "pic-2", "pic"):
        drop(env.inbox, name, f"task-{name}-000001")
    rows = json.loads(env.cli("status", "--json").stdout)
    assert [r["name"] for r in rows] == ["pic", "pic-2", "pic-10"]
    assert {r["state"] for r in rows} == {"waiting"}
    table = env.cli("status").stdout.splitlines()
    assert [line.split()[1] for line in table[1:]] == ["pic", "pic-2", "pic-10"]


# -- 6: hooks that cannot run -------------------------------------------------------------------
def test_check_warns_about_a_hook_that_cannot_run(env: Env, tmp_path: Path) -> None:
    """A missing or non-executable hook program: one warning line each, exit 0."""
    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\n")
    env.configure(hooks={"on_success": "/nonexistent.sh --x", "on_failure": str(plain)})
    result = env.cli("check")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "wansync: warning: hooks.on_success: /nonexistent.sh: no such file",
        f"wansync: warning: hooks.on_failure: {plain}: not an executable file",
    ]
    env.configure(hooks={"on_success": "no-such-program-xyz", "on_failure": "true"})
    result = env.cli("check")
    assert result.stderr == (
        "wansync: warning: hooks.on_success: no-such-program-xyz: not found on $PATH\n"
    )


# -- 7: a base_url copied from the SDK docs ----------------------------------------------------
def test_a_base_url_ending_in_api_v1_works(env: Env, sim: Simulator) -> None:
    """`…/api/v1` (as the SDK's docs write it) is dropped: `check --online` works."""
    env.configure(api={"base_url": sim.url + "/api/v1/"})
    result = env.cli("check", "--online")
    assert result.returncode == 0, result.stderr
    assert f"api: ok (the key works: {sim.url} accepted it" in result.stdout


# -- 8, 9: what add and submit say --------------------------------------------------------------
def test_submit_names_a_missing_picture_as_typed(env: Env) -> None:
    """`submit nope.png`: `nope.png: no such file or directory`, not a job field."""
    line = one_line(env.cli("submit", "nope.png", "--prompt", "p"))
    assert line == "wansync: nope.png: no such file or directory"


def test_add_names_clashes_strips_task_and_says_it_created_the_inbox(env: Env) -> None:
    """A clash names the file and --name; `--name x.task` is `x`; a new inbox is said."""
    env.configure(inbox=str(env.root / "new" / "inbox"))
    first = env.cli("add", "dup-task-00001")
    assert first.returncode == 0
    assert first.stderr == f"wansync: created the inbox {env.root / 'new' / 'inbox'}\n"
    again = one_line(env.cli("add", "dup-task-00001"))
    target = env.root / "new" / "inbox" / "dup-task-00001.task"
    assert again == f"wansync: {target} already exists; pick another --name"
    named = env.cli("add", "dup-task-00002", "--name", "x.task")
    assert named.returncode == 0 and named.stderr == ""
    assert named.stdout.strip() == str(env.root / "new" / "inbox" / "x.task")


# -- 10: submit --wait ----------------------------------------------------------------------
@pytest.fixture
def slow_env(tmp_path: Path):
    """A simulator whose tasks stay RUNNING for a long time, and a set-up for jobs."""
    with Simulator(key=TEST_KEY, pending_polls=1, running_polls=100_000) as server:
        setup = Env(tmp_path, server, submit={"max_per_second": 50})
        yield setup
        setup.reap()


def test_submit_wait_shows_readable_progress_and_the_mp4(env: Env, tmp_path: Path) -> None:
    """Run here (no daemon): `wansync: NAME: state` lines, no JSON log lines, the MP4."""
    env.configure(submit={"max_per_second": 50})
    picture = tmp_path / "pic.png"
    picture.write_bytes(PNG)
    result = env.cli("submit", str(picture), "--prompt", "p", "--wait", "--timeout", "50")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).name == "pic.mp4"
    lines = result.stderr.splitlines()
    assert all(line.startswith("wansync: ") for line in lines), lines
    assert any(line.startswith("wansync: pic: ") for line in lines[1:]), lines  # its states


def test_submit_wait_timeout_says_what_becomes_of_the_job(slow_env: Env, tmp_path: Path) -> None:
    """--timeout: exit 124 and one last line saying the job goes on at the next run."""
    picture = tmp_path / "clip.png"
    picture.write_bytes(PNG)
    result = slow_env.cli("submit", str(picture), "--prompt", "p", "--wait", "--timeout", "3")
    assert result.returncode == 124, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("wansync: clip: not done after 3 s; "), result.stderr
    assert "stays in the inbox" in last and "next run" in last


def test_ctrl_c_on_submit_wait_says_the_job_stays(slow_env: Env, tmp_path: Path) -> None:
    """Ctrl-C while the task runs: exit 130, `interrupted; … stays in the inbox …`."""
    picture = tmp_path / "clip.png"
    picture.write_bytes(PNG)
    stderr, config = tmp_path / "submit.err", slow_env.config_path
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [*WANSYNC, "submit", str(picture), "--prompt", "p", "--wait", "-c", str(config)],
            stdout=subprocess.PIPE,
            stderr=err,
            env=slow_env.env(),
            text=True,
            preexec_fn=sigint_default,
        )
        wait_until(lambda: "polling (RUNNING)" in stderr.read_text(), 30, "the task running")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130, stderr.read_text()
    last = stderr.read_text().splitlines()[-1]
    assert last == (
        "wansync: clip: interrupted; its task exists: clip.task stays in the inbox "
        "and is fetched by the next run"
    )
    assert (slow_env.inbox / "clip.task").exists() and (slow_env.inbox / "clip.job").exists()


# -- pure helpers, in-process --------------------------------------------------------------------
def test_status_table_fits_a_narrow_terminal_and_marks_what_it_cut() -> None:
    """At 80 and 150 columns every line fits and keeps the whole task id; cut text ends
    in `…`; at 150 the error code shows whole."""
    from wansync.cli.status import frame, render

    error = {"code": "InvalidParameter", "message": "a long explanation " * 10}
    task_id = "af6efbc0-1234-4567-8901-abcdefabcdef"
    rows = [
        {
            "where": "inbox",
            "name": name,
            "task_id": task_id,
            "state": "polling",
            "task_status": "RUNNING",
            "polls": 3,
            "age_seconds": 5.0,
            "error": error,
            "download": None,
        }
        for name in ("pic", "a-rather-long-clip-name-0001")
    ]
    for columns in (80, 150):
        lines = render(rows, columns).splitlines()
        assert max(len(line) for line in lines) <= columns - 1
        assert all(line.endswith("…") for line in lines[1:])
        assert all(task_id in line for line in lines[1:])
        assert all("Invalid" in line for line in lines[1:])
    assert all("InvalidParameter" in line for line in render(rows, 150).splitlines()[1:])
    assert "a long explanation" in render(rows)  # off a terminal: never cut
    assert "  1 task  " in frame(rows[:1], 0.0) and "  2 tasks  " in frame(rows, 0.0)


def test_base_url_drops_a_copied_api_v1() -> None:
    """`https://host/api/v1` and `…/api/v1/` are `https://host`; other URLs are unchanged."""
    from wansync import config

    for url in ("https://h.example.com/api/v1", "https://h.example.com/api/v1/"):
        assert config.from_mapping({"api": {"base_url": url}}).api.base_url == (
            "https://h.example.com"
        )
    kept = config.from_mapping({"api": {"base_url": "http://127.0.0.1:8/proxy/"}})
    assert kept.api.base_url == "http://127.0.0.1:8/proxy"


def test_a_relative_job_path_names_where_it_was_looked_for(tmp_path: Path) -> None:
    """`image: 'pic.png'` missing: the message shows the inbox path it was read from."""
    from wansync.core.errors import JobFileError
    from wansync.files.jobfile import parse

    doc = {"model": "wan2.6-i2v", "prompt": "p", "image": "pic.png"}
    with pytest.raises(JobFileError) as caught:
        parse(json.dumps(doc).encode(), "wan2.7-i2v", tmp_path, 10**6)
    assert str(caught.value) == (
        f"image: 'pic.png': no such file or directory (looked for {tmp_path / 'pic.png'}: "
        "a relative path is read from the inbox)"
    )


def test_the_readme_lists_every_log_event_the_code_emits() -> None:
    """Every `x.y` event name in a log call or an `EVENT =` of wansync/ is in docs/logs.md."""
    repo = Path(__file__).resolve().parent.parent
    source = "\n".join(p.read_text() for p in (repo / "wansync").rglob("*.py"))
    call = r"\.(?:debug|info|warning|error|exception)\(\s*\"([a-z_]+\.[a-z_.]+)\""
    names = set(re.findall(call, source)) | set(re.findall(r'EVENT = "([a-z_]+\.[a-z_]+)"', source))
    names -= {"api.answered"}  # LEVEL = None: counted by metrics, never logged
    logs = (repo / "docs" / "logs.md").read_text()
    missing = sorted(n for n in names if f"`{n}`" not in logs)
    assert not missing, missing
    assert len(names) > 40
