"""`wansync demo`: the simulator and the daemon on a temp folder, with a live view."""

from __future__ import annotations

import json
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

from wansync import config, log
from wansync.cli.screen import LiveBlock
from wansync.cli.status import collect, render
from wansync.files.fsutil import write_bytes_atomic
from wansync.run.daemon import build
from wansync.simulator import Simulator

# name, task id, polls the simulator spends RUNNING: they finish one after another
SAMPLES = [
    ("beach-sunset", "demo-beach-0001", 2),
    ("city-timelapse", "demo-city-0002", 4),
    ("ocean-waves", "demo-ocean-0004", 8),
    ("broken-prompt", "demo-fail-0005", 3),
]
# and jobs: wansync uploads any picture, creates the task at its kind's endpoint, then
# fetches it like the rest. One from a picture, one from text alone, one of pictures.
JOB_NAME = "portrait-from-picture"
TEXT_JOB = ("lighthouse-from-text", {"model": "wan2.7-t2v", "prompt": "a lighthouse at dusk"})
PICTURE_JOB = (
    "kite-pictures",
    {"model": "wan2.2-t2i-flash", "prompt": "a red kite over green hills", "n": 2},
)
ENDINGS = len(SAMPLES) + 2  # the tasks and the two video jobs end in outbox/ or failed/
PICTURE_GRACE = 3.0  # seconds the demo waits for the pictures once the rest has ended
DEADLINE = 60.0


def _drop(inbox: Path, name: str, task_id: str) -> None:
    """Write a task file the way producers should: a hidden temp file, then a rename."""
    body = json.dumps({"task_id": task_id, "prompt": f"demo clip {name}"}).encode()
    write_bytes_atomic(inbox / f"{name}.task", body)


def _drop_jobs(root: Path, inbox: Path) -> None:
    """The `.job`s: a (stand-in) picture on disk and a prompt; a prompt alone; pictures."""
    picture = root / "pictures" / "portrait.png"
    picture.parent.mkdir()
    picture.write_bytes(b"\x89PNG\r\n\x1a\n a stand-in picture for the demo")
    job = {
        "prompt": "she turns to the camera and smiles",
        "media": [{"type": "first_frame", "path": str(picture)}],
    }
    write_bytes_atomic(inbox / f"{JOB_NAME}.job", json.dumps(job, indent=2).encode())
    for name, doc in (TEXT_JOB, PICTURE_JOB):
        write_bytes_atomic(inbox / f"{name}.job", json.dumps(doc, indent=2).encode())


def run(out: TextIO = sys.stdout) -> int:
    """Run the whole demo; returns 0 when every sample ended where it should."""
    root = Path(tempfile.mkdtemp(prefix="wansync-demo-"))
    key = "demo-" + secrets.token_hex(8)
    sim = Simulator(key=key, pending_polls=1).start()
    for _, task_id, running in SAMPLES:
        sim.add_task(
            task_id, running_polls=running, outcome="FAILED" if "fail" in task_id else "SUCCEEDED"
        )
    cfg = config.from_mapping(
        {
            "inbox": str(root / "inbox"),
            "outbox": str(root / "outbox"),
            "failed": str(root / "failed"),
            "api": {"base_url": sim.url},
            "poll": {"interval": 1},
            "download": {"allowed_hosts": ["127.0.0.1"], "require_https": False},
            "log": {"format": "json"},
        }
    )
    log_path = root / "wansync.log"
    log_file = log_path.open("w", encoding="utf-8")
    log.configure("info", "json", stream=log_file)
    daemon = build(cfg, key)
    thread = threading.Thread(target=daemon.run, name="daemon", daemon=True)
    print(
        f"wansync demo in {root}\n  simulator at {sim.url} (no real key, no internet)\n", file=out
    )
    thread.start()
    cfg.inbox.mkdir(parents=True, exist_ok=True)
    for name, task_id, _ in SAMPLES:
        _drop(cfg.inbox, name, task_id)
    _drop_jobs(root, cfg.inbox)
    try:
        finished = _watch(cfg, out)
    except KeyboardInterrupt:
        print(f"\ndemo interrupted; what it made so far is in {root}", file=out)
        return 130
    finally:
        daemon.request_stop()
        thread.join(10)
        sim.stop()
        log_file.close()
    return _summary(cfg, root, log_path, finished, out)


def _watch(cfg: config.Config, out: TextIO) -> bool:
    """The live table on a terminal; elsewhere one line per change of a task's state."""
    block = LiveBlock(out)
    names = [JOB_NAME, TEXT_JOB[0], PICTURE_JOB[0], *(s[0] for s in SAMPLES)]
    width = max(len(n) for n in names)
    seen: dict[str, str] = {}
    deadline = time.monotonic() + DEADLINE
    rest_ended: float | None = None
    while time.monotonic() < deadline:
        rows = collect(cfg)
        if block.tty:
            block.draw(render(rows, block.columns()))
        else:
            for r in rows:
                label = f"{r['state']} {r['task_status'] or ''}".strip()
                if seen.get(r["name"]) != label:
                    seen[r["name"]] = label
                    width = max(width, len(r["name"]))
                    print(f"  {r['name']:<{width}}  {label}", file=out, flush=True)
        ended = {r["name"] for r in rows if r["where"] in ("outbox", "failed")}
        if len(ended - {PICTURE_JOB[0]}) == ENDINGS:
            rest_ended = rest_ended or time.monotonic()
            if PICTURE_JOB[0] in ended or time.monotonic() > rest_ended + PICTURE_GRACE:
                return True
        time.sleep(0.25)
    return False


def _summary(cfg: config.Config, root: Path, log_path: Path, finished: bool, out: TextIO) -> int:
    videos = sorted(cfg.outbox.glob("*.mp4"))
    pictures = sorted(p for p in cfg.outbox.iterdir() if p.suffix in (".png", ".jpg", ".webp"))
    failed = sorted(cfg.failed.glob("*.status.json"))
    print("\nVideos (real, playable MP4s):", file=out)
    for v in videos:
        print(f"  {v}  ({v.stat().st_size} bytes)", file=out)
    print("Pictures:", file=out)
    for p in pictures:
        print(f"  {p}  ({p.stat().st_size} bytes)", file=out)
    if not pictures:  # the task was made; fetching pictures comes with the outputs work
        print(f"  (none fetched: {PICTURE_JOB[0]}'s task was created; see its sidecar)", file=out)
    print("Failed (the sidecar says why):", file=out)
    for f in failed:
        err = json.loads(f.read_text())["error"]
        print(f"  {f}  {err['code']}: {err['message']}", file=out)
    print(f"Logs (JSON lines): {log_path}", file=out)
    ok = finished and len(videos) == ENDINGS - 1 and len(failed) == 1
    ending = "demo finished" if ok else "demo did not finish as expected"
    # The last line names the folder, as the first does (the README says so).
    print(f"\n{ending}; everything is in {root} (kept: play the videos, then `rm -r` it)", file=out)
    return 0 if ok else 1
