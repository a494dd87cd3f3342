"""`wansync submit`: a `.job` from the command line, of any kind; with `--wait`, its files.

`IMAGE_OR_URL --prompt …` is image-to-video as before; `--model wan2.7-t2v --prompt …`
needs no picture; `--n 4` asks a picture model for four; `--input-json` (and
`--parameters-json`) give the request as the API takes it. The job is checked as the
daemon checks it before it is written: a bad one is one line on stderr and exit 2.

With `--wait` and no daemon on the inbox, this process runs the job itself (a burst
daemon for just this name); with one running, it watches the job's files until it ends.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shlex
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wansync import config
from wansync.cli import visible
from wansync.cli.checks import describe, inbox_error, make_inbox, name_given
from wansync.cli.say import out, say
from wansync.core import kinds
from wansync.core.errors import ConfigError, JobFileError, UsageError
from wansync.core.record import TaskRecord
from wansync.files import liveness, lock, sidecar
from wansync.files.fsutil import write_bytes_atomic
from wansync.files.jobfile import JOB_SUFFIX, URL_SCHEMES, parse
from wansync.files.taskfile import TASK_SUFFIX
from wansync.run import signals
from wansync.run.daemon import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, InboxLocked
from wansync.run.publish import free_name

EXIT_INTERRUPTED = 130  # 128 + SIGINT; `once` gives 143 for SIGTERM
FIELD_FLAGS = ("prompt", "n", "resolution", "duration")  # flags that are job fields as named
IMAGE_ARG = "IMAGE_OR_URL"
NAME_ATTEMPTS = 100  # free names tried when other commands keep taking them first


def picture_slot(kind: kinds.Kind) -> tuple[str, str | None] | None:
    """Where a kind takes the one picture of the command line: (field, media type), or
    None for a kind that takes none (text-to-video, text-to-image)."""
    if kind.media is not None:
        media = next((t for t in kind.media.types if t.media == "image"), None)
        if media is not None:
            return "media", media.name
    param = next((p for p in kind.fields if p.media == "image"), None)
    return (param.name, None) if param is not None else None


def _source(image: str) -> str | dict[str, str]:
    """A URL as given; a local file by its real path (links the user typed resolved now:
    the job check refuses a link anywhere on the way)."""
    if image.startswith(URL_SCHEMES):
        return image
    return {"path": str(Path(image).expanduser().resolve())}


def _picture_fields(kind: kinds.Kind, model: str, image: str) -> dict[str, Any]:
    slot = picture_slot(kind)
    if slot is None:
        raise UsageError(f"{IMAGE_ARG}: {model} ({kind.name}) takes no picture")
    name, media_type = slot
    source = _source(image)
    if media_type is not None:
        item = {"url": source} if isinstance(source, str) else dict(source)
        return {"media": [{"type": media_type, **item}]}
    param = kind.param(name)
    assert param is not None
    if param.test([source]) is None:  # a list of pictures (`images`)
        return {name: [source]}
    return {name: source}


def _json_object(flag: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{flag}: must be a JSON object ({{...}})")
    return value


def _raw_document(args: argparse.Namespace) -> dict[str, Any]:
    """The raw form: `input` and `parameters` as given, nothing beside them."""
    beside = [f"--{k}" for k in FIELD_FLAGS if getattr(args, k, None) is not None]
    if args.image is not None:
        beside.insert(0, IMAGE_ARG)
    if beside:
        raise UsageError(
            f"--input-json gives the request as the API takes it: {', '.join(beside)} cannot "
            "be given beside it (put them in the JSON)"
        )
    if args.input_json is None:
        raise UsageError("--parameters-json needs --input-json (the request's input)")
    doc: dict[str, Any] = {"input": _json_object("--input-json", args.input_json)}
    if args.parameters_json is not None:
        doc["parameters"] = _json_object("--parameters-json", args.parameters_json)
    return doc


def job_document(args: argparse.Namespace, default_model: str) -> dict[str, Any]:
    """The `.job` for the command line, in the fields form or (`--input-json`) the raw one."""
    model = args.model or default_model
    doc: dict[str, Any] = {}
    if args.model:
        doc["model"] = args.model
    if getattr(args, "endpoint", None):
        doc["endpoint"] = args.endpoint
    if getattr(args, "input_json", None) is not None or getattr(args, "parameters_json", None):
        return {**doc, **_raw_document(args)}
    kind = kinds.kind_for(model)
    for key in FIELD_FLAGS:
        if getattr(args, key, None) is not None:
            doc[key] = getattr(args, key)
    if args.image is not None and kind is not None:
        doc.update(_picture_fields(kind, model, args.image))
    return doc


def _default_name(source: str | None, model: str) -> str:
    kind = kinds.kind_for(model)
    fallback = "picture" if kind is not None and kind.files == "picture" else "video"
    if source is None:
        return fallback
    stem = Path(source.split("?", 1)[0].rstrip("/")).stem
    return stem if stem and not stem.startswith(".") else fallback


def _as_typed(message: str, model: str) -> str:
    """Job-file fields named as the command line's: `prompt: …` as `--prompt: …`, the
    picture's field (`media[0].path`, `img_url`) as IMAGE_OR_URL."""
    kind = kinds.kind_for(model)
    slot = picture_slot(kind) if kind is not None else None
    picture = (slot[0],) if slot else ()
    flags = {f: f"--{f}" for f in (*FIELD_FLAGS, "model", "endpoint")}
    parts = []
    for part in message.split("; "):
        field, sep, rest = part.partition(": ")
        if sep and any(re.fullmatch(rf"{f}(\[0\])?(\.path|\.url)?", field) for f in picture):
            part = f"{IMAGE_ARG}: {rest}"
        elif sep and field in flags:
            part = f"{flags[field]}: {rest}"
        parts.append(part)
    return "; ".join(parts)


def refuse_unreadable(picture: Path, inbox: Path) -> None:
    """`ConfigError` when the inbox's daemon (another user: the service) could not read
    the picture: said now, with where to put it, not as a failed job later."""
    reader = visible.reader_of(inbox)
    why = visible.blocked(picture, reader) if reader is not None else None
    if reader is not None and why is not None:
        raise ConfigError(
            f"IMAGE_OR_URL: {picture}: the daemon of {inbox} runs as user "
            f"{reader.user.name}, who cannot read it ({why}). Put the picture where that "
            f"user can read it (a folder in the "
            f"inbox, for instance: mkdir -p {shlex.quote(str(inbox / 'pictures'))} && cp "
            f"{shlex.quote(str(picture))} {shlex.quote(str(inbox / 'pictures'))}/) and "
            f"give that path, or give a URL"
        )


def submit(args: argparse.Namespace, run_burst: Callable[[str, float | None], int]) -> int:
    cfg = config.load(args.config)
    model = args.model or cfg.submit.model
    if args.image is not None and not args.image.startswith(URL_SCHEMES):
        try:  # named as typed: `nope.png: no such file or directory`
            Path(args.image).expanduser().stat()
        except OSError as exc:
            raise ConfigError(describe(exc, args.image)) from None
        refuse_unreadable(Path(args.image).expanduser().resolve(), cfg.inbox)
    doc = job_document(args, cfg.submit.model)
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    try:  # the daemon's own check, now: a bad picture or prompt fails here, not later
        keys = config.key_file_ids(cfg)
        parse(text.encode(), cfg.submit.model, cfg.inbox, cfg.submit.max_upload_bytes, keys)
    except JobFileError as exc:
        say(f"wansync: {_as_typed(str(exc), model)}")
        return EXIT_CONFIG
    try:
        if make_inbox(cfg.inbox):  # said, so that a mistyped path is noticed
            say(f"wansync: created the inbox {cfg.inbox}")
    except OSError as exc:
        raise inbox_error(exc, cfg.inbox) from None
    since = time.time() - 1.0
    name = _write_job(cfg.inbox, args.name, _default_name(args.image, model), text)
    path = cfg.inbox / f"{name}{JOB_SUFFIX}"
    if not args.wait:
        out(path)
        return EXIT_OK
    say(f"wansync: {path.name} written; waiting for its files")
    return _wait(cfg, name, args.timeout, since, run_burst)


def _write_job(inbox: Path, asked: str | None, default: str, text: str) -> str:
    """Write the `.job` under the name `--name` gives, else under the first free name
    like `default`; the name written. A name another command takes at the same moment
    is never overwritten: `--name` is refused, a default name moves on to the next."""
    name = name_given(asked, JOB_SUFFIX) if asked else default
    for _ in range(NAME_ATTEMPTS):
        if not asked:
            name = free_name(inbox, default)
        elif any(os.path.lexists(inbox / f"{name}{s}") for s in (JOB_SUFFIX, TASK_SUFFIX)):
            raise ConfigError(f"{inbox / name}.job (or .task) already exists; pick another --name")
        path = inbox / f"{name}{JOB_SUFFIX}"
        try:
            write_bytes_atomic(path, text.encode("utf-8"))
            return name
        except FileExistsError:  # taken meanwhile, by another `submit`: its file stays
            continue
        except OSError as exc:
            raise inbox_error(exc, inbox, path) from None
    raise ConfigError(f"{inbox}: the names tried for the job were all taken meanwhile; try again")


LOCKED_PAUSES = (1.0, 2.0, 4.0, 8.0)  # the lock held by one that says nothing: ask again


@dataclass
class _Waiting:
    """One `submit --wait`: its job, its deadline, and what it has said so far."""

    cfg: config.Config
    name: str
    since: float  # a sidecar that began before this is another run's
    deadline: float | None  # monotonic
    shown: list[str] = field(default_factory=lambda: [""])  # the state line said last
    said: str = ""  # whom it said it follows, last
    goes_on: bool = False  # the one followed takes this job (a daemon, not a one-shot)


def _wait(
    cfg: config.Config,
    name: str,
    timeout: float | None,
    since: float,
    run_burst: Callable[[str, float | None], int],
) -> int:
    """Follow whoever runs the inbox; run the job here when no one does.

    A daemon that runs (its `.wansync.live`), or an inbox whose lock is another user's
    (the service's, stopped for a moment), is followed: that needs no API key and no
    access to the lock. Whom to follow is asked again while following: a daemon stopped,
    or a one-shot run (`once`, another `submit --wait`) ended, having taken only the files
    it found when it started. With no one else to do it, the job is run here (a burst
    for just this name); if another took the lock meanwhile, that one is followed.
    """
    waiting = _Waiting(cfg, name, since, time.monotonic() + timeout if timeout else None)
    pauses = iter(LOCKED_PAUSES)
    patience = 0.0  # how long no one may seem to run the inbox before this process tries
    while True:
        code = _follow(waiting, patience)
        if code is not None:
            return _ended(cfg, name, code, timeout, since, here=not waiting.goes_on)
        if waiting.said:
            say(
                f"wansync: {name}: no wansync runs this inbox now and the job is not done: "
                "running it here"
            )
            waiting.said = ""
        code = _run_here(waiting, run_burst)
        if code is not None:
            return _ended(cfg, name, code, timeout, since, here=True)
        patience = next(pauses, LOCKED_PAUSES[-1])  # its `.wansync.live` may come later


def _follow(waiting: _Waiting, patience: float) -> int | None:
    """Watch the job while someone else runs the inbox: its exit code once it ends (or
    times out, or Ctrl-C), or None when no one has run it for `patience` seconds."""
    nobody_since: list[float | None] = [None]

    def gone() -> bool:
        whom = _whom(waiting.cfg.inbox, waiting.name)
        if whom is not None:
            if whom[0] != waiting.said:
                say(f"wansync: {whom[0]}")
            waiting.said, waiting.goes_on = whom
            nobody_since[0] = None
            return False
        waiting.goes_on = False
        first = nobody_since[0] = nobody_since[0] or time.monotonic()
        return time.monotonic() - first >= patience

    if patience == 0 and gone():
        return None
    try:
        code = watch(
            waiting.cfg, waiting.name, waiting.deadline, waiting.since, waiting.shown, gone=gone
        )
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if code is None and _final(waiting.cfg, waiting.name, waiting.since) is not None:
        return EXIT_OK  # ended just as the one that did it stopped
    return code


def _run_here(waiting: _Waiting, run_burst: Callable[[str, float | None], int]) -> int | None:
    """Run the job in this process; None when another wansync took the inbox first."""
    left = None if waiting.deadline is None else waiting.deadline - time.monotonic()
    if left is not None and left <= 0:
        return EXIT_TIMEOUT
    stop = threading.Event()
    progress = threading.Thread(  # the same readable lines as when following a daemon
        target=watch,
        args=(waiting.cfg, waiting.name, None, waiting.since, waiting.shown, stop),
        daemon=True,
    )
    progress.start()
    saved = {signum: signal.getsignal(signum) for signum in signals.CAUGHT}
    try:
        return run_burst(waiting.name, left)
    except InboxLocked:  # a wansync started meanwhile: it does the work, we watch
        return None
    except ConfigError as exc:  # no key here, most likely: say what became of the job
        raise ConfigError(
            f"{exc} (no wansync runs on {waiting.cfg.inbox} to do it instead: "
            f"{waiting.name}{JOB_SUFFIX} waits there for the next `wansync run` or `once`)"
        ) from None
    finally:
        for signum, handler in saved.items():  # Ctrl-C stops a follower again
            signal.signal(signum, handler)
        stop.set()
        progress.join(2)


def who_runs(inbox: Path, name: str) -> str | None:
    """Who else does this inbox's work, said as the line `submit --wait` prints; None
    when no one does and this process may (it then runs the job itself)."""
    whom = _whom(inbox, name)
    return None if whom is None else whom[0]


def _whom(inbox: Path, name: str) -> tuple[str, bool] | None:
    """`who_runs`'s line, and whether that one takes this job (a one-shot run may not:
    it takes only the files it found when it started)."""
    running = liveness.running(inbox)
    if running is not None:
        line = (
            f"following the wansync that runs this inbox (PID {running.pid}, user "
            f"{running.user}, since {running.started})"
        )
        if not running.one_shot:
            return line, True
        return (
            f"{line}: a one-shot run (`wansync once` or another `submit --wait`), which "
            f"takes only the files it found when it started; if it ends without "
            f"{name}{JOB_SUFFIX}, this command runs it",
            False,
        )
    found = lock.Found.at(inbox / lock.LOCK_NAME)
    place = lock.Inbox.at(inbox)
    if lock.judge(found, os.geteuid(), place, holder_alive=False) is lock.Verdict.FOREIGN:
        assert found is not None
        return (
            f"no wansync runs on {inbox} now, and its lock belongs to "
            f"{lock.user_name(found.uid)} (the service): {name}{JOB_SUFFIX} waits for it "
            f"to start (Ctrl-C stops waiting; the job stays)",
            True,
        )
    return None


def _ended(
    cfg: config.Config, name: str, code: int, timeout: float | None, since: float, here: bool
) -> int:
    """The exit code, and what became of the job when this command stopped waiting."""
    if code == EXIT_TIMEOUT or code >= EXIT_INTERRUPTED:
        say(f"wansync: {name}: {_left_over(cfg, name, code, timeout, here)}")
        return code
    return report(cfg, name, since)


def _left_over(cfg: config.Config, name: str, code: int, timeout: float | None, here: bool) -> str:
    """What became of a job this command stopped waiting for: nothing is lost."""
    why = f"not done after {timeout:g} s" if code == EXIT_TIMEOUT else "interrupted"
    if not here:
        return f"{why}; the running daemon goes on with it (`wansync status` shows it)"
    if (cfg.inbox / f"{name}{TASK_SUFFIX}").exists():
        task = f"{name}{TASK_SUFFIX}"
        return f"{why}; its task exists: {task} stays in the inbox and is fetched by the next run"
    return f"{why}; {name}{JOB_SUFFIX} stays in the inbox and is submitted by the next run"


def watch(
    cfg: config.Config,
    name: str,
    deadline: float | None,
    since: float,
    shown: list[str],
    stop: threading.Event | None = None,
    gone: Callable[[], bool] | None = None,
) -> int | None:
    """Follow the job's sidecar, printing each change of state, until it has ended
    (EXIT_OK; also when `stop` is set), the monotonic `deadline` passes (EXIT_TIMEOUT),
    or `gone()` says no one does its work any more (None)."""
    live = sidecar.path_for(cfg.inbox, name)
    while stop is None or not stop.is_set():
        record = sidecar.read(live)
        if record is None and _final(cfg, name, since) is not None:
            return EXIT_OK
        if record is not None:
            _say_state(name, record, shown)
        if gone is not None and gone():
            return None
        if deadline and time.monotonic() > deadline:
            return EXIT_TIMEOUT
        if stop is not None:
            stop.wait(0.5)
        else:
            time.sleep(0.5)
    return EXIT_OK


def _say_state(name: str, record: TaskRecord, shown: list[str]) -> None:
    """`wansync: NAME: STATE (TASK STATUS)`, once per change."""
    status = record.task_status
    line = record.state + (f" ({status})" if status else "")
    if line != shown[0]:
        say(f"wansync: {name}: {line}")
        shown[0] = line


def _final(cfg: config.Config, name: str, since: float) -> tuple[Path, TaskRecord] | None:
    """This run's ended sidecar in outbox/ or failed/ for job `name` (it may be NAME-2)."""
    found = []
    for folder in (cfg.outbox, cfg.failed):
        for path in folder.glob(f"{glob.escape(name)}*{sidecar.SUFFIX}"):
            record = sidecar.read(path, published=True)
            if record is None:
                continue
            started = sidecar.parse_iso(record.first_seen) or 0.0
            if record.name == name and started >= since:
                found.append((path.stat().st_mtime, path, record))
    if not found:
        return None
    _, path, record = max(found, key=lambda f: f[0])
    return path, record


def report(cfg: config.Config, name: str, since: float) -> int:
    """Print the path of each of the task's files, one a line, in file order (stdout: the
    MP4's for a video), or why there are none (stderr)."""
    final = _final(cfg, name, since)
    if final is None:
        say(f"wansync: {name}: no result found")
        return EXIT_FAILED
    path, record = final
    if record.state == "succeeded" and record.outputs:
        for output in record.outputs:
            out(path.parent / output.path)
        return EXIT_OK
    code, message = (record.error.code, record.error.message) if record.error else (None, None)
    say(f"wansync: {name} failed: {code}: {message}")
    say(f"wansync: details in {path}")
    return EXIT_FAILED
