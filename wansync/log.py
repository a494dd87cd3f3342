"""structlog set-up: JSON lines off a TTY, console on one, stdlib logging routed through it.

Every line passes `redact`, which removes the API key and URL query strings from every
string value, so no code path can leak a signed URL or the key into a log by accident,
and cuts each one to a length (a remote's 900 KB error code is not a 900 KB log line).
`clean` and `clean_tree` do the same for what the remote sends into a sidecar.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from typing import Any, TextIO

import structlog

# A query string anywhere: after a full URL, or after a bare path as urllib3 writes it
# in its error texts ("Max retries exceeded with url: /v.mp4?Expires=…&Signature=…").
_QUERY = re.compile(r"\?[^\s\"'<>()?]*=[^\s\"'<>()]*")
_secrets: set[str] = set()
CODE_CHARS = 200  # an error code, kept whole up to this many characters
MESSAGE_CHARS = 2000  # an error message
TEXT_CHARS = 8000  # other text the remote sends (a 5,000-character prompt fits), a log value
TRACEBACK_CHARS = 20_000  # a rendered exception in a log line
_LIMITS = {"code": CODE_CHARS, "message": MESSAGE_CHARS, "error": MESSAGE_CHARS}


def add_secret(secret: str) -> None:
    """Register a string (the API key) that must never appear in any output."""
    if secret:
        _secrets.add(secret)


def holds_secret(text: str) -> bool:
    """True when `text` contains a registered secret (a hook's environment must not)."""
    return any(secret in text for secret in _secrets)


def scrub(text: str) -> str:
    """`text` with URL query strings dropped and every registered secret masked."""
    text = _QUERY.sub("", text)
    for secret in _secrets:
        text = text.replace(secret, "***")
    return text


def strip_query(url: str) -> str:
    """A URL without its query string, for logs and messages (signatures live there)."""
    return scrub(url)


def cap(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending in `…` when it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clean(text: str, limit: int = TEXT_CHARS) -> str:
    """A remote's text as wansync may store or log it: scrubbed, then capped."""
    return cap(scrub(text), limit)


def clean_tree(value: Any, keep: tuple[str, ...] = (), limit: int = TEXT_CHARS) -> Any:
    """A copy of a JSON value with every string (keys too) `clean`ed; top-level `keep`
    keys are copied as they are (`output.video_url`: the signed URL the download needs).

    Iterative: the value comes from the remote (already depth-bounded when parsed).
    """
    holder: list[Any] = [value]
    stack: list[tuple[Any, Any, bool]] = [(holder, 0, True)]
    while stack:
        parent, key, top = stack.pop()
        node = parent[key]
        if isinstance(node, str):
            parent[key] = clean(node, limit)
        elif isinstance(node, dict):
            copy = {clean(str(k), CODE_CHARS): v for k, v in node.items()}
            parent[key] = copy
            stack.extend((copy, k, False) for k in copy if not (top and k in keep))
        elif isinstance(node, list):
            copy_list = list(node)
            parent[key] = copy_list
            stack.extend((copy_list, i, False) for i in range(len(copy_list)))
    return holder[0]


def visible(text: str, keep: str = "") -> str:
    """`text` safe to show on a terminal: every character that is not printable — ESC and
    the other C0 and C1 controls, DEL, a newline, bidi overrides and isolates, zero-width
    and other format characters, line separators, lone surrogates — written as Python
    escapes it (`\\x1b`, `\\n`, `\\u202e`), so it is seen, never acted on. `keep`: characters
    to pass as they are (`"\\n"` for a traceback of several lines).

    File names, task files, sidecars and the API's answers are outside strings: whatever
    shows them to a person (the console log, a command's message, `status`) passes them
    through this first. JSON lines need nothing: `json.dumps` escapes them already.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else _escaped(c) for c in text)


def _escaped(char: str) -> str:
    code = ord(char)
    if char in "\n\r\t":
        return repr(char)[1:-1]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _visible_tree(value: Any, keep: str = "") -> Any:
    if isinstance(value, str):
        return visible(value, keep)
    if isinstance(value, dict):
        return {visible(str(k)): _visible_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_visible_tree(v) for v in value)
    return value


def shown_on_a_terminal(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor for the console format: every value `visible` (a traceback keeps
    its line breaks), so a file name holding ESC or U+202E cannot drive the terminal."""
    return {
        visible(str(k)): _visible_tree(v, "\n" if k == "exception" else "")
        for k, v in event_dict.items()
    }


def _scrub_value(value: Any, limit: int = TEXT_CHARS) -> Any:
    if isinstance(value, str):
        return clean(value, limit)
    if isinstance(value, dict):
        return {k: _scrub_value(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(v, limit) for v in value]
    return value


def redact(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: scrub and cap every value of the event (and exceptions)."""
    return {
        k: _scrub_value(v, TRACEBACK_CHARS if k == "exception" else _LIMITS.get(k, TEXT_CHARS))
        for k, v in event_dict.items()
    }


def _drop_benign(record: logging.LogRecord) -> bool:
    """watchdog logs an error when its emitter is stopped on shutdown; it means nothing."""
    return not (record.name.startswith("watchdog") and "thread is inactive" in record.msg)


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging to `stream` (stderr) in one format, one event a line."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        final: list[Any] = [
            structlog.processors.dict_tracebacks,
            redact,
            structlog.processors.JSONRenderer(),
        ]
    else:
        final = [
            structlog.processors.format_exc_info,
            redact,
            shown_on_a_terminal,
            structlog.dev.ConsoleRenderer(colors=stream.isatty()),
        ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(_drop_benign)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # urllib3 and watchdog chatter at debug would drown the daemon's own events.
    for noisy in ("urllib3", "watchdog"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def set_level(level: str) -> None:
    """Change the level at run time (SIGHUP reload)."""
    logging.getLogger().setLevel(level.upper())


def enabled(name: str) -> Callable[[str], bool]:
    """Whether `name`'s logger writes a line at a level (`"debug"`…), as of now: the
    stdlib's own cached check, so it follows a reload's `set_level` at once. When
    nothing filters by level (structlog configured otherwise, as a test's capture is),
    every line is made."""
    stdlib = logging.getLogger(name)

    def check(level: str) -> bool:
        if structlog.stdlib.filter_by_level not in structlog.get_config()["processors"]:
            return True
        return stdlib.isEnabledFor(logging.getLevelName(level.upper()))

    return check


def get(name: str = "wansync") -> Any:
    return structlog.get_logger(name)
