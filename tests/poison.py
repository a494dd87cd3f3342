"""The poison corpus: one hostile file (or planted link) per case of issue 11, and the
hostile answers of picture tasks (issue 18: case "18"), and two files of one name (issue
21: a `.job` and a `.task` dropped together, where the job is left alone; a `.task` with a
new id renamed over a tracked one by `replace_tracked`).

`write_corpus` drops them all into a set of wansync folders (given the simulator, it
also scripts the hostile answers their `.task` files name: `script_answers`); `settled`
says when one of them has ended the way it must. A daemon given the corpus must stay up,
finish every good task beside it, and start again cleanly with the corpus still there.
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


def _answer(task_id: str, output: dict[str, Any]) -> bytes:
    """A whole SUCCEEDED answer of the task API for `task_id`, with `output` in it."""
    body = {"task_id": task_id, "task_status": "SUCCEEDED", **output}
    return json.dumps({"request_id": "poison", "output": body}).encode()


@dataclass(frozen=True)
class Hostile:
    """A picture task's hostile SUCCEEDED answer: how it must end, and with how many files."""

    what: str
    ends: str
    code: str | None
    files: int


HOSTILE = {
    "flood": Hostile("results[] of 10,000 elements", "succeeded", None, 16),
    "evil": Hostile("a picture URL on a host not allowed", "failed", "DownloadRejected", 0),
    "mp4": Hostile("a picture that is an MP4", "failed", "DownloadRejected", 0),
    "junk": Hostile("choices[] with junk beside one picture", "succeeded", None, 1),
    "mixed": Hostile("results[] mixed: failed, pictures, junk", "succeeded", None, 2),
}
CLASH_PROMPT = "poison: a job whose name a task file takes"
CLASH_TASK = "poison-task-0040"  # the producer's `clash.task`
SWAP_OLD, SWAP_NEW = "poison-task-0041", "poison-task-0042"  # `swap`: tracked, then replaced
SOURCE = "poison-pictures-source"  # 16 real pictures the hostile answers point at


def hostile_answer(sim: Any, which: str, task_id: str) -> Hostile:
    """Make every poll of `task_id` answer SUCCEEDED with the hostile output `which` (a
    key of `HOSTILE`), pointing at real pictures, a real video, or a host not allowed."""
    source = sim.tasks.get(SOURCE) or sim.add_task(SOURCE, shape="results", pictures=16)
    good = [sim.pictures.url(source, k, sim.url) for k in range(16)]
    video = sim.video.signed_url(sim.task("poison-video-source"), sim.url)
    evil = {"url": "https://evil.example/p.png"}
    junk = [{"type": "text", "text": "here"}, 5, {"image": 7}, {"image": good[2]}, None]
    outputs = {
        # the first 16 URLs come down; the rest is neither read nor fetched
        "flood": {"results": [{"url": u} for u in good] + [evil] * 9984},
        "evil": {"results": [{"url": good[0]}, evil]},
        "mp4": {"results": [{"url": good[1]}, {"url": video}]},
        "junk": {"choices": [{"message": {"content": junk}}, "x", {"message": None}]},
        "mixed": {
            "results": [
                {"code": "InternalError", "message": "no"},
                {"url": good[3]},
                {"nothing": 1},
                {"url": good[4]},
            ]
        },
    }
    body = _answer(task_id, outputs[which])
    sim.add_task(task_id, pending_polls=0, running_polls=0)
    sim.add_fault("task", "malformed", task_id=task_id, count=10**6, body=body)
    return HOSTILE[which]


def script_answers(sim: Any) -> list[tuple[Poison, str]]:
    """Every hostile answer, scripted in the simulator `sim`: (the poison, its task id)."""
    out = []
    for n, which in enumerate(HOSTILE, start=1):
        task_id = f"poison-pictures-{n:04d}"
        h = hostile_answer(sim, which, task_id)
        out.append((Poison("18", h.what, f"pics-{which}", ".task", h.ends, h.code), task_id))
    return out


def write_corpus(
    inbox: Path, outbox: Path, failed: Path, aside: Path, sim: Any = None
) -> list[Poison]:
    """Write every poison into the folders (`aside`: a folder outside them, for link
    targets); with the simulator `sim`, the hostile answers of picture tasks too."""
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
    # 21: a job and a producer's task of one name, together: the task is fetched, the job
    # is left alone in the inbox (docs/jobs.md, "Other rules"), never sent
    (inbox / "clash.job").write_text(_job(prompt=CLASH_PROMPT))
    put(Poison("21", "a .job and a .task of one name", "clash", ".task", "succeeded"), CLASH_TASK)
    # 21: `swap` (its task PENDING for ever) is tracked; `replace_tracked` renames a `.task`
    # with a new id onto it once it is polled: a new task
    if sim is not None:
        sim.add_task(SWAP_OLD, pending_polls=10**6)
    put(Poison("21", "a .task renamed over a tracked one", "swap", ".task", "succeeded"), SWAP_OLD)
    for p, task_id in script_answers(sim) if sim is not None else []:
        put(p, task_id)
    return out


def replace_tracked(inbox: Path) -> None:
    """The producers' protocol onto the tracked `swap.task`: a temp file, then a rename."""
    (inbox / ".swap.task.tmp").write_text(SWAP_NEW)
    os.rename(inbox / ".swap.task.tmp", inbox / "swap.task")


def settled(p: Poison, inbox: Path, outbox: Path, failed: Path) -> bool:
    """True once `p` has ended as it must (its files in outbox/ or failed/, none left)."""
    if os.path.lexists(inbox / f"{p.published}.status.json"):
        return False
    if p.case == "6":  # the rest of the publish went to another free name
        return any(failed.glob("cut-*.status.json")) and os.path.islink(failed / "cut.status.json")
    if p.case == "21":
        return clash_ended(p.name, inbox, outbox) is not None
    folder = outbox if p.ends == "succeeded" else failed
    try:
        data = json.loads((folder / f"{p.published}.status.json").read_text())
    except (OSError, ValueError):
        return False
    if not os.path.lexists(folder / f"{p.published}{p.kind}"):
        return False
    if p.ends == "succeeded" and p.case == "18":  # every file the sidecar lists is there
        files = data.get("outputs") or []
        return (
            data["state"] == "succeeded"
            and bool(files)
            and all((folder / f["path"]).stat().st_size == f["bytes"] for f in files)
        )
    if p.ends == "succeeded":
        return bool(data["state"] == "succeeded")
    return bool(data["state"] == "failed" and data["error"]["code"] == p.code)


def _succeeded(outbox: Path, name: str, kind: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((outbox / f"{name}.status.json").read_text())
    except (OSError, ValueError):
        return None
    ok = data.get("state") == "succeeded" and (outbox / f"{name}{kind}").exists()
    return data if ok and (outbox / f"{name}.mp4").exists() else None


def clash_ended(name: str, inbox: Path, outbox: Path) -> dict[str, dict[str, Any]] | None:
    """The sidecars a case-21 poison ended with, by published name, once all are there:
    `clash`: the producer's task as `clash`, and `clash.job` still in the inbox, left
    alone (no `clash-k`: it was never sent); `swap`: the new id as `swap` (the replaced
    id is never published)."""
    if name == "swap":
        data = _succeeded(outbox, "swap", ".task")
        return {"swap": data} if data and data["task_id"] == SWAP_NEW else None
    theirs = _succeeded(outbox, "clash", ".task")
    if not theirs or theirs["task_id"] != CLASH_TASK or any(outbox.glob("clash-[0-9]*")):
        return None
    left_alone = (inbox / "clash.job").is_file() and not (inbox / "clash.status.json").exists()
    return {"clash": theirs} if left_alone else None


def untouched(aside: Path, failed: Path) -> bool:
    """Nothing was written through a planted link, nor outside the three folders."""
    escaped = [failed / f"../../ESCAPE{s}" for s in (".task", ".status.json")]
    planted = [aside / "overwritten", aside / "nowhere", *escaped]
    return not any(os.path.lexists(p) for p in planted)
