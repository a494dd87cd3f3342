"""A job's fields against its kind: every problem named, then the create request.

- `check_job(kind, fields)`: every problem with a job's fields, each naming its field;
- `request_body(kind, model, fields)`: the create request for fields that passed;
- `check_request(kind, body)`: what the create endpoint refuses in a request body,
  naming `input.X` / `parameters.X` (the simulator answers `InvalidParameter` with it);
- `check_raw(kind, body)`: the same for the values of a raw job's known fields, before
  anything is uploaded;
- `local_files` and `url_values`: the files to upload and the URLs a job names.

A job's fields are the vendor's own `input` and `parameters` names side by side (see
the "Task kinds" table of docs/jobs.md). A URL field holds an `http(s)://` or `oss://`
URL, or `{path: P}` for a local file uploaded before the create; a `media` item holds
`type` and one of `url` or `path`. Pure functions, no I/O: opening the local files is the caller's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from wansync.core.fields import FILE_CLASSES, MAX_ITEMS, Media, source_problem
from wansync.core.kinds import Kind


def check_job(kind: Kind, fields: Mapping[str, Any]) -> list[str]:
    """Every problem with a job's fields for this kind, each starting with the field's name
    (the kind's rules across fields, such as media combinations, once each field is right).

    `fields` are the job's own (not `model`, `meta` or `name`): the vendor's `input` and
    `parameters` names side by side, and `media` for the media-list protocol.
    """
    return _check(kind, fields, _bare)


def _bare(name: str, kind: Kind) -> str:
    return name


def _qualified(name: str, kind: Kind) -> str:
    """Where a field sits in the request: `parameters.n`, `input.media[0].url`, or inside
    the one message of a messages-style request."""
    head, bracket, rest = name.partition("[")
    if kind.messages and head in ("prompt", "images"):
        content = "input.messages[0].content"
        if head == "prompt":
            return f"{content}[0].text{bracket}{rest}"
        if not bracket:
            return content
        index, _, tail = rest.partition("]")
        return f"{content}[{int(index) + 1}].image{tail}" if index.isdigit() else content
    param = kind.param(head)
    section = param.section if param else "input"
    return f"{section}.{name}"


Label = Callable[[str, Kind], str]


def _check(kind: Kind, fields: Mapping[str, Any], label: Label) -> list[str]:
    problems: list[str] = []
    known = kind.field_names()
    for key, value in fields.items():
        if not isinstance(key, str):
            problems.append(f"{key!r}: a field name must be text")
        elif key == "media" and kind.media:
            problems += _check_media(kind.media, value, label, kind)
        elif (param := kind.param(key)) is None:
            problems.append(f"{key}: not a field of {kind.name} (its fields: {', '.join(known)})")
        elif problem := param.test(value):
            index, found, rest = problem.partition("]: ")  # "[2]: …": an item of a list
            where = key + index + "]" if found and index.startswith("[") else key
            problems.append(f"{label(where, kind)}: {rest if where != key else problem}")
    for param in kind.fields:
        if param.required and param.name not in fields:
            problems.append(f"{label(param.name, kind)}: required for {kind.name}")
    if kind.media and kind.media.least and "media" not in fields:
        problems.append(f"{label('media', kind)}: required for {kind.name}")
    if not problems:  # rules read values that passed their own checks
        problems += [p for rule in kind.rules if (p := rule(fields))]
    return problems


def _check_media(media: Media, value: Any, label: Label, kind: Kind) -> list[str]:
    where = label("media", kind)
    if not isinstance(value, list) or not media.least <= len(value) <= MAX_ITEMS:
        return [f"{where}: must be a list of {media.least} to {MAX_ITEMS} items with type and url"]
    problems: list[str] = []
    counts: dict[str, int] = {}
    for i, item in enumerate(value):
        problems += _check_item(media, item, f"{where}[{i}]", counts)
    for name, count in counts.items():
        kind_of = media.type(name)
        if kind_of and count > kind_of.most:
            twice = f" ({name} given twice)" if count == 2 else ""
            problems.append(f"{where}: {count} items of type {name}, at most {kind_of.most}{twice}")
    return problems


def _check_item(media: Media, item: Any, where: str, counts: dict[str, int]) -> list[str]:
    if not isinstance(item, Mapping):
        return [f"{where}: must be a mapping with type and url (or path)"]
    allowed = ("type", "url", "path", *media.extra)
    problems = [
        f"{where}.{key}: unknown field (known: {', '.join(allowed)})"
        for key in item
        if key not in allowed
    ]
    kind_of = media.type(item.get("type"))
    if kind_of is None:
        names = ", ".join(t.name for t in media.types)
        return [*problems, f"{where}.type: {item.get('type')!r} is not one of {names}"]
    counts[kind_of.name] = counts.get(kind_of.name, 0) + 1
    if ("url" in item) == ("path" in item):
        problems.append(f"{where}: give exactly one of url or path")
    elif "path" in item:
        if not FILE_CLASSES[kind_of.media]:
            problems.append(
                f"{where}.path: a {kind_of.name} is a URL, not a local file (wansync "
                "uploads only local pictures, audio and clips)"
            )
        elif problem := source_problem({"path": item["path"]}):
            problems.append(f"{where}.path: {problem}")
    elif isinstance(item["url"], Mapping):  # a local file is `path:`, listed by local_files
        problems.append(f"{where}.url: give a URL (a local file is path: FILE)")
    elif problem := source_problem(item["url"]):
        problems.append(f"{where}.url: {problem}")
    for key in media.extra:
        if key in item and (problem := source_problem(item[key])):
            problems.append(f"{where}.{key}: {problem}")
    return problems


def local_files(kind: Kind, fields: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Every local file a checked job names: (field label, path as given, file class).

    The caller opens each (no link on the way, a regular file, the size cap) and checks its
    name against `FILE_CLASSES[file class]` before anything is sent.
    """
    found: list[tuple[str, str, str]] = []
    for key, value in fields.items():
        param = kind.param(key) if isinstance(key, str) else None
        if key == "media" and kind.media and isinstance(value, list):
            found += _media_files(kind.media, value)
        elif param and param.media:
            values = value if isinstance(value, list) else [value]
            for i, one in enumerate(values):
                where = f"{key}[{i}]" if isinstance(value, list) else key
                if isinstance(one, Mapping) and isinstance(one.get("path"), str):
                    found.append((f"{where}.path", one["path"], param.media))
    return found


def _media_files(media: Media, items: list[Any]) -> list[tuple[str, str, str]]:
    found: list[tuple[str, str, str]] = []
    for i, item in enumerate(items):
        kind_of = media.type(item.get("type")) if isinstance(item, Mapping) else None
        if kind_of and isinstance(item.get("path"), str):
            found.append((f"media[{i}].path", item["path"], kind_of.media))
        for key in media.extra if isinstance(item, Mapping) else ():
            source = item.get(key)
            if isinstance(source, Mapping) and isinstance(source.get("path"), str):
                found.append((f"media[{i}].{key}.path", source["path"], "audio"))
    return found


# -- the create request, and back ------------------------------------------------------------
def request_body(kind: Kind, model: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The create request for fields `check_job` passed. A local file stays `{path: P}`
    (a media item's `path: P` becomes `url: {path: P}`) for the upload to replace."""
    inputs: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "media":
            inputs["media"] = [_wire_item(item) for item in value]
        elif (param := kind.param(key)) is not None:
            section = inputs if param.section == "input" else params
            section[key] = param.normal(value)
    if kind.messages:
        content = [{"text": inputs.pop("prompt")}]
        content += [{"image": image} for image in inputs.pop("images", [])]
        inputs = {"messages": [{"role": "user", "content": content}]}
    return {"model": model, "input": inputs, "parameters": params}


def _wire_item(item: Mapping[str, Any]) -> dict[str, Any]:
    wired = dict(item)
    if "path" in wired:
        wired["url"] = {"path": wired.pop("path")}
    return {"type": wired.pop("type"), "url": wired.pop("url"), **wired}


def check_request(kind: Kind, body: Any) -> list[str]:
    """What the create endpoint refuses in a request body, naming `input.X`/`parameters.X`.

    The same rules as `check_job`, read from the request: every URL a string by now (an
    unreplaced `{path: P}` is refused as the vendor refuses a URL it cannot read).
    """
    fields, problems = request_fields(kind, body)
    if problems:
        return problems
    problems = [f"{label}: url error, please check url" for label in _unsent_paths(kind, fields)]
    return problems or _check(kind, fields, _qualified)


def check_raw(kind: Kind, body: Mapping[str, Any]) -> list[str]:
    """What the create endpoint refuses among the values a raw request (a job's own
    `input`/`parameters`) gives for the fields the kind's row knows, each named where it
    sits: `parameters.resolution: '480P' is not one of 720P, 1080P`.

    Only known fields in their own section are judged, and no URL (a `{path}` is checked
    as a local file): the raw form is there for what the table does not say yet.
    """
    problems: list[str] = []
    for section in ("input", "parameters"):
        values = body.get(section)
        if not isinstance(values, Mapping):
            continue
        for key, value in values.items():
            param = kind.param(key) if isinstance(key, str) else None
            if param is None or param.section != section or param.media is not None:
                continue
            if (problem := param.test(value)) is not None:
                problems.append(f"{section}.{key}: {problem}")
    return problems


def request_fields(kind: Kind, body: Any) -> tuple[dict[str, Any], list[str]]:
    """The job fields a request body holds, and what is out of place in it (a field in the
    wrong section, or not this kind's)."""
    if not isinstance(body, Mapping) or not isinstance(body.get("input"), Mapping):
        return {}, ["input: is required"]
    params = body.get("parameters")
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        return {}, ["parameters: must be an object"]
    return _fields_of(kind, body["input"], params)


def _fields_of(
    kind: Kind, inputs: Mapping[str, Any], params: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The job fields a request body holds, and what is in the wrong place."""
    fields: dict[str, Any] = {}
    problems: list[str] = []
    if kind.messages:
        fields, problems = _from_messages(inputs)
        inputs = {k: v for k, v in inputs.items() if k != "messages"}
    for section, values in (("input", inputs), ("parameters", params)):
        for key, value in values.items():
            param = kind.param(key) if isinstance(key, str) else None
            media_here = key == "media" and kind.media is not None and section == "input"
            if kind.messages and section == "input":
                problems.append(f"input.{key}: not a field of {kind.name} (it takes messages)")
            elif param is not None and param.section != section:
                problems.append(f"{section}.{key}: belongs in {param.section}")
            elif param is None and not media_here:
                problems.append(f"{section}.{key}: not a field of {kind.name}")
            else:
                fields[key] = value
    return fields, problems


def _from_messages(inputs: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    messages = inputs.get("messages")
    bad = "input.messages: must be one {role: user, content: [{text}, {image}…]}"
    if not isinstance(messages, list) or len(messages) != 1:
        return {}, [bad]
    message = messages[0]
    content = message.get("content") if isinstance(message, Mapping) else None
    if not isinstance(content, list) or message.get("role") != "user":
        return {}, [bad]
    texts = [c["text"] for c in content if isinstance(c, Mapping) and set(c) == {"text"}]
    images = [c["image"] for c in content if isinstance(c, Mapping) and set(c) == {"image"}]
    if len(texts) != 1 or len(texts) + len(images) != len(content):
        return {}, ["input.messages[0].content: exactly one {text} and only {image} items"]
    fields: dict[str, Any] = {"prompt": texts[0]}
    if images:
        fields["images"] = images
    return fields, []


def _unsent_paths(kind: Kind, fields: Mapping[str, Any]) -> list[str]:
    """Labels of URL slots still holding a `{path}` (never uploaded)."""
    labels = []
    for label, _, _ in local_files(kind, fields):
        labels.append(_qualified(label.removesuffix(".path"), kind))
    for i, item in enumerate(fields.get("media") or []):
        if isinstance(item, Mapping) and isinstance(item.get("url"), Mapping):
            labels.append(f"input.media[{i}].url")
    return labels


def url_values(kind: Kind, fields: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Every URL slot of checked fields with what it holds: (label, URL or {path})."""
    found: list[tuple[str, Any]] = []
    for key, value in fields.items():
        param = kind.param(key) if isinstance(key, str) else None
        if key == "media" and isinstance(value, list):
            found += _media_urls(kind, value)
        elif param and param.media:
            if isinstance(value, list):
                found += [(f"{key}[{i}]", v) for i, v in enumerate(value)]
            else:
                found.append((key, value))
    return found


def _media_urls(kind: Kind, items: list[Any]) -> Iterator[tuple[str, Any]]:
    extra = kind.media.extra if kind.media else ()
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            continue
        if "url" in item:
            yield f"media[{i}].url", item["url"]
        for key in extra:
            if key in item:
                yield f"media[{i}].{key}", item[key]
