"""The subcommands; thin: each parses its flags and calls into the modules that do the work."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn
from urllib.parse import urlsplit

from wansync import __version__, config, log
from wansync.cli import checks, service_check
from wansync.cli.say import out, out_lines, say
from wansync.cli.simulate import non_negative_int, port, positive_seconds
from wansync.core.errors import (
    AuthRejected,
    ConfigError,
    NoSpace,
    OutOfResources,
    TaskFileError,
    UsageError,
    WansyncError,
)
from wansync.files.fsutil import write_bytes_atomic
from wansync.files.taskfile import TASK_SUFFIX, check_task_id
from wansync.run.daemon import EXIT_CONFIG, EXIT_FAILED, EXIT_LOCKED, EXIT_OK, InboxLocked, build

EXIT_PIPE = 128 + signal.SIGPIPE  # 141: what a shell reports for a program SIGPIPE ended


def _config(args: argparse.Namespace) -> config.Config:
    return config.load(args.config)


def _daemon(
    args: argparse.Namespace, burst: bool, only: set[str] | None = None, quiet: bool = False
) -> int:
    cfg = _config(args)
    key = config.load_api_key(cfg)
    log.add_secret(key)
    if quiet:  # `submit --wait` prints its own progress lines; only problems from the daemon
        log.configure("warning", "console")
    else:
        log.configure(cfg.log.level, cfg.log.format)
    checks.prepare_folders(cfg)
    if cfg.api.key_file is not None and (exposed := checks.key_file_exposed(cfg.api.key_file)):
        log.get("wansync").warning(
            "key_file.permissions",
            file=str(cfg.api.key_file),
            mode=f"{exposed[0]:04o}",
            detail=f"readable by {exposed[1]}; `chmod 600` it (or 0400, owned by the "
            "service's user)",
        )
    daemon = build(cfg, key)
    daemon.install_signals()
    try:
        return daemon.run(burst=burst, timeout=getattr(args, "timeout", None), only=only)
    except (InboxLocked, ConfigError):  # each says what and where in one line
        raise
    except Exception:
        # One JSON line with the traceback as a field, never a multi-line dump on stderr.
        log.get("wansync").exception("daemon.crashed")
        return EXIT_FAILED


def cmd_run(args: argparse.Namespace) -> int:
    return _daemon(args, burst=False)


def cmd_once(args: argparse.Namespace) -> int:
    return _daemon(args, burst=True)


def cmd_add(args: argparse.Namespace) -> int:
    cfg = _config(args)
    try:
        task_id = check_task_id(args.task_id.strip())
    except TaskFileError as exc:
        raise UsageError(f"TASK_ID: {exc}") from None
    name = args.name.removesuffix(TASK_SUFFIX) if args.name else task_id
    if "/" in name or name.startswith(".") or name in ("", ".."):
        raise UsageError(f"--name: {name!r} cannot be a file name (no '/', no leading '.')")
    target = cfg.inbox / f"{name}{TASK_SUFFIX}"
    taken = UsageError(f"{target} already exists; pick another --name")
    try:
        created = checks.make_inbox(cfg.inbox)
        if os.path.lexists(target):
            raise taken
        try:
            write_bytes_atomic(target, f"{task_id}\n".encode())
        except FileExistsError:  # another `add` took the name meanwhile: its file stays
            raise taken from None
    except OSError as exc:
        raise checks.inbox_error(exc, cfg.inbox, target) from None
    if created:  # said, so that a mistyped path is noticed
        say(f"wansync: created the inbox {cfg.inbox}")
    out(target)
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    from wansync.cli.submit import submit

    return submit(args, lambda name: _daemon(args, burst=True, only={name}, quiet=True))


def cmd_status(args: argparse.Namespace) -> int:
    from wansync.cli.status import collect, render, watch

    cfg = _config(args)
    _say_where(cfg)
    _say_who_runs(cfg)
    if args.watch:
        if args.json:
            raise UsageError("--watch: not with --json (run `status --json` in a loop instead)")
        watch(cfg, sys.stdout)
        return EXIT_OK
    rows = collect(cfg)
    columns = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    out_lines(json.dumps(rows, indent=2) if args.json else render(rows, columns))
    return EXIT_OK


def _say_who_runs(cfg: config.Config) -> None:
    """One stderr line: whether a daemon runs this inbox (its `.wansync.live`), which
    anyone who may read the inbox can tell, though only the service may open the lock."""
    from wansync.files import liveness

    if not cfg.inbox.is_dir():
        return
    running = liveness.running(cfg.inbox)
    if running is not None:
        said = f"runs (PID {running.pid}, user {running.user}, since {running.started})"
    else:
        last = liveness.read(cfg.inbox)
        when = f"; the last one stopped {last.stopped}" if last and last.stopped else ""
        said = f"is not running{when}"
    say(f"wansync: the daemon of {cfg.inbox} {said}")


def _say_where(cfg: config.Config) -> None:
    """With no config file, or no folders, one line on stderr saying what was looked at."""
    folders = f"{cfg.inbox}, {cfg.outbox}, {cfg.failed}"
    if cfg.source is None:
        say(
            f"wansync: no config file found ($WANSYNC_CONFIG, {', '.join(config.SEARCH_PATH)});"
            f" showing the default folders {folders}"
        )
    elif not any(f.is_dir() for f in (cfg.inbox, cfg.outbox, cfg.failed)):
        say(f"wansync: {cfg.source}: none of its folders exist yet ({folders})")


def cmd_retry(args: argparse.Namespace) -> int:
    """A failed job is submitted anew (a new task); a failed task is polled again."""
    from wansync.cli.retry import NothingToRetry, RetryRefused, retry

    try:
        path, done = retry(_config(args), args.name, force=args.force)
    except NothingToRetry as exc:
        raise UsageError(str(exc)) from None
    except RetryRefused as exc:
        say(f"wansync: {exc}")
        return EXIT_FAILED
    say(f"wansync: {done}")
    out(path)
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Validate; change nothing (missing folders are reported, `run` creates them)."""
    cfg = _config(args)
    out(f"config: ok ({cfg.source or 'defaults, no config file found'})")
    missing = checks.check_folders(cfg)
    out(f"folders: ok ({cfg.inbox}, {cfg.outbox}, {cfg.failed})")
    for folder in missing:
        out(f"  {folder} does not exist yet; `wansync run` will create it")
    if said := service_check.check(cfg, args.user, args.unit):
        out_lines(said)
    for problem in checks.hook_problems(cfg):  # a warning: the daemon runs without them
        say(f"wansync: warning: {problem}")
    key, source, key_path = checks.locate_key(cfg, args.key_file)
    log.add_secret(key)
    out(f"key: found ({source})")
    if key_path is not None and (warning := checks.key_file_warning(key_path)):
        say(f"wansync: warning: {warning}")
    if args.online:
        _check_online(cfg, key, source)
    return EXIT_OK


def _resolve(base_url: str) -> None:
    """The API's host resolves, or a `ConfigError` naming it (not a bare `gaierror`)."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        why = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise ConfigError(
            f"api.base_url: cannot resolve the host {host} ({why}): no network or no DNS "
            "here, or a mistyped host"
        ) from None


def _check_online(cfg: config.Config, key: str, source: str) -> None:
    from wansync.remote.api import TaskApi

    _resolve(cfg.api.base_url)
    api = TaskApi(cfg.api.base_url, key, cfg.api.timeout)
    try:
        api.fetch("wansync-check-00000000")  # a made-up id: any answer proves key and URL
    except AuthRejected as exc:
        said = getattr(exc, "message", None) or str(exc)
        raise ConfigError(
            f"the API rejected the key from {source} ({exc.code}: {log.scrub(said)})"
        ) from None
    except WansyncError as exc:
        raise ConfigError(f"api.base_url: {log.scrub(str(exc))}") from None
    finally:
        api.close()
    out(f"api: ok (the key works: {cfg.api.base_url} accepted it and answered a test query)")


def cmd_cancel(args: argparse.Namespace) -> int:
    from wansync.cli.cancel import NotATask, run

    cfg = _config(args)
    key = config.load_api_key(cfg)
    log.add_secret(key)
    try:
        return run(cfg, key, args.target)
    except NotATask as exc:
        raise UsageError(f"NAME_OR_TASK_ID: {exc}") from None


def cmd_simulate(args: argparse.Namespace) -> int:
    from wansync.cli.simulate import run

    return run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from wansync.cli.demo import run

    return run()


Command = Callable[[argparse.Namespace], int]


def _subcommand(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, func: Command, text: str
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=text, description=text)
    p.set_defaults(func=func)
    return p


def with_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="config file (default: $WANSYNC_CONFIG, ./wansync.yaml, /etc/wansync/config.yaml)",
    )


def _inbox_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`add` and `submit`: the two ways to put work into the inbox."""

    def add(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        return _subcommand(sub, name, func, help_text)

    p = add("add", cmd_add, "write a .task file into the inbox atomically")
    p.add_argument("task_id", metavar="TASK_ID", help="the DashScope task id to fetch")
    p.add_argument("--name", help="file name without .task (default: the task id)")
    with_config(p)
    p = add("submit", cmd_submit, "write a .job of any kind (and with --wait, get its files)")
    p.epilog = (
        "exit: 0 done (--wait: the MP4's path on stdout), 1 failed, 2 bad job, 124 timed out. "
        "Examples: submit cat.png --prompt 'she smiles'; submit --model wan2.7-t2v --prompt "
        "'a lighthouse'; submit --model wan2.2-t2i-flash --prompt 'a kite' --n 4; submit "
        '--model wan2.2-s2v --input-json \'{"image_url": ..., "audio_url": ...}\''
    )
    p.add_argument(
        "image",
        metavar="IMAGE_OR_URL",
        nargs="?",
        help="the picture, for a model that takes one (the first frame of image-to-video): "
        "a file or a URL",
    )
    p.add_argument("--prompt", help="what should happen in the video, or be in the picture")
    p.add_argument(
        "--name", help="file name without .job (default: the picture's name, else video or picture)"
    )
    p.add_argument("--model", help="the model (default: submit.model from the config)")
    p.add_argument("--n", type=int, help="pictures to make, for a picture model (e.g. 1 to 4)")
    p.add_argument("--resolution", help="e.g. 720P or 1080P (default: the model's own)")
    p.add_argument("--duration", type=int, help="seconds of video (default: the model's)")
    p.add_argument(
        "--input-json",
        metavar="JSON",
        help="the request's input as the API takes it (no IMAGE_OR_URL, --prompt, --n, "
        '--resolution or --duration beside it); {"path": FILE} is uploaded',
    )
    p.add_argument(
        "--parameters-json", metavar="JSON", help="with --input-json: the request's parameters"
    )
    p.add_argument(
        "--endpoint",
        help="the create endpoint under /api/v1/services/, for a model wansync does not know "
        "(default: the model's)",
    )
    p.add_argument("--wait", action="store_true", help="wait for its files; print their paths")
    p.add_argument(
        "--timeout", type=float, metavar="S", help="with --wait: give up after S s (default: none)"
    )
    with_config(p)


def _inspect_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`status`, `retry` and `check`: look at (and put right) what is there."""

    def add(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        return _subcommand(sub, name, func, help_text)

    p = add("status", cmd_status, "list every task in inbox, outbox and failed")
    with_config(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--watch",
        action="store_true",
        help="redraw the table every second (in place on a terminal) until Ctrl-C",
    )
    p = add(
        "retry",
        cmd_retry,
        "move the latest failed record of a task or job back into the inbox, under its name",
    )
    p.add_argument("name", metavar="NAME", help="the task's name (NAME-2 means the same task)")
    p.add_argument(
        "--force",
        action="store_true",
        help="also a task DashScope FAILED (polled again; a job: a new task), and a job "
        "whose create was uncertain without searching for its task first",
    )
    p.epilog = (
        "exit: 0 moved back, 1 refused (DashScope FAILED it; see --force), 2 nothing to retry "
        "(or its file is a symbolic link or not a regular file: never followed)"
    )
    with_config(p)
    p = add("check", cmd_check, "validate config, folders and key; changes nothing")
    with_config(p)
    p.add_argument(
        "--key-file",
        metavar="FILE",
        help="read the API key from FILE (default: api.key_file, $DASHSCOPE_API_KEY, the "
        "systemd credential; as root, then the service's file in /etc/wansync)",
    )
    p.add_argument("--online", action="store_true", help="also make one API call with the key")
    p.add_argument(
        "--user",
        metavar="USER",
        help="check that USER can start wansync (default: User= of the installed unit; "
        "as root with no unit, wansync if that user exists)",
    )
    p.add_argument(
        "--unit",
        metavar="FILE",
        help="the systemd unit to judge the install by (default: the installed "
        "wansync.service, or wansync@NAME.service for /etc/wansync/NAME.yaml)",
    )


class _Parser(argparse.ArgumentParser):
    """argparse, but a wrong flag is one line naming it (not the usage block), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = _Parser(
        prog="wansync",
        description="Fetch finished Wan 2.7 videos from DashScope into a folder.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"wansync {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        return _subcommand(sub, name, func, help_text)

    with_config(add("run", cmd_run, "run the daemon in the foreground"))
    p = add("once", cmd_once, "handle every task and job in the inbox now to its end, then exit")
    p.epilog = (
        "exit: 0 all succeeded, 1 any failed, 2 bad config, 3 inbox locked, 124 timed out, "
        "130/143 interrupted (SIGINT/SIGTERM; everything resumes at the next run)"
    )
    with_config(p)
    p.add_argument(
        "--timeout", type=float, metavar="S", help="give up after S s, exit 124 (default: none)"
    )
    _inbox_commands(sub)
    _inspect_commands(sub)
    p = add("cancel", cmd_cancel, "cancel a task that has not started (PENDING)")
    p.add_argument("target", metavar="NAME_OR_TASK_ID", help="a name in the inbox, or a task id")
    with_config(p)
    p = add("simulate", cmd_simulate, "run a local DashScope-compatible server")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    p.add_argument("--port", type=port, default=8765, help="port, 0-65535 (default: %(default)s)")
    p.add_argument("--key", default="sim-key", help="the API key it accepts (default: %(default)s)")
    p.add_argument(
        "--polls",
        type=non_negative_int,
        default=2,
        help="polls a task answers RUNNING, after one PENDING poll (default: %(default)s)",
    )
    p.add_argument(
        "--seconds",
        type=positive_seconds,
        help="time-based tasks instead: seconds from the first poll "
        "until done, a third of it PENDING (default: unset, --polls counts)",
    )
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key")
    add("demo", cmd_demo, "run the simulator and the daemon on a new temp folder (kept) and watch")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    given = sys.argv[1:] if argv is None else list(argv)
    if not given:  # no command: the commands, as `--help` shows them, and the usage exit
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    args = parser.parse_args(given)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # here, not at exit: a reader gone is caught below
        return code
    except BrokenPipeError:
        return _reader_gone()
    except (ConfigError, UsageError) as exc:
        say(f"wansync: {log.scrub(str(exc))}")
        return EXIT_CONFIG
    except InboxLocked as exc:
        say(f"wansync: {exc}")
        return EXIT_LOCKED
    except NoSpace as exc:  # a full disk: not the input's fault, and nothing left behind
        say(f"wansync: {exc}")
        return EXIT_FAILED
    except OutOfResources as exc:  # no descriptor or memory left: nothing is wrong with a file
        say(f"wansync: {exc}; try again")
        return EXIT_FAILED
    except OSError as exc:
        # A folder or file the user pointed us at: one line, exit 2. Anything else that
        # gets here is a bug in wansync, and its traceback is what a bug report needs.
        say(f"wansync: {log.scrub(checks.describe(exc))}")
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_FAILED


def _reader_gone() -> int:
    """stdout's reader hung up (`wansync status --json | head -1`): it had all it wanted.
    End quietly, with the code of a program SIGPIPE ended, as a pipeline expects; stdout
    goes to /dev/null so the interpreter's last flush has nothing to complain about."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_PIPE


if __name__ == "__main__":
    sys.exit(main())
