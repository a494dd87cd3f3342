"""The poison corpus: one hostile file (or planted link) per case of issue 11.

`write_corpus` drops them all into a set of wansync folders; `settled` says when one of
them has ended the way it must. A daemon given the corpus must stay up, finish every
good task beside it, and start again cleanly with the corpus still there.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

URL_FRAME = [{"type": "first_frame", "url": "https://example.com/frame.png"}]


@dataclass(frozen=True)
class Poison:
    """One hostile file and how wansync must end it."""

    case: str  # the case number
    what: str
    name: str  # NAME as the daemon reads it (may hold surrogates: not valid UTF-8)
    kind: str  # ".task" or ".job": the file that ends beside the sidecar
    ends: str  # "failed": refused with `code`; "succeeded": its sidecar was rebuilt
    code: str | None = None

    @property
    def published(self) -> str:
        """The name its files end under (bytes escaped, long names shortened)."""
        from wansync.files import names

        return names.stem(names.escape(self.name))


def _id(n: int) -> str:
    return f"poison-task-{n:04d}"


def _sidecar(name: str, task_id: str, **fields: Any) -> str:
    data = {
        "schema": 1,
        "name": name,
        "task_id": task_id,
        "meta": {},
        "state": "polling",
        "task_status": "RUNNING",
        "polls": 3,
        "first_seen": "2026-11-28T18:00:00.000Z",
        "error": None,
        "output": None,
        "video": None,
    }
    data.update(fields)
    return json.dumps(data)


def _alias_bomb() -> str:
    """560 bytes that name 9**9 strings once aliases are expanded."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for key in "bcdefghi":
        lines.append(f"{key}: &{key} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = key
    doc = "\n  ".join(lines)
    return f"prompt: p\nmedia: {json.dumps(URL_FRAME)}\nmeta:\n  {doc}\n"


def _job(meta: Any = None, **fields: Any) -> str:
    doc: dict[str, Any] = {"prompt": "poison", "media": URL_FRAME, **fields}
    if meta is not None:
        doc["meta"] = meta
    return json.dumps(doc)


def write_corpus(inbox: Path, outbox: Path, failed: Path, aside: Path) -> list[Poison]:
    """Write every poison into the folders (`aside`: a folder outside them, for link targets)."""
    aside.mkdir(parents=True, exist_ok=True)
    secret = aside / "id_secret"
    secret.write_text("-----BEGIN PRIVATE KEY----- not for upload\n")
    out: list[Poison] = []

    def put(p: Poison, content: str | bytes, *, filename: str | bytes | None = None) -> None:
        raw = content.encode() if isinstance(content, str) else content
        target = (
            os.fsencode(inbox)
            + b"/"
            + (os.fsencode(filename) if filename is not None else os.fsencode(p.name + p.kind))
        )
        with open(target, "wb") as fh:
            fh.write(raw)
        out.append(p)

    put(
        Poison("3", "YAML alias bomb in a job's meta", "bomb", ".job", "failed", "InvalidJobFile"),
        _alias_bomb(),
    )
    put(
        Poison("4", "job of 3000 [ then 3000 ]", "brackets", ".job", "failed", "InvalidJobFile"),
        "[" * 3000 + "]" * 3000,
    )
    deep = f'{{"task_id": "{_id(1)}", "meta": {"[" * 980 + "]" * 980}}}'
    put(
        Poison("4", "task whose meta is 980 deep", "deep", ".task", "failed", "InvalidTaskFile"),
        deep,
    )
    bad = os.fsdecode(b"bad-\xff\xfe-name")
    put(Poison("4", "file name not UTF-8", bad, ".task", "failed", "InvalidTaskFile"), _id(2))
    put(Poison("2/4", "251-byte job name", "J" * 251, ".job", "failed", "InvalidJobFile"), _job())
    put(
        Poison(
            "1", "job meta over the 64 KiB task limit", "huge", ".job", "failed", "InvalidJobFile"
        ),
        _job({"blob": "x" * (70 * 1024)}),
    )
    put(
        Poison("16", "NaN in a task's meta", "nan-task", ".task", "failed", "InvalidTaskFile"),
        f'{{"task_id": "{_id(3)}", "score": NaN}}',
    )
    put(
        Poison("16", "infinity in a job's meta", "inf-job", ".job", "failed", "InvalidJobFile"),
        _job().replace('"poison"', '"poison", "meta": {"x": 1.0e+999}'),
    )
    sidecars = {
        "big": ("14", "2 MiB sidecar", {"meta": {"pad": "p" * (2 * 1024 * 1024)}}),
        "typed-polls": ("5", "sidecar polls: many", {"polls": "many"}),
        "typed-download": (
            "5",
            "downloading, download: etag",
            {"state": "downloading", "download": "etag"},
        ),
        "typed-url": (
            "5",
            "output.video_url: 5",
            {"state": "downloading", "output": {"video_url": 5}},
        ),
        "escape": (
            "11",
            "published_as ../../ESCAPE",
            {
                "state": "failed",
                "published_as": "../../ESCAPE",
                "error": {"code": "X", "message": "m", "transient": False},
            },
        ),
    }
    for i, (name, (case, what, fields)) in enumerate(sidecars.items(), start=10):
        (inbox / f"{name}.status.json").write_text(_sidecar(name, _id(i), **fields))
        put(Poison(case, what, name, ".task", "succeeded"), _id(i))
    link = Poison("12", "a .task that is a symlink", "linked", ".task", "failed", "InvalidTaskFile")
    (inbox / "linked.task").symlink_to(secret)
    out.append(link)
    os.mkfifo(inbox / "fifo.task")
    out.append(Poison("12", "a .task that is a FIFO", "fifo", ".task", "failed", "InvalidTaskFile"))
    (aside / "innocent.png").symlink_to(secret)
    media = [{"type": "first_frame", "path": str(aside / "innocent.png")}]
    put(
        Poison(
            "12", "job image is a link to a key", "linked-image", ".job", "failed", "InvalidJobFile"
        ),
        json.dumps({"prompt": "p", "media": media}),
    )
    # 6: a publish cut short whose next target is a dangling link (start-up resume)
    (failed / "cut.task").write_text(_id(30))
    (failed / "cut.status.json").symlink_to(aside / "nowhere")
    (inbox / "cut.status.json").write_text(
        _sidecar(
            "cut",
            _id(30),
            state="failed",
            published_as="cut",
            error={"code": "TaskFailed", "message": "m", "transient": False},
        )
    )
    out.append(Poison("6", "dangling link at the publish target", "cut", "", "failed"))
    # 10: a link planted at the scratch temp name a sidecar write once used
    scratch = inbox / ".wansync"
    scratch.mkdir(exist_ok=True)
    (scratch / "typed-polls.status.json.wansync-tmp").symlink_to(aside / "overwritten")
    return out


def settled(p: Poison, inbox: Path, outbox: Path, failed: Path) -> bool:
    """True once `p` has ended as it must (its files in outbox/ or failed/, none left)."""
    if os.path.lexists(inbox / f"{p.published}.status.json"):
        return False
    if p.case == "6":  # the rest of the publish went to another free name
        return any(failed.glob("cut-*.status.json")) and os.path.islink(failed / "cut.status.json")
    folder = outbox if p.ends == "succeeded" else failed
    try:
        data = json.loads((folder / f"{p.published}.status.json").read_text())
    except (OSError, ValueError):
        return False
    if not os.path.lexists(folder / f"{p.published}{p.kind}"):
        return False
    if p.ends == "succeeded":
        return bool(data["state"] == "succeeded")
    return bool(data["state"] == "failed" and data["error"]["code"] == p.code)


def untouched(aside: Path, failed: Path) -> bool:
    """Nothing was written through a planted link, nor outside the three folders."""
    escaped = [failed / f"../../ESCAPE{s}" for s in (".task", ".status.json")]
    planted = [aside / "overwritten", aside / "nowhere", *escaped]
    return not any(os.path.lexists(p) for p in planted)
