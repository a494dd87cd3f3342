"""The subcommands; thin: each parses its flags and calls into the modules that do the work."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Sequence

from . import __version__, checks, config, log
from .daemon import EXIT_CONFIG, EXIT_FAILED, EXIT_LOCKED, EXIT_OK, Daemon, InboxLocked
from .errors import AuthRejected, ConfigError, TaskFileError, UsageError, WansyncError
from .fsutil import write_bytes_atomic
from .taskfile import TASK_SUFFIX, check_task_id


def _config(args: argparse.Namespace) -> config.Config:
    return config.load(args.config)


def _daemon(args: argparse.Namespace, burst: bool, only: set[str] | None = None) -> int:
    cfg = _config(args)
    key = config.load_api_key(cfg)
    log.add_secret(key)
    log.configure(cfg.log.level, cfg.log.format)
    checks.prepare_folders(cfg)
    daemon = Daemon(cfg, key)
    daemon.install_signals()
    try:
        return daemon.run(burst=burst, timeout=getattr(args, "timeout", None), only=only)
    except InboxLocked:
        raise InboxLocked(checks.lock_message(cfg.inbox)) from None
    except ConfigError:
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
    name = args.name or task_id
    if "/" in name or name.startswith(".") or name in ("", ".."):
        raise UsageError(f"--name: {name!r} cannot be a file name (no '/', no leading '.')")
    target = cfg.inbox / f"{name}{TASK_SUFFIX}"
    try:
        cfg.inbox.mkdir(parents=True, exist_ok=True)
        if target.exists():
            raise UsageError(f"--name: {target} already exists")
        write_bytes_atomic(target, f"{task_id}\n".encode())
    except OSError as exc:
        raise checks.inbox_error(exc, cfg.inbox) from None
    print(target)
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    from .submit_cli import submit

    return submit(args, lambda name: _daemon(args, burst=True, only={name}))


def cmd_status(args: argparse.Namespace) -> int:
    from .status import collect, render, watch

    cfg = _config(args)
    _say_where(cfg)
    if args.watch:
        if args.json:
            raise UsageError("--watch: not with --json (run `status --json` in a loop instead)")
        watch(cfg, sys.stdout)
        return EXIT_OK
    rows = collect(cfg)
    print(json.dumps(rows, indent=2) if args.json else render(rows))
    return EXIT_OK


def _say_where(cfg: config.Config) -> None:
    """With no config file, or no folders, one line on stderr saying what was looked at."""
    folders = f"{cfg.inbox}, {cfg.outbox}, {cfg.failed}"
    if cfg.source is None:
        print(
            f"wansync: no config file found ($WANSYNC_CONFIG, {', '.join(config.SEARCH_PATH)});"
            f" showing the default folders {folders}",
            file=sys.stderr,
        )
    elif not any(f.is_dir() for f in (cfg.inbox, cfg.outbox, cfg.failed)):
        print(f"wansync: {cfg.source}: none of its folders exist yet ({folders})", file=sys.stderr)


def cmd_retry(args: argparse.Namespace) -> int:
    """A failed job is submitted anew (a new task); a failed task is polled again."""
    from .retry_cli import NothingToRetry, retry

    try:
        path, done = retry(_config(args), args.name)
    except NothingToRetry as exc:
        raise UsageError(str(exc)) from None
    print(f"wansync: {done}", file=sys.stderr)
    print(path)
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Validate; change nothing (missing folders are reported, `run` creates them)."""
    cfg = _config(args)
    print(f"config: ok ({cfg.source or 'defaults, no config file found'})")
    missing = checks.check_folders(cfg)
    print(f"folders: ok ({cfg.inbox}, {cfg.outbox}, {cfg.failed})")
    for folder in missing:
        print(f"  {folder} does not exist yet; `wansync run` will create it")
    key, source = checks.find_key(cfg, args.key_file)
    log.add_secret(key)
    print(f"key: found ({source})")
    if args.online:
        _check_online(cfg, key)
    return EXIT_OK


def _check_online(cfg: config.Config, key: str) -> None:
    from .api import TaskApi

    api = TaskApi(cfg.api.base_url, key, cfg.api.timeout)
    try:
        api.fetch("wansync-check-00000000")  # a made-up id: any answer proves key and URL
    except AuthRejected as exc:
        raise ConfigError(f"api.key_file: the API rejected the key ({exc.code})") from None
    except WansyncError as exc:
        raise ConfigError(f"api.base_url: {log.scrub(str(exc))}") from None
    finally:
        api.close()
    print(f"api: ok (the key works: {cfg.api.base_url} accepted it and answered a test query)")


def cmd_cancel(args: argparse.Namespace) -> int:
    from .cancel import NotATask, run

    cfg = _config(args)
    key = config.load_api_key(cfg)
    log.add_secret(key)
    try:
        return run(cfg, key, args.target)
    except NotATask as exc:
        raise UsageError(f"NAME_OR_TASK_ID: {exc}") from None


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulator import Simulator

    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    sim = Simulator(
        tls=tls,
        host=args.host,
        port=args.port,
        key=args.key,
        running_polls=args.polls,
        seconds=args.seconds,
    )
    print(f"DashScope simulator on {sim.url}  (key: {args.key})", flush=True)  # line 1: URL
    print("ids containing 'fail', 'cancel' or 'unknown' end that way; others succeed", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sim.serve_forever()
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run

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
    p = add("submit", cmd_submit, "write a .job for one picture (and with --wait, get the MP4)")
    p.epilog = "exit: 0 done (--wait: the MP4's path on stdout), 1 failed, 2 bad job, 124 timed out"
    p.add_argument("image", metavar="IMAGE_OR_URL", help="the first frame: a file or a URL")
    p.add_argument("--prompt", required=True, help="what should happen in the video")
    p.add_argument("--name", help="file name without .job (default: the picture's name)")
    p.add_argument("--model", help="the model (default: submit.model from the config)")
    p.add_argument("--resolution", help="480P, 720P or 1080P (default: the model's own)")
    p.add_argument("--duration", type=int, help="seconds of video, 2 to 15 (default: the model's)")
    p.add_argument("--wait", action="store_true", help="wait for the video; print its path")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wansync",
        description="Fetch finished Wan 2.7 videos from DashScope into a folder.",
    )
    parser.add_argument("--version", action="version", version=f"wansync {__version__}")
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
    p.add_argument("--port", type=int, default=8765, help="port (default: %(default)s)")
    p.add_argument("--key", default="sim-key", help="the API key it accepts (default: %(default)s)")
    p.add_argument(
        "--polls",
        type=int,
        default=2,
        help="polls a task answers RUNNING, after one PENDING poll (default: %(default)s)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        help="time-based tasks instead: seconds from the first poll "
        "until done, a third of it PENDING (default: unset, --polls counts)",
    )
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key")
    add("demo", cmd_demo, "run the simulator and the daemon on a new temp folder (kept) and watch")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, UsageError) as exc:
        print(f"wansync: {log.scrub(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    except InboxLocked as exc:
        print(f"wansync: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except OSError as exc:
        # A folder or file the user pointed us at: one line, exit 2. Anything else that
        # gets here is a bug in wansync, and its traceback is what a bug report needs.
        print(f"wansync: {log.scrub(checks.describe(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
