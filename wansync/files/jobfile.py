"""Read and validate one `.job` file: what to generate, checked before anything is sent.

A job is YAML (or JSON, which YAML reads too). Every error names the field, so a
user can fix the file from the message alone. The request body follows the two
DashScope protocols: wan2.7 and later take a `media` list; wan2.6 and older take
one first-frame image as `img_url`.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wansync.core.errors import JobFileError, TaskFileError
from wansync.files import bounded, names, pathwalk, taskfile
from wansync.files.fsutil import FileTooLarge, NotARegularFile, read_small
from wansync.files.taskfile import is_visible

JOB_SUFFIX = names.JOB_SUFFIX
MAX_BYTES = 256 * 1024
MAX_PROMPT = 5000
MEDIA_TYPES = ("first_frame", "last_frame", "driving_audio", "first_clip")
RESOLUTIONS = ("480P", "720P", "1080P")
URL_SCHEMES = ("http://", "https://", "oss://")
FILE_KINDS = {  # media type -> the extensions a local file of that type may have
    "image": (".jpg", ".jpeg", ".png", ".bmp", ".webp"),
    "first_frame": (".jpg", ".jpeg", ".png", ".bmp", ".webp"),
    "last_frame": (".jpg", ".jpeg", ".png", ".bmp", ".webp"),
    "driving_audio": (".mp3", ".wav"),
    "first_clip": (".mp4", ".mov"),
}
KNOWN_FIELDS = (
    "model",
    "prompt",
    "negative_prompt",
    "media",
    "img_url",
    "image",
    "resolution",
    "duration",
    "seed",
    "watermark",
    "prompt_extend",
    "meta",
)


@dataclass(frozen=True)
class LocalFile:
    """A file to upload before the submit; `slot` is where its URL goes in the body.

    `dev`, `ino` and `size` are what was checked: the upload opens the file again (a
    queue of jobs must not hold thousands of descriptors) and sends it only if the
    descriptor it opened is that same regular file, and never more than `size` bytes.
    """

    slot: tuple[str | int, ...]  # keys from the body's root, e.g. ("input", "media", 0, "url")
    path: Path
    root: Path = pathwalk.ROOT  # the walk to the file: from here (the inbox, or `/`)...
    parts: tuple[str, ...] = ()  # ...through these names, never through a link
    dev: int = -1
    ino: int = -1
    size: int = -1


@dataclass(frozen=True)
class JobSpec:
    """A valid job: the request body (local files still to fill in) and the user's meta."""

    model: str
    body: dict[str, Any]
    uploads: tuple[LocalFile, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)


def is_job_name(filename: str) -> bool:
    return is_visible(filename, JOB_SUFFIX)


def job_name(path: Path) -> str:
    return path.name[: -len(JOB_SUFFIX)]


def uses_media(model: str) -> bool:
    """wan2.7 and later describe their inputs as a `media` list; older models use `img_url`."""
    return model.startswith(("wan2.7", "wan3"))


def request_body(spec: JobSpec, urls: list[str]) -> dict[str, Any]:
    """The body to POST, with the uploaded files' URLs (in `spec.uploads` order) filled in."""
    body = copy.deepcopy(spec.body)
    for local, url in zip(spec.uploads, urls, strict=True):
        *parents, last = local.slot
        node: Any = body
        for key in parents:
            node = node[key]
        node[last] = url
    return body


def read(path: Path, default_model: str, max_upload_bytes: int) -> JobSpec:
    """Read and check a job file: its name, its size, its content, its local files.

    `OutOfResources` (not `JobFileError`) when the system had no descriptor or memory to
    read the job or one of its files: the job is fine and is read again later.
    """
    try:
        names.check(job_name(path))
    except names.BadName as exc:
        raise JobFileError(str(exc)) from None
    try:
        data = read_small(path, MAX_BYTES, single_link=True)
    except FileTooLarge:
        raise JobFileError(f"file is larger than {MAX_BYTES // 1024} KiB") from None
    except NotARegularFile as exc:
        raise JobFileError(str(exc)) from None
    except OSError as exc:  # out of descriptors or memory: read again later, never invalid
        raise taskfile.out_of_resources(exc, path) from None
    return parse(data, default_model, path.parent, max_upload_bytes)


def parse(data: bytes, default_model: str, base: Path, max_upload_bytes: int) -> JobSpec:
    """Validate a job file's bytes; relative `path`s are read against `base` (the inbox)."""
    if len(data) > MAX_BYTES:
        raise JobFileError(f"file is larger than {MAX_BYTES // 1024} KiB")
    try:
        doc = bounded.yaml_loads(data.decode("utf-8-sig"))
        bounded.check_tree(doc)  # plain JSON values only: it all goes into JSON files
    except UnicodeDecodeError:
        raise JobFileError("file is not UTF-8 text") from None
    except bounded.Unparsable as exc:
        raise JobFileError(f"file is {exc}" if str(exc).startswith("not ") else str(exc)) from None
    if not isinstance(doc, dict):
        raise JobFileError("must be a mapping with at least a prompt and media (or img_url)")
    return _Parser(doc, default_model, base, max_upload_bytes).spec()


class _Parser:
    def __init__(self, doc: dict[Any, Any], default_model: str, base: Path, limit: int) -> None:
        self.doc = doc
        self.default_model = default_model
        self.base = base
        self.limit = limit
        self.uploads: list[LocalFile] = []

    def spec(self) -> JobSpec:
        for key in self.doc:
            if key not in KNOWN_FIELDS:
                raise JobFileError(f"{key}: unknown field (known: {', '.join(KNOWN_FIELDS)})")
        model = self._text("model", 64) or self.default_model
        inputs: dict[str, Any] = {}
        for key in ("prompt", "negative_prompt"):
            if (value := self._text(key, MAX_PROMPT)) is not None:
                inputs[key] = value
        if uses_media(model):
            for key in ("img_url", "image"):
                if key in self.doc:
                    raise JobFileError(f"{key}: {model} takes its image in media (first_frame)")
            inputs["media"] = self._media()
        else:
            if "media" in self.doc:
                raise JobFileError(f"media: {model} takes one image as img_url or image")
            inputs["img_url"] = self._image()
        body = {"model": model, "input": inputs, "parameters": self._parameters()}
        return JobSpec(model, body, tuple(self.uploads), self._meta())

    def _meta(self) -> dict[str, Any]:
        """The meta as the job's `.task` will hold it, proven writable and readable now.

        The `.task` is written only after the task exists (and is paid for): a meta it
        could not hold (over 64 KiB, too deep, NaN) must stop the job before the create.
        """
        meta = self.doc.get("meta", {})
        if not isinstance(meta, dict):
            raise JobFileError("meta: must be a mapping")
        try:
            rendered = taskfile.render(taskfile.LONGEST_ID, meta)
        except (TypeError, ValueError):
            raise JobFileError("meta: must hold plain JSON values (text, numbers, lists)") from None
        if len(rendered) > taskfile.MAX_BYTES:
            raise JobFileError(
                f"meta: {len(rendered)} bytes as the job's .task, over the "
                f"{taskfile.MAX_BYTES // 1024} KiB a task file may hold"
            )
        try:
            return taskfile.parse(rendered).meta
        except TaskFileError as exc:
            raise JobFileError(f"meta: the job's .task would be refused: {exc}") from None

    def _text(self, key: str, limit: int) -> str | None:
        value = self.doc.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise JobFileError(f"{key}: must be non-empty text")
        if len(value) > limit:
            raise JobFileError(f"{key}: longer than {limit} characters")
        return value

    def _media(self) -> list[dict[str, str]]:
        media = self.doc.get("media")
        if not isinstance(media, list) or not media:
            raise JobFileError("media: must be a list with at least a first_frame (or first_clip)")
        out: list[dict[str, str]] = []
        seen: set[str] = set()
        for i, item in enumerate(media):
            where = f"media[{i}]"
            if not isinstance(item, dict):
                raise JobFileError(f"{where}: must be a mapping with type and url (or path)")
            for key in item:
                if key not in ("type", "url", "path"):
                    raise JobFileError(f"{where}.{key}: unknown field (known: type, url, path)")
            kind = item.get("type")
            if kind not in MEDIA_TYPES:
                raise JobFileError(f"{where}.type: {kind!r} is not one of {', '.join(MEDIA_TYPES)}")
            if kind in seen:
                raise JobFileError(f"{where}.type: {kind} given twice")
            seen.add(kind)
            out.append(
                {"type": kind, "url": self._source(item, where, kind, ("input", "media", i, "url"))}
            )
        if ("first_frame" in seen) == ("first_clip" in seen):
            raise JobFileError("media: needs exactly one of first_frame or first_clip")
        if "last_frame" in seen and "first_frame" not in seen:
            raise JobFileError("media: last_frame needs a first_frame")
        return out

    def _image(self) -> str:
        given = [k for k in ("img_url", "image") if k in self.doc]
        if len(given) != 1:
            raise JobFileError("img_url: give the first frame as img_url (a URL) or image (a file)")
        key = given[0]
        item = {"url" if key == "img_url" else "path": self.doc[key]}
        return self._source(item, key, "image", ("input", "img_url"), named=key)

    def _source(
        self,
        item: dict[str, Any],
        where: str,
        kind: str,
        slot: tuple[str | int, ...],
        named: str | None = None,
    ) -> str:
        """A URL as given, or a local file checked now and uploaded later ("" until then)."""
        if ("url" in item) == ("path" in item):
            raise JobFileError(f"{where}: give exactly one of url or path")
        if "url" in item:
            url = item["url"]
            label = named or f"{where}.url"
            if not isinstance(url, str) or not url.startswith(URL_SCHEMES):
                raise JobFileError(f"{label}: must be an http(s):// or oss:// URL")
            return url
        label = named or f"{where}.path"
        raw = item["path"]
        if not isinstance(raw, str) or not raw.strip() or "\0" in raw:
            raise JobFileError(f"{label}: must be a file path")
        try:
            root, parts = pathwalk.split(raw, self.base)
        except pathwalk.BadPath as exc:
            raise JobFileError(f"{label}: {raw!r}: {exc}") from None
        path = root.joinpath(*parts)
        if not path.name.lower().endswith(FILE_KINDS[kind]):
            allowed = ", ".join(FILE_KINDS[kind])
            raise JobFileError(f"{label}: {raw!r} is not a {kind} file ({allowed})")
        try:  # no link on the way (it could point at ~/.ssh), no FIFO, no hard link
            fd, st = pathwalk.open_beneath(root, parts)
        except NotARegularFile as exc:
            raise JobFileError(f"{label}: {raw!r} {exc}") from None
        except OSError as exc:
            if exc.errno in taskfile.RESOURCE_ERRNOS:
                raise taskfile.out_of_resources(exc, path) from None
            problem = (exc.strerror or str(exc)).lower()
            if not os.path.isabs(os.path.expanduser(raw)):  # say where it was looked for
                problem += f" (looked for {path}: a relative path is read from the inbox)"
            raise JobFileError(f"{label}: {raw!r}: {problem}") from None
        os.close(fd)
        if st.st_size == 0:
            raise JobFileError(f"{label}: {raw!r} is empty")
        if st.st_size > self.limit:
            raise JobFileError(
                f"{label}: {raw!r} is larger than submit.max_upload_bytes ({self.limit})"
            )
        self.uploads.append(LocalFile(slot, path, root, parts, st.st_dev, st.st_ino, st.st_size))
        return ""

    def _parameters(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if (res := self.doc.get("resolution")) is not None:
            if not isinstance(res, str) or res.upper() not in RESOLUTIONS:
                raise JobFileError(f"resolution: {res!r} is not one of {', '.join(RESOLUTIONS)}")
            params["resolution"] = res.upper()
        for key, low, high in (("duration", 2, 15), ("seed", 0, 2**31 - 1)):
            if (value := self.doc.get(key)) is not None:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise JobFileError(f"{key}: {value!r} is not a whole number")
                if not low <= value <= high:
                    raise JobFileError(f"{key}: {value} is not between {low} and {high}")
                params[key] = value
        for key in ("watermark", "prompt_extend"):
            if (value := self.doc.get(key)) is not None:
                if not isinstance(value, bool):
                    raise JobFileError(f"{key}: {value!r} is not true or false")
                params[key] = value
        return params
