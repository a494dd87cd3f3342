"""One table of task kinds: model family -> create endpoint, job fields, output shape, files.

Every asynchronous DashScope generation task is polled the same way; what differs is how
it is created (the endpoint under `/api/v1/services/` and the `input`/`parameters` its
vendor page documents) and what a finished task's `output` holds (a `video_url`,
`results[]` with `url`s, or `choices[].message.content[]` with `image`s). That is data:
`KINDS` below has one row per model family, each citing the vendor page it was read
from. Adding a model next year is a row here, not a branch in five modules.

- `kind_for(model)`: the row whose pattern matches a model name, or None;
- `endpoint_rule(model, files, messages)`: the endpoint the rule of docs/jobs.md gives
  (every row's endpoint agrees with it; a test says so).

The rows are read by `jobcheck` (a job's fields, the create request) and the simulator;
`shapes.outputs_of` reads what a finished task's `output` names. Pure data, no I/O.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from wansync.core.fields import (
    ANY_RESOLUTION,
    EXTRAS,
    HD,
    MAX_ITEMS,
    NEGATIVE,
    RATIO,
    SEED,
    VIDEO_SIZE,
    WATERMARK,
    Media,
    MediaType,
    Param,
    flag,
    is_int,
    one_of,
    size,
    text,
    url,
    urls,
    whole,
)
from wansync.core.shapes import Shape

# -- endpoints (under /api/v1/services/) ---------------------------------------------------
SERVICES = "/api/v1/services/"
VIDEO_GENERATION = "aigc/video-generation/video-synthesis"
IMAGE2VIDEO = "aigc/image2video/video-synthesis"
TEXT2IMAGE = "aigc/text2image/image-synthesis"
IMAGE2IMAGE = "aigc/image2image/image-synthesis"
IMAGE_GENERATION = "aigc/image-generation/generation"
ENDPOINTS = (VIDEO_GENERATION, IMAGE2VIDEO, TEXT2IMAGE, IMAGE2IMAGE, IMAGE_GENERATION)

Files = Literal["mp4", "picture"]

Rule = Callable[[Mapping[str, Any]], str | None]  # a check across fields


@dataclass(frozen=True, slots=True)
class Kind:
    """One model family: how its tasks are made and what they produce."""

    name: str
    models: tuple[str, ...]  # shell-style patterns on the model name (lower case)
    endpoint: str  # under /api/v1/services/
    output: Shape
    files: Files
    fields: tuple[Param, ...]
    page: str  # the vendor's API reference this row was read from
    media: Media | None = None
    rules: tuple[Rule, ...] = ()
    messages: bool = False  # input is `messages: [{role, content: [{text}, {image}…]}]`
    default_n: int = 1  # pictures made when `n` is not given

    def param(self, name: str) -> Param | None:
        return next((p for p in self.fields if p.name == name), None)

    def field_names(self) -> list[str]:
        names = [p.name for p in self.fields]
        return [*names, "media"] if self.media else names


# -- rules across fields --------------------------------------------------------------------
def _media_types(fields: Mapping[str, Any]) -> list[str]:
    media = fields.get("media")
    items = media[:MAX_ITEMS] if isinstance(media, list) else []
    return [i["type"] for i in items if isinstance(i, Mapping) and isinstance(i.get("type"), str)]


def _i2v_combination(fields: Mapping[str, Any]) -> str | None:
    """wan2.7-i2v: a first frame (with a last frame, driving audio, both) or a first clip
    (with a last frame). The vendor refuses every other combination."""
    types = frozenset(_media_types(fields))
    if not types:
        return None  # the media list itself is already reported
    allowed = [
        {"first_frame"},
        {"first_frame", "driving_audio"},
        {"first_frame", "last_frame"},
        {"first_frame", "last_frame", "driving_audio"},
        {"first_clip"},
        {"first_clip", "last_frame"},
    ]
    if types in allowed:
        return None
    return (
        f"media: {' + '.join(sorted(types))} is not a combination wan2.7-i2v takes: it "
        "needs exactly one of first_frame or first_clip (first_frame [+ last_frame] "
        "[+ driving_audio], or first_clip [+ last_frame])"
    )


def _r2v_references(fields: Mapping[str, Any]) -> str | None:
    types = _media_types(fields)
    refs = sum(t in ("reference_image", "reference_video") for t in types)
    if types and not 1 <= refs <= 5:
        return f"media: {refs} reference_image/reference_video items; give 1 to 5"
    return None


def _r2v_duration(fields: Mapping[str, Any]) -> str | None:
    duration = fields.get("duration")
    if "reference_video" in _media_types(fields) and is_int(duration) and duration > 10:
        return f"duration: {duration} is over 10, the most with a reference_video"
    return None


def _needs_video(fields: Mapping[str, Any]) -> str | None:
    types = _media_types(fields)
    if types and "video" not in types:
        return "media: needs the video to edit (an item of type video)"
    return None


def _wan3_modes(fields: Mapping[str, Any]) -> str | None:
    """wan3.0: frames (first_frame [+ last_frame]) or references, never both; file or link."""
    types = set(_media_types(fields))
    frames = types & {"first_frame", "last_frame"}
    others = types - frames
    if frames and others:
        return (
            f"media: {', '.join(sorted(frames))} cannot be mixed with "
            f"{', '.join(sorted(others))} (frames or references, not both)"
        )
    if "last_frame" in types and "first_frame" not in types:
        return "media: last_frame needs a first_frame"
    if {"file", "link"} <= types:
        return "media: give a file or a link, not both"
    return None


def _wan3_prompt(fields: Mapping[str, Any]) -> str | None:
    if "prompt" not in fields and "first_frame" not in _media_types(fields):
        return "prompt: required (unless media has a first_frame)"
    return None


def _kf2v_last_frame(fields: Mapping[str, Any]) -> str | None:
    if "last_frame_url" not in fields and "template" not in fields:
        return "last_frame_url: required (unless a template effect is given)"
    return None


def _sequential_n(fields: Mapping[str, Any]) -> str | None:
    n = fields.get("n")
    if is_int(n) and n > 4 and fields.get("enable_sequential") is not True:
        return f"n: {n} pictures need enable_sequential: true (else 1 to 4)"
    return None


# -- the table ------------------------------------------------------------------------------
DOCS = "https://www.alibabacloud.com/help/en/model-studio/"


def _t2v(limit: int, duration: Param, *more: Param) -> tuple[Param, ...]:
    prompt = text("prompt", limit, required=True)
    return (prompt, NEGATIVE, *more, VIDEO_SIZE, duration, *EXTRAS)


def _i2v(limit: int, resolution: Param, duration: Param, *more: Param) -> tuple[Param, ...]:
    first = url("img_url", "image", required=True)
    return (text("prompt", limit), NEGATIVE, first, *more, resolution, duration, *EXTRAS)


def _media(*types: MediaType, least: int = 1, extra: tuple[str, ...] = ()) -> Media:
    return Media(types, least, extra)


KINDS: tuple[Kind, ...] = (
    # Video kinds: one MP4 at output.video_url.
    Kind(  # text-to-video, the new protocol (resolution + ratio)
        "text-to-video (wan2.7)",
        ("wan2.7-t2v*",),
        VIDEO_GENERATION,
        "video_url",
        "mp4",
        (
            text("prompt", 5000, required=True),
            NEGATIVE,
            url("audio_url", "audio"),
            HD,
            RATIO,
            whole("duration", 2, 15),
            *EXTRAS,
        ),
        DOCS + "text-to-video-api-reference",
    ),
    Kind(  # the older protocol (exact size), same page, "wan2.6 and earlier"
        "text-to-video (wan2.6)",
        ("wan2.6-t2v*",),
        VIDEO_GENERATION,
        "video_url",
        "mp4",
        _t2v(
            1500,
            whole("duration", 2, 15),
            url("audio_url", "audio"),
            one_of("shot_type", "single", "multi"),
        ),
        DOCS + "text-to-video-api-reference",
    ),
    Kind(
        "text-to-video (wan2.5)",
        ("wan2.5-t2v*",),
        VIDEO_GENERATION,
        "video_url",
        "mp4",
        _t2v(2000, one_of("duration", 5, 10), url("audio_url", "audio")),
        DOCS + "text-to-video-api-reference",
    ),
    Kind(
        "text-to-video (wan2.2, wanx2.1)",
        ("wan2.2-t2v*", "wanx2.1-t2v*"),
        VIDEO_GENERATION,
        "video_url",
        "mp4",
        _t2v(800, one_of("duration", 5)),
        DOCS + "text-to-video-api-reference",
    ),
    Kind(  # first frame, first + last frame, continuation of a first clip
        "image-to-video (wan2.7)",
        ("wan2.7-i2v*",),
        VIDEO_GENERATION,
        "video_url",
        "mp4",
        (text("prompt", 5000), NEGATIVE, HD, whole("duration", 2, 15), *EXTRAS),
        DOCS + "image-to-video-general-api-reference",
        media=_media(
            MediaType("first_frame", "image"),
            MediaType("last_frame", "image"),
            MediaType("driving_audio", "audio"),
            MediaType("first_clip", "video"),
        ),
        rules=(_i2v_combination,),
    ),
    Kind(  # the first-frame protocol: one image as img_url
        "image-to-video (wan2.6)",
        ("wan2.6-i2v*",),
        VIDEO_GENERATION,
        "video_url",
        "mp4",
        _i2v(
            1500,
            HD,
            whole("duration", 2, 15),
            url("audio_url", "audio"),
            one_of("shot_type", "single", "multi"),
        ),
        DOCS + "image-to-video-general-api-reference",
    ),
    Kind(
        "image-to-video (wan2.5)",
        ("wan2.5-i2v*",),
        VIDEO_GENERATION,
        "video_url",
        "mp4",
        _i2v(2000, ANY_RESOLUTION, one_of("duration", 5, 10), url("audio_url", "audio")),
        DOCS + "image-to-video-general-api-reference",
    ),
    Kind(
        "image-to-video (wan2.2, wanx2.1)",
        ("wan2.2-i2v*", "wanx2.1-i2v*"),
        VIDEO_GENERATION,
        "video_url",
        "mp4",
        _i2v(800, ANY_RESOLUTION, whole("duration", 3, 5)),
        DOCS + "image-to-video-general-api-reference",
    ),
    Kind(  # first and last frame to video (kf2v)
        "first-and-last-frame (kf2v)",
        ("wan*-kf2v-*",),
        IMAGE2VIDEO,
        "video_url",
        "mp4",
        (
            text("prompt", 800),
            NEGATIVE,
            url("first_frame_url", "image", required=True),
            url("last_frame_url", "image"),
            text("template", 64),
            ANY_RESOLUTION,
            one_of("duration", 5),
            *EXTRAS,
        ),
        DOCS + "image-to-video-by-first-and-last-frame-api-reference",
        rules=(_kf2v_last_frame,),
    ),
    Kind(  # reference-to-video: characters from pictures and clips
        "reference-to-video (wan2.7)",
        ("wan2.7-r2v*",),
        VIDEO_GENERATION,
        "video_url",
        "mp4",
        (
            text("prompt", 5000, required=True),
            NEGATIVE,
            HD,
            RATIO,
            whole("duration", 2, 15),
            *EXTRAS,
        ),
        DOCS + "video-reference-api-reference",
        media=_media(
            MediaType("reference_image", "image", 5),
            MediaType("reference_video", "video", 5),
            MediaType("first_frame", "image"),
            extra=("reference_voice",),
        ),
        rules=(_r2v_references, _r2v_duration),
    ),
    Kind(  # video editing: instructions, optional reference pictures
        "video editing (wan2.7)",
        ("wan2.7-videoedit*",),
        VIDEO_GENERATION,
        "video_url",
        "mp4",
        (
            text("prompt", 5000),
            NEGATIVE,
            HD,
            RATIO,
            whole("duration", 2, 10, also=(0,)),
            one_of("audio_setting", "auto", "origin"),
            *EXTRAS,
        ),
        DOCS + "wan-video-editing-api-reference",
        media=_media(MediaType("video", "video"), MediaType("reference_image", "image", 4)),
        rules=(_needs_video,),
    ),
    Kind(  # Wan 3.0: text, frames, or up to 20 references in one model
        "video (wan3.0)",
        ("wan3.0-video*", "wan3-video*"),
        VIDEO_GENERATION,
        "video_url",
        "mp4",
        (
            text("prompt", 20000),
            ANY_RESOLUTION,
            RATIO,
            whole("duration", 2, 30, also=(-1,)),
            flag("audio"),
            WATERMARK,
            SEED,
        ),
        DOCS + "wan3-video-generation-api-reference",
        media=_media(
            MediaType("first_frame", "image"),
            MediaType("last_frame", "image"),
            MediaType("reference_image", "image", 10),
            MediaType("reference_video", "video", 5),
            MediaType("reference_audio", "audio", 5),
            MediaType("file", "document"),
            MediaType("link", "page"),
            least=0,
        ),
        rules=(_wan3_modes, _wan3_prompt),
    ),
    Kind(  # speech-to-video: a portrait and a voice
        "speech-to-video (s2v)",
        ("wan*-s2v",),  # not wan2.2-s2v-detect: a synchronous check, no task
        IMAGE2VIDEO,
        "video_url",
        "mp4",
        (
            url("image_url", "image", required=True),
            url("audio_url", "audio", required=True),
            one_of("resolution", "480P", "720P"),
        ),
        DOCS + "wan-s2v-api",
    ),
    Kind(  # animate: a character picture moved (move) or swapped in (mix) by a video
        "animate (move, mix)",
        ("wan*-animate-*",),
        IMAGE2VIDEO,
        "video_url",
        "mp4",
        (
            url("image_url", "image", required=True),
            url("video_url", "video", required=True),
            flag("watermark", section="input"),
            one_of("mode", "wan-std", "wan-pro", required=True),
            flag("check_image"),
        ),
        DOCS + "wan-animate-move-api",
    ),
    # Classic image synthesis: n pictures in output.results[].url.
    Kind(
        "text-to-image (wan2.5)",
        ("wan2.5-t2i*",),
        TEXT2IMAGE,
        "results",
        "picture",
        (
            text("prompt", 2000, required=True),
            NEGATIVE,
            size("size", area=(768 * 768, 1440 * 1440), ratio=4),
            whole("n", 1, 4),
            *EXTRAS,
        ),
        DOCS + "text-to-image-v2-api-reference",
        default_n=4,
    ),
    Kind(
        "text-to-image (wan2.2, wanx2.1, wanx2.0)",
        ("wan2.2-t2i*", "wanx2.1-t2i*", "wanx2.0-t2i*", "wan2.1-t2i*"),
        TEXT2IMAGE,
        "results",
        "picture",
        (
            text("prompt", 800, required=True),
            NEGATIVE,
            size("size", sides=(512, 1440)),
            whole("n", 1, 4),
            *EXTRAS,
        ),
        DOCS + "text-to-image-v2-api-reference",
        default_n=4,
    ),
    Kind(  # image editing and fusion of up to three pictures
        "image editing (wan2.5)",
        ("wan2.5-i2i*",),
        IMAGE2IMAGE,
        "results",
        "picture",
        (
            text("prompt", 2000, required=True),
            NEGATIVE,
            urls("images", "image", 1, 3, required=True),
            size("size", area=(768 * 768, 1440 * 1440), ratio=4),
            whole("n", 1, 4),
            *EXTRAS,
        ),
        DOCS + "wan2-5-image-edit-api-reference",
        default_n=4,
    ),
    # Messages-style image generation: pictures in output.choices[].message.content[].image.
    Kind(
        "image generation (wan2.7-image)",
        ("wan2.7-image*",),
        IMAGE_GENERATION,
        "choices",
        "picture",
        (
            text("prompt", 5000, required=True),
            urls("images", "image", 0, 9),
            size("size", sides=(512, 4096), presets=("1K", "2K", "4K")),
            whole("n", 1, 12),
            flag("enable_sequential"),
            flag("thinking_mode"),
            text("negative_prompt", 500, section="parameters"),
            WATERMARK,
            SEED,
        ),
        DOCS + "wan-image-generation-and-editing-api-reference",
        rules=(_sequential_n,),
        messages=True,
    ),
    Kind(
        "text-to-image (wan2.6)",
        ("wan2.6-t2i*",),
        IMAGE_GENERATION,
        "choices",
        "picture",
        (
            text("prompt", 2100, required=True),
            size("size", area=(1280 * 1280, 1440 * 1440), ratio=4),
            whole("n", 1, 4),
            text("negative_prompt", 500, section="parameters"),
            *EXTRAS,
        ),
        DOCS + "text-to-image-v2-api-reference",
        messages=True,
        default_n=4,
    ),
)


def kind_for(model: Any) -> Kind | None:
    """The row whose pattern matches `model` (case-insensitive), or None."""
    if not isinstance(model, str) or not model or len(model) > 128:
        return None
    name = model.lower()
    return next((k for k in KINDS if any(fnmatch.fnmatchcase(name, p) for p in k.models)), None)


def endpoint_rule(model: str, files: Files, messages: bool) -> str:
    """The rule of docs/jobs.md (Task kinds): `*-kf2v-*`, animate and s2v models to
    image2video; other video models to video-generation; classic image models to
    text2image or (editing) image2image; messages-style image models to image-generation."""
    name = model.lower()
    if files == "mp4":
        if "-kf2v-" in name or "-animate" in name or "-s2v" in name:
            return IMAGE2VIDEO
        return VIDEO_GENERATION
    if messages:
        return IMAGE_GENERATION
    return IMAGE2IMAGE if "-i2i" in name or "imageedit" in name else TEXT2IMAGE
