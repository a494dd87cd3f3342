"""What one job field accepts: the checks a row of the kinds table is built from.

Each `Param` says where the vendor wants a field (`input` or `parameters`), what it
accepts (`what`, words for the docs) and the check (`test`: None, or the problem without
the field's name, which the caller puts in front). Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

MAX_URL = 8192  # characters; a longer "URL" is not one
MAX_ITEMS = 64  # media items or URLs a job may list (the vendor allows at most 21)

URL_SCHEMES = ("http://", "https://", "oss://")
# What a local file of each class may be named: only media are ever uploaded from this
# machine (docs/security.md). A document (`.txt`, `.md` are common names for secrets)
# and a web page are URLs only, never a local file.
FILE_CLASSES: Mapping[str, tuple[str, ...]] = {
    "image": (".jpg", ".jpeg", ".png", ".bmp", ".webp"),
    "audio": (".mp3", ".wav"),
    "video": (".mp4", ".mov"),
    "document": (),
    "page": (),
}
MEDIA_FILES = FILE_CLASSES["image"] + FILE_CLASSES["audio"] + FILE_CLASSES["video"]

Check = Callable[[Any], str | None]


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class Param:
    """One job field: where the vendor wants it, what it accepts (`what`, for the docs)."""

    name: str
    section: Literal["input", "parameters"]
    what: str
    test: Check
    required: bool = False
    media: str | None = None  # URL fields: the file class (see FILE_CLASSES)
    normal: Callable[[Any], Any] = _same  # the spelling sent (e.g. "720p" -> "720P")


@dataclass(frozen=True, slots=True)
class MediaType:
    """A `media` item type: the file class it takes and how many items of it at most."""

    name: str
    media: str
    most: int = 1


@dataclass(frozen=True, slots=True)
class Media:
    """The `media` list of the wan2.7/wan3.0 protocol."""

    types: tuple[MediaType, ...]
    least: int = 1
    extra: tuple[str, ...] = ()  # other item keys holding a URL (r2v's reference_voice)

    def type(self, name: Any) -> MediaType | None:
        return next((t for t in self.types if t.name == name), None)


# -- field checks ---------------------------------------------------------------------------
def is_int(value: Any) -> TypeGuard[int]:
    """A whole number, and not a bool (YAML's `yes` is not 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def text(name: str, limit: int, *, section: Any = "input", required: bool = False) -> Param:
    """Text of at most `limit` characters (the vendor cuts longer text; we refuse it)."""

    def test(value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip():
            return "must be non-empty text"
        if len(value) > limit:
            return (
                f"longer than the API takes: {len(value)} characters, over the {limit} "
                "it reads (it would cut the rest)"
            )
        return None

    return Param(name, section, f"text, at most {limit} characters", test, required)


def whole(name: str, low: int, high: int, *, also: tuple[int, ...] = ()) -> Param:
    """A whole number from `low` to `high` (or one of `also`)."""

    def test(value: Any) -> str | None:
        if not is_int(value):
            return f"{value!r} is not a whole number"
        if not (low <= value <= high or value in also):
            extra = "".join(f" or {a}" for a in also)
            return f"{value} is not between {low} and {high}{extra}"
        return None

    extra = "".join(f" or {a}" for a in also)
    return Param(name, "parameters", f"{low} to {high}{extra}", test)


def one_of(name: str, *values: Any, section: Any = "parameters", required: bool = False) -> Param:
    """One of `values`; text compares without case and is sent as listed."""
    folded = {v.lower(): v for v in values if isinstance(v, str)}

    def normal(value: Any) -> Any:
        return folded.get(value.lower(), value) if isinstance(value, str) else value

    def test(value: Any) -> str | None:
        if normal(value) in values and type(normal(value)) is type(values[0]):
            return None
        return f"{value!r} is not one of {', '.join(str(v) for v in values)}"

    what = " | ".join(str(v) for v in values)
    return Param(name, section, what, test, required, normal=normal)


def flag(name: str, *, section: Any = "parameters") -> Param:
    def test(value: Any) -> str | None:
        return None if isinstance(value, bool) else f"{value!r} is not true or false"

    return Param(name, section, "true | false", test)


SIZE = re.compile(r"([1-9][0-9]{1,4})\*([1-9][0-9]{1,4})")


def size(
    name: str,
    *,
    sides: tuple[int, int] | None = None,
    area: tuple[int, int] | None = None,
    ratio: float = 0.0,
    presets: tuple[str, ...] = (),
) -> Param:
    """`W*H` pixels: each side within `sides`, or the area within `area` (and the aspect
    within 1:`ratio`..`ratio`:1); or one of `presets`."""

    def test(value: Any) -> str | None:
        if isinstance(value, str) and value.upper() in presets:
            return None
        match = SIZE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            shown = " or ".join([*presets, "W*H"]) if presets else "W*H"
            return f"{value!r} is not a size ({shown}, e.g. 1024*1024)"
        width, height = int(match[1]), int(match[2])
        if sides and not (sides[0] <= width <= sides[1] and sides[0] <= height <= sides[1]):
            return f"{value}: each side must be {sides[0]} to {sides[1]} pixels"
        if area and not area[0] <= width * height <= area[1]:
            return f"{value}: {width * height} pixels, not {area[0]} to {area[1]}"
        if ratio and not 1 / ratio <= width / height <= ratio:
            return f"{value}: the aspect ratio must be within 1:{ratio:g} and {ratio:g}:1"
        return None

    parts = [*presets, "W*H"]
    if sides:
        parts.append(f"sides {sides[0]}-{sides[1]}")
    if area:
        parts.append(f"{area[0]}-{area[1]} pixels")
    if ratio:
        parts.append(f"ratio 1:{ratio:g}-{ratio:g}:1")
    return Param(name, "parameters", ", ".join(parts), test, normal=_upper_preset(presets))


def _upper_preset(presets: tuple[str, ...]) -> Callable[[Any], Any]:
    def normal(value: Any) -> Any:
        return value.upper() if isinstance(value, str) and value.upper() in presets else value

    return normal


def source_problem(value: Any) -> str | None:
    """An `http(s)://` or `oss://` URL, or `{path: P}` for a local file."""
    if isinstance(value, Mapping):
        path = value.get("path") if set(value) == {"path"} else None
        if not isinstance(path, str) or not path.strip() or "\0" in path:
            return "give a URL, or {path: FILE} for a local file"
        return None
    if not isinstance(value, str) or not value.startswith(URL_SCHEMES):
        return "must be an http(s):// or oss:// URL (or {path: FILE})"
    if len(value) > MAX_URL:
        return f"a URL of more than {MAX_URL} characters"
    return None


def url(name: str, media: str, *, section: Any = "input", required: bool = False) -> Param:
    what = f"{media} URL or {{path}}" if FILE_CLASSES[media] else f"{media} URL"
    return Param(name, section, what, source_problem, required, media)


def urls(name: str, media: str, low: int, high: int, *, required: bool = False) -> Param:
    """A list of `low` to `high` URLs (or `{path}`s)."""

    def test(value: Any) -> str | None:
        if not isinstance(value, list) or not low <= len(value) <= high:
            return f"must be a list of {low} to {high} {media} URLs (or {{path}}s)"
        for i, item in enumerate(value):
            if problem := source_problem(item):
                return f"[{i}]: {problem}"
        return None

    return Param(name, "input", f"{low}-{high} {media} URLs or {{path}}s", test, required, media)


# -- fields most kinds share ----------------------------------------------------------------
SEED = whole("seed", 0, 2**31 - 1)
WATERMARK = flag("watermark")
PROMPT_EXTEND = flag("prompt_extend")
NEGATIVE = text("negative_prompt", 500)
RATIO = one_of("ratio", "16:9", "9:16", "1:1", "4:3", "3:4")
HD = one_of("resolution", "720P", "1080P")
ANY_RESOLUTION = one_of("resolution", "480P", "720P", "1080P")
VIDEO_SIZE = size("size", sides=(480, 1920))
EXTRAS = (PROMPT_EXTEND, WATERMARK, SEED)
