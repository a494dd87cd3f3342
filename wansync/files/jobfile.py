"""Read and validate one `.job` file: what to create, checked whole before anything is sent.

A job is YAML (or JSON, which YAML reads too) in one of two forms:

- **fields**: `model` and that model's own `input`/`parameters` names side by side
  (`prompt`, `media`, `n`, …), checked against its row of the kinds table
  (`core/kinds.py`, `core/jobcheck.py`) and turned into the create request;
- **raw**: `model`, `input` and `parameters` as the API takes them, sent as given (for a
  model the table does not know, with `endpoint`).

In both, every mapping of exactly `{path: P}` is a local file, checked now and uploaded
before the create (`joblocal.py`). Every problem is reported at once, each naming its
field, so a user can fix the file from the message alone.

Today's image-to-video form keeps working as it always has: `image: FILE` for a model
that takes `img_url`, and the same words for a first frame given the other protocol's way.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from wansync.core import jobcheck, kinds
from wansync.core.errors import JobFileError, TaskFileError
from wansync.core.fields import FILE_CLASSES, MEDIA_FILES, URL_SCHEMES
from wansync.files import bounded, names, taskfile
from wansync.files.fsutil import FileTooLarge, NotARegularFile, read_small
from wansync.files.joblocal import (
    MAX_LOCAL_FILES,
    Identities,
    LocalFile,
    label,
    open_local,
    path_slots,
)
from wansync.files.taskfile import is_visible

__all__ = ["JOB_SUFFIX", "URL_SCHEMES", "JobSpec", "LocalFile", "parse", "read", "request_body"]

JOB_SUFFIX = names.JOB_SUFFIX
MAX_BYTES = 256 * 1024
MAX_PROBLEMS = 12  # problems one message lists; the rest are counted
JOB_KEYS = ("model", "endpoint", "meta")  # the job's own keys, in either form
RAW_KEYS = ("input", "parameters")
IMAGE = "image"  # wan2.6 and older: the first frame as a local file (today's form)
ENDPOINT = re.compile(r"aigc(/[a-z0-9][a-z0-9_.-]{0,63}){2}")  # under /api/v1/services/
KNOWN_FIELDS = frozenset(
    {*JOB_KEYS, *RAW_KEYS, IMAGE, *(name for k in kinds.KINDS for name in k.field_names())}
)


@dataclass(frozen=True)
class JobSpec:
    """A valid job: the request body (local files still to fill in), where it goes (under
    `/api/v1/services/`) and the user's meta; `sha256`: the digest of the bytes read
    (`digest`), by which a file put in the job's place is told from it."""

    model: str
    body: dict[str, Any]
    uploads: tuple[LocalFile, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    endpoint: str = kinds.VIDEO_GENERATION
    sha256: str | None = None


def is_job_name(filename: str) -> bool:
    return is_visible(filename, JOB_SUFFIX)


def job_name(path: Path) -> str:
    return path.name[: -len(JOB_SUFFIX)]


def digest(data: bytes) -> str:
    """A job file's bytes as its sidecar records them (`job.sha256`)."""
    return hashlib.sha256(data).hexdigest()


def request_body(spec: JobSpec, urls: list[str]) -> dict[str, Any]:
    """The body to POST: each `{path: P}` replaced by its upload's URL (`spec.uploads` order)."""
    body = copy.deepcopy(spec.body)
    for local, url in zip(spec.uploads, urls, strict=True):
        *parents, last = local.slot
        node: Any = body
        for key in parents:
            node = node[key]
        node[last] = url
    return body


def read(
    path: Path, default_model: str, max_upload_bytes: int, keys: Identities = frozenset()
) -> JobSpec:
    """Read and check a job file: its name, its size, its content, its local files
    (`keys`: the API key files, never uploaded whatever their name).

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
    spec = parse(data, default_model, path.parent, max_upload_bytes, keys)
    return replace(spec, sha256=digest(data))


def parse(
    data: bytes,
    default_model: str,
    base: Path,
    max_upload_bytes: int,
    keys: Identities = frozenset(),
) -> JobSpec:
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
        raise JobFileError("must be a mapping of fields (model, prompt, …, or input)")
    return _Parser(doc, default_model, base, max_upload_bytes, keys).spec()


@dataclass
class _Form:
    """A job's fields in the table's terms, and what today's image-to-video form says
    in its own words (`said`: field -> the problem, in place of the table's)."""

    fields: dict[Any, Any]
    said: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # a file's field -> as written


def _first_frame(kind: kinds.Kind, model: str, fields: dict[Any, Any]) -> _Form:
    """Today's form of an image-to-video job: `image: FILE` beside `img_url: URL` for the
    models that take `img_url`, and the first frame named for the protocol it is not."""
    form = _Form(dict(fields))
    if kind.param("img_url") is not None:
        _one_image(form, model)
    elif kind.media is not None and kind.media.type("first_frame") is not None:
        for key in ("img_url", IMAGE):
            if key in form.fields:
                del form.fields[key]
                form.said[key] = f"{key}: {model} takes its image in media (first_frame)"
    if kind.media is not None and kind.media.least and "media" not in form.fields:
        types = ", ".join(t.name for t in kind.media.types)
        form.said.setdefault(
            "media",
            f"media: must be a list of items {{type, url or path}} ({types}); "
            f"required for {kind.name}",
        )
    return form


def _one_image(form: _Form, model: str) -> None:
    """wan2.6 and older: the first frame as `img_url` (a URL or `{path}`) or `image` (a
    file), exactly one of them; never `media`."""
    fields = form.fields
    if "media" in fields:
        del fields["media"]
        form.said["media"] = f"media: {model} takes one image as img_url or image"
    given = [k for k in ("img_url", IMAGE) if k in fields]
    if given == [IMAGE]:
        path = fields.pop(IMAGE)
        if isinstance(path, str) and path.strip() and "\0" not in path:
            fields["img_url"] = {"path": path}
            form.labels["img_url.path"] = IMAGE
        else:  # said for img_url: the table would call it missing
            form.said["img_url"] = "image: must be a file path"
    elif len(given) != 1:
        fields.pop(IMAGE, None)
        fields.pop("img_url", None)
        both = ", not both" if given else ""
        form.said["img_url"] = (
            f"img_url: give the first frame as img_url (a URL) or image (a file){both}"
        )


def _field_of(problem: str) -> str:
    """The field a problem names: `media` for `media[0].type: …`."""
    return re.split(r"[.\[:]", problem, maxsplit=1)[0]


def _what(fields: dict[Any, Any], where: str, media: str) -> str:
    """What a local file is, in the user's terms: a media item's type, else its class."""
    match = re.fullmatch(r"media\[(\d+)\]\.(\w+)(?:\.path)?", where)
    if match is None:
        return media
    if match[2] != "path":
        return match[2]  # reference_voice
    return str(fields["media"][int(match[1])]["type"])


class _Parser:
    def __init__(
        self, doc: dict[Any, Any], default_model: str, base: Path, limit: int, keys: Identities
    ) -> None:
        self.doc = doc
        self.default_model = default_model
        self.base = base
        self.limit = limit
        self.keys = keys
        self.problems: list[str] = []

    def spec(self) -> JobSpec:
        model = self._text("model", 64) or self.default_model
        endpoint = self._endpoint()
        if any(key in self.doc for key in RAW_KEYS):
            body, uploads, endpoint = self._raw(model, endpoint)
        else:
            body, uploads, endpoint = self._fields(model, endpoint)
        meta = self._meta()
        if self.problems:
            shown = self.problems[:MAX_PROBLEMS]
            more = len(self.problems) - len(shown)
            raise JobFileError("; ".join(shown) + (f"; and {more} more" if more else ""))
        return JobSpec(model, body, uploads, meta, endpoint or kinds.VIDEO_GENERATION)

    def _text(self, key: str, limit: int) -> str | None:
        value = self.doc.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise JobFileError(f"{key}: must be non-empty text")
        if len(value) > limit:
            raise JobFileError(f"{key}: longer than {limit} characters")
        return value

    def _endpoint(self) -> str | None:
        value = self.doc.get("endpoint")
        if value is None:
            return None
        if isinstance(value, str) and ENDPOINT.fullmatch(value):
            return value
        self.problems.append(
            f"endpoint: {value!r} is not a path under /api/v1/services/ "
            f"like {kinds.VIDEO_GENERATION}"
        )
        return None

    # -- the fields form -----------------------------------------------------------------
    def _fields(
        self, model: str, endpoint: str | None
    ) -> tuple[dict[str, Any], tuple[LocalFile, ...], str | None]:
        """Check every field against the model's row; the create request if all is well."""
        kind = kinds.kind_for(model)
        if kind is None:
            if "endpoint" in self.doc:
                raise JobFileError(
                    f"model: {model!r} is not a known model, so its fields cannot be checked: "
                    "give the request itself as input: and parameters: beside endpoint:"
                )
            raise JobFileError(
                f"model: {model!r} is not a known model (give endpoint:, and the request as "
                "input: and parameters:, to use it)"
            )
        own = {k: v for k, v in self.doc.items() if k not in JOB_KEYS}
        form = _first_frame(kind, model, own)
        unknown = [k for k in form.fields if isinstance(k, str) and k not in KNOWN_FIELDS]
        known = ", ".join([*kind.field_names(), *JOB_KEYS])
        fields = {k: v for k, v in form.fields.items() if k not in unknown}
        self.problems += form.said.values()
        for key in unknown:
            self.problems.append(f"{key}: unknown field (the fields of {kind.name}: {known})")
        checked = jobcheck.check_job(kind, fields)
        self.problems += [p for p in checked if _field_of(p) not in form.said]
        opened = self._open_files(kind, fields, form.labels)
        if self.problems:
            return {}, (), None
        body = jobcheck.request_body(kind, model, fields)
        uploads = tuple(replace(opened[raw], slot=slot) for slot, raw in path_slots(body))
        return body, uploads, endpoint or kind.endpoint

    def _open_files(
        self, kind: kinds.Kind, fields: dict[Any, Any], labels: dict[str, str]
    ) -> dict[str, LocalFile]:
        """Every local file the fields name, checked now; by path as written."""
        opened: dict[str, LocalFile] = {}
        for where, raw, media in jobcheck.local_files(kind, fields):
            extensions = FILE_CLASSES[media]
            if not extensions:  # a document or a web page: jobcheck says it must be a URL
                continue
            try:
                what = _what(fields, where, media)
                shown = labels.get(where, where)
                opened[raw] = open_local(
                    shown, raw, self.base, self.limit, what, extensions, self.keys
                )
            except JobFileError as exc:
                self.problems.append(str(exc))
        return opened

    # -- the raw form --------------------------------------------------------------------
    def _raw(
        self, model: str, endpoint: str | None
    ) -> tuple[dict[str, Any], tuple[LocalFile, ...], str | None]:
        """`input` and `parameters` as given; their `{path: P}`s are looked into, and the
        values of the fields a known model's row knows (what its API refuses)."""
        for key in self.doc:
            if key not in (*JOB_KEYS, *RAW_KEYS):
                self.problems.append(
                    f"{key}: not allowed beside input and parameters (give the request as "
                    "the API takes it, or the fields, not both)"
                )
        kind = kinds.kind_for(model)
        if endpoint is None and "endpoint" not in self.doc:
            if kind is None:
                self.problems.append(f"model: {model!r} is not a known model (give endpoint:)")
            else:
                endpoint = kind.endpoint
        body: dict[str, Any] = {"model": model, "input": self.doc.get("input")}
        if not isinstance(body["input"], dict) or not body["input"]:
            self.problems.append("input: must be a mapping (the request's input, as the API takes)")
        if "parameters" in self.doc:
            body["parameters"] = self.doc["parameters"]
            if not isinstance(body["parameters"], dict):
                self.problems.append("parameters: must be a mapping")
        if kind is not None and endpoint == kind.endpoint:  # refused here, not after uploads
            self.problems += jobcheck.check_raw(kind, body)
        slots = list(path_slots(body))
        if len(slots) > MAX_LOCAL_FILES:
            self.problems.append(f"input: {len(slots)} local files, more than {MAX_LOCAL_FILES}")
            slots = []
        uploads: list[LocalFile] = []
        what = "picture, audio or video"
        for slot, raw in slots:
            try:
                where = f"{label(slot)}.path"
                local = open_local(where, raw, self.base, self.limit, what, MEDIA_FILES, self.keys)
                uploads.append(replace(local, slot=slot))
            except JobFileError as exc:
                self.problems.append(str(exc))
        return body, tuple(uploads), endpoint

    # -- meta ------------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        """The meta as the job's `.task` will hold it, proven writable and readable now.

        The `.task` is written only after the task exists (and is paid for): a meta it
        could not hold (over 64 KiB, too deep, NaN) must stop the job before the create.
        """
        meta = self.doc.get("meta", {})
        if not isinstance(meta, dict):
            self.problems.append("meta: must be a mapping")
            return {}
        try:
            rendered = taskfile.render(taskfile.LONGEST_ID, meta)
        except (TypeError, ValueError):
            self.problems.append("meta: must hold plain JSON values (text, numbers, lists)")
            return {}
        if len(rendered) > taskfile.MAX_BYTES:
            self.problems.append(
                f"meta: {len(rendered)} bytes as the job's .task, over the "
                f"{taskfile.MAX_BYTES // 1024} KiB a task file may hold"
            )
            return {}
        try:
            return taskfile.parse(rendered).meta
        except TaskFileError as exc:
            self.problems.append(f"meta: the job's .task would be refused: {exc}")
            return {}
