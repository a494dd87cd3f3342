"""What a SUCCEEDED task's `output` names: one video, or pictures, or nothing usable.

The shape rules of docs/folders.md (Outputs), in order: `video_url`; else `results[]`
elements with a `url` (an element with `code`/`message` and no `url` is a failed
sub-result); else `choices[].message.content[]` items with an `image`. The first shape
that names a file wins; none is `Unsupported` (for the lifecycle to retry as a malformed
answer, then end the task as `UnsupportedOutput`). An answer is hostile input: every
list is bounded, a URL is a URL only if it looks like one, and a task yields at most
`MAX_FILES` files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from wansync.core.fields import MAX_URL

MAX_FILES = 16  # files fetched per task at most (the vendor's largest n is 12)
MAX_SCANNED = 256  # elements of an output list looked at, at most
MAX_TEXT = 200  # characters kept of a sub-result's code or message

Shape = Literal["video_url", "results", "choices"]


Step = str | int


@dataclass(frozen=True, slots=True)
class FileUrl:
    """One file to fetch: its signed URL, whether it is the video or a picture, and where
    in `output` it was found (`where` to read, `path` the keys and indexes to it)."""

    url: str
    kind: Literal["video", "picture"]
    where: str
    path: tuple[Step, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class SubFailure:
    """An element of `results[]` with `code`/`message` and no `url`: one picture not made."""

    where: str
    code: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class Outputs:
    """The files of a SUCCEEDED task, in the order they are named `NAME.1.EXT`, `NAME.2.EXT`…

    `dropped` counts file URLs past `MAX_FILES` (not fetched); `ignored` counts elements
    that named no file and no failure, or that were past `MAX_SCANNED` (not looked at).
    """

    shape: Shape
    files: tuple[FileUrl, ...]
    failed: tuple[SubFailure, ...] = ()
    dropped: int = 0
    ignored: int = 0


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A SUCCEEDED `output` that names no file to fetch: `reason` says what it held."""

    reason: str


def usable_url(value: Any) -> bool:
    """A non-empty string of printable ASCII without spaces, at most `MAX_URL` long."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_URL
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


def _short(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value[:MAX_TEXT]


def outputs_of(output: Any) -> Outputs | Unsupported:
    """The files a SUCCEEDED task's `output` names, by the shape rules of docs/folders.md:
    `video_url`; else `results[]` elements with a `url` (an element with `code`/`message`
    and no `url` is a failed sub-result); else `choices[].message.content[]` items with an
    `image`. The first shape that names a file wins; none is `Unsupported`."""
    if not isinstance(output, Mapping):
        return Unsupported(f"output is {type(output).__name__}, not an object")
    if usable_url(output.get("video_url")):
        video = FileUrl(output["video_url"], "video", "video_url", ("video_url",))
        return Outputs("video_url", (video,))
    reasons: list[str] = []
    for shape, reader in (("results", _results), ("choices", _choices)):
        if shape not in output:
            continue
        found = reader(output[shape])
        if isinstance(found, Outputs) and found.files:
            return found
        reasons.append(_why_empty(shape, found))
    if "video_url" in output:
        reasons.insert(0, "video_url is not a usable URL")
    if not reasons:
        keys = ", ".join(sorted(str(k) for k in list(output)[:12]))
        reasons.append(f"no video_url, results or choices (keys: {keys or 'none'})")
    return Unsupported("; ".join(reasons))


def _why_empty(shape: str, found: Outputs | Unsupported) -> str:
    if isinstance(found, Unsupported):
        return found.reason
    if found.failed:
        codes = ", ".join(sorted({f.code or "no code" for f in found.failed}))
        return f"{shape}[] has no element with a url ({len(found.failed)} failed: {codes})"
    return f"{shape}[] names no file"


class _Collector:
    """Files and failures found in one shape, within the bounds."""

    def __init__(self, shape: Shape) -> None:
        self.shape: Shape = shape
        self.files: list[FileUrl] = []
        self.failed: list[SubFailure] = []
        self.dropped = 0
        self.ignored = 0

    def file(self, url_: str, where: str, path: tuple[Step, ...]) -> None:
        if len(self.files) < MAX_FILES:
            self.files.append(FileUrl(url_, "picture", where, path))
        else:
            self.dropped += 1

    def done(self) -> Outputs:
        files, failed = tuple(self.files), tuple(self.failed)
        return Outputs(self.shape, files, failed, self.dropped, self.ignored)


def _bounded(items: Sequence[Any], collector: _Collector) -> Sequence[Any]:
    collector.ignored += max(0, len(items) - MAX_SCANNED)
    return items[:MAX_SCANNED]


def _results(results: Any) -> Outputs | Unsupported:
    if not isinstance(results, list):
        return Unsupported(f"results is {type(results).__name__}, not a list")
    found = _Collector("results")
    for i, element in enumerate(_bounded(results, found)):
        where = f"results[{i}]"
        if isinstance(element, Mapping) and usable_url(element.get("url")):
            found.file(element["url"], f"{where}.url", ("results", i, "url"))
        elif isinstance(element, Mapping) and ("code" in element or "message" in element):
            code, message = _short(element.get("code")), _short(element.get("message"))
            found.failed.append(SubFailure(where, code, message))
        else:
            found.ignored += 1
    return found.done()


def _choices(choices: Any) -> Outputs | Unsupported:
    if not isinstance(choices, list):
        return Unsupported(f"choices is {type(choices).__name__}, not a list")
    found = _Collector("choices")
    scanned = 0
    for i, choice in enumerate(_bounded(choices, found)):
        message = choice.get("message") if isinstance(choice, Mapping) else None
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            found.ignored += 1
            continue
        for j, item in enumerate(content):
            scanned += 1
            if scanned > MAX_SCANNED:
                found.ignored += len(content) - j
                break
            if isinstance(item, Mapping) and usable_url(item.get("image")):
                where = f"choices[{i}].message.content[{j}].image"
                found.file(item["image"], where, ("choices", i, "message", "content", j, "image"))
            elif not (isinstance(item, Mapping) and item.get("type") == "text"):
                found.ignored += 1
    return found.done()
