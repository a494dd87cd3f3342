"""`wansync submit`: one picture and a prompt to a `.job`; with `--wait`, to an MP4.

With `--wait` and no daemon on the inbox, this process runs the job itself (a burst
daemon for just this name); with one running, it watches the job's files until it ends.
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from . import config, sidecar
from .checks import inbox_error
from .daemon import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, InboxLocked
from .errors import ConfigError, JobFileError
from .fsutil import write_bytes_atomic
from .jobfile import JOB_SUFFIX, URL_SCHEMES, parse, uses_media
from .publish import free_name
from .taskfile import TASK_SUFFIX


def job_document(args: argparse.Namespace, default_model: str) -> dict[str, Any]:
    """The `.job` for the command line: URL media as given, local files by absolute path."""
    source = args.image
    if source.startswith(URL_SCHEMES):
        frame = {"type": "first_frame", "url": source}
    else:
        frame = {"type": "first_frame", "path": str(Path(source).expanduser().absolute())}
    doc: dict[str, Any] = {"prompt": args.prompt}
    if args.model:
        doc["model"] = args.model
    if not uses_media(args.model or default_model):
        doc["img_url" if "url" in frame else "image"] = frame.get("url") or frame["path"]
    else:
        doc["media"] = [frame]
    for key in ("resolution", "duration"):
        if getattr(args, key) is not None:
            doc[key] = getattr(args, key)
    return doc


def _default_name(source: str) -> str:
    stem = Path(source.split("?", 1)[0].rstrip("/")).stem
    return stem if stem and not stem.startswith(".") else "video"


def submit(args: argparse.Namespace, run_burst: Callable[[str], int]) -> int:
    cfg = config.load(args.config)
    doc = job_document(args, cfg.submit.model)
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    try:  # the daemon's own check, now: a bad picture or prompt fails here, not later
        parse(text.encode(), cfg.submit.model, cfg.inbox, cfg.submit.max_upload_bytes)
    except JobFileError as exc:
        print(f"wansync: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        cfg.inbox.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise inbox_error(exc, cfg.inbox) from None
    if args.name:
        name = args.name.removesuffix(JOB_SUFFIX)
        if "/" in name or name.startswith(".") or not name:
            raise ConfigError(f"--name: {name!r} cannot be a file name (no '/', no leading '.')")
        if (cfg.inbox / f"{name}{JOB_SUFFIX}").exists() or (
            cfg.inbox / f"{name}{TASK_SUFFIX}"
        ).exists():
            raise ConfigError(f"--name: {name} is already in the inbox")
    else:
        name = free_name(cfg.inbox, _default_name(args.image))
    path = cfg.inbox / f"{name}{JOB_SUFFIX}"
    since = time.time() - 1.0
    try:
        write_bytes_atomic(path, text.encode("utf-8"))
    except OSError as exc:
        raise inbox_error(exc, cfg.inbox) from None
    if not args.wait:
        print(path)
        return EXIT_OK
    print(f"wansync: {path.name} written; waiting for the video", file=sys.stderr)
    try:
        code = run_burst(name)
    except InboxLocked:  # a daemon runs on this inbox: it does the work, we watch
        code = watch(cfg, name, args.timeout, since)
    return report(cfg, name, since) if code != EXIT_TIMEOUT else code


def watch(cfg: config.Config, name: str, timeout: float | None, since: float) -> int:
    """Follow the job's sidecar, printing each change of state, until it has ended."""
    deadline = time.monotonic() + timeout if timeout else None
    shown = None
    live = sidecar.path_for(cfg.inbox, name)
    while True:
        data = sidecar.read(live)
        if data is None and _final(cfg, name, since) is not None:
            return EXIT_OK
        if data is not None:
            line = data["state"] + (f" ({data['task_status']})" if data.get("task_status") else "")
            if line != shown:
                print(f"wansync: {name}: {line}", file=sys.stderr)
                shown = line
        if deadline and time.monotonic() > deadline:
            return EXIT_TIMEOUT
        time.sleep(0.5)


def _final(cfg: config.Config, name: str, since: float) -> tuple[Path, dict[str, Any]] | None:
    """This run's ended sidecar in outbox/ or failed/ for job `name` (it may be NAME-2)."""
    found = []
    for folder in (cfg.outbox, cfg.failed):
        for path in folder.glob(f"{glob.escape(name)}*{sidecar.SUFFIX}"):
            data = sidecar.read(path)
            started = sidecar.parse_iso((data or {}).get("first_seen")) or 0.0
            if data and data.get("name") == name and started >= since:
                found.append((path.stat().st_mtime, path, data))
    if not found:
        return None
    _, path, data = max(found, key=lambda f: f[0])
    return path, data


def report(cfg: config.Config, name: str, since: float) -> int:
    """Print the MP4's path (stdout), or why there is none (stderr)."""
    final = _final(cfg, name, since)
    if final is None:
        print(f"wansync: {name}: no result found", file=sys.stderr)
        return EXIT_FAILED
    path, data = final
    if data["state"] == "succeeded" and data.get("video"):
        print(path.parent / data["video"]["path"])
        return EXIT_OK
    error = data.get("error") or {}
    print(f"wansync: {name} failed: {error.get('code')}: {error.get('message')}", file=sys.stderr)
    print(f"wansync: details in {path}", file=sys.stderr)
    return EXIT_FAILED
