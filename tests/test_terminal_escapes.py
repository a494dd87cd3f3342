"""Escape sequences in outside strings never reach a terminal raw.

A file name, a sidecar's error or an API answer may hold ESC (`\\x1b[2J` clears the
screen, `\\x1b]0;…\\x07` retitles the window), other C0/C1 controls or a bidi override
(U+202E turns `gpj.exe` into `exe.jpg`). What a person reads — the console log, a
command's message, the `status` table — shows them escaped (`\\x1b[2J`); JSON lines
escape them as JSON does. Real files with such names, the real daemon and commands.
"""

from __future__ import annotations

import json
import re

from tests.helpers import Env, drop
from tests.tty import PtyRun, screen

EVIL = "evil\x1b[2J\x1b]0;pwned\x07\u202egpj"  # clears, retitles, then reads backwards
SHOWN = "evil\\x1b[2J\\x1b]0;pwned\\x07\\u202egpj"  # what a person must see instead
COLOURS = re.compile(r"\x1b\[[0-9;]*m")  # the console renderer's own colours may stay


def raw_controls(text: str) -> list[str]:
    """Control and bidi characters in `text` once the renderer's colour codes are taken out
    (line ends are the output's own)."""
    bare = COLOURS.sub("", text)
    return sorted({c for c in bare if not c.isprintable() and c not in "\r\n"})


def _failed_with(env: Env, name: str, message: str) -> None:
    """`failed/NAME.task` and its sidecar, ended with `message` (a transient-free error)."""
    drop(env.failed, name, "task-evil-000001")
    sidecar = {
        "schema": 1,
        "name": name,
        "task_id": "task-evil-000001",
        "state": "failed",
        "published_as": name,
        "finished": "2026-12-01T10:00:00.000Z",
        "error": {"code": "InternalError", "message": message, "transient": False},
    }
    (env.failed / f"{name}.status.json").write_text(json.dumps(sidecar))


def test_the_console_log_on_a_terminal_shows_a_file_names_escapes_escaped(env: Env) -> None:
    """`once` on a terminal (console log, in colour) fetching `EVIL.task`: the name is shown
    escaped on the screen, and no byte but the renderer's colours is a control."""
    drop(env.inbox, EVIL, "task-evil-000001")
    env.configure(log={"format": "auto", "level": "info"})
    run = PtyRun("once", "-c", str(env.config_path), env=env.env())
    assert run.wait(60) == 0, run.text()[-3000:]
    out = run.text()
    assert "\x1b[" in out, "the console renderer's colours (the log is on a terminal)"
    assert raw_controls(out) == [], out[-3000:]
    shown = "\n".join(screen(out))
    assert "task.succeeded" in shown and SHOWN in shown, shown


def test_the_console_log_off_a_terminal_and_json_lines_carry_no_raw_controls(env: Env) -> None:
    """`log.format: console` into a file, and JSON lines: the name is written escaped."""
    drop(env.inbox, EVIL, "task-evil-000001")
    env.configure(log={"format": "console", "level": "info"})
    console = env.cli("once", "--timeout", "30")
    assert console.returncode == 0, console.stderr[-3000:]
    assert raw_controls(console.stderr) == [] and SHOWN in console.stderr
    drop(env.inbox, "again", "task-evil-000002")
    (env.inbox / f"{EVIL}.job").write_text("model: [not a model]\n")
    env.configure(log={"format": "json", "level": "info"})
    lines = env.cli("once", "--timeout", "30")
    assert raw_controls(lines.stderr) == [], lines.stderr[-3000:]
    refused = [json.loads(x) for x in lines.stderr.splitlines() if "job.invalid" in x]
    assert refused and refused[0]["name"] == EVIL, "JSON keeps the name, escaped as JSON"


def test_command_messages_and_the_status_table_show_escapes_escaped(env: Env) -> None:
    """`retry`, an error line, `status` and `add`, each naming `EVIL` or showing an error
    that holds escapes: every byte a person reads is printable."""
    _failed_with(env, EVIL, "the API said \x1b[31mred\x1b[0m and \u202eoreo\x85")
    retried = env.cli("retry", EVIL)
    assert retried.returncode == 0, retried.stderr
    said = retried.stdout + retried.stderr
    assert raw_controls(said) == [], said
    assert SHOWN in retried.stderr and "\\x1b[31mred\\x1b[0m and \\u202eoreo\\x85" in said
    refused = env.cli("retry", "nothing\x1b[2J\u202e")
    assert refused.returncode == 2 and raw_controls(refused.stderr) == [], refused.stderr
    assert "nothing\\x1b[2J\\u202e" in refused.stderr
    status = env.cli("status")
    assert status.returncode == 0, status.stderr
    assert raw_controls(status.stdout + status.stderr) == [] and SHOWN in status.stdout
    added = env.cli("add", "task-evil-000003", "--name", "new\x1b[2J\u202ename")
    assert added.returncode == 0 and raw_controls(added.stdout + added.stderr) == []
    assert (env.inbox / "new\x1b[2J\u202ename.task").exists()
