"""YAML configuration → a frozen `Config`, with errors that name the key by its dotted path.

One table (`SCHEMA`) holds every key, its default and its parser, so validation,
defaults and the documentation cannot drift apart.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from wansync.core.errors import ConfigError
from wansync.core.inprogress import UNKNOWN, Limits
from wansync.core.listpoll import LIST_INTERVAL

CONFIG_ENV = "WANSYNC_CONFIG"
KEY_ENV = "DASHSCOPE_API_KEY"
CREDENTIAL_NAME = "dashscope_api_key"
SEARCH_PATH = ("./wansync.yaml", "/etc/wansync/config.yaml")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number (`0.2`, `15`) or a string (`15s`, `10m`, `24h`); always > 0."""
    if isinstance(value, bool):
        raise ValueError("must be a duration (seconds, or like 15s, 10m, 24h)")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration (seconds, or like 15s, 10m, 24h)")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError("must be greater than 0")
    return seconds


MIN_LIST_INTERVAL = 0.1  # seconds; the list keeps to its share of the rate whatever this says


def _list_interval(value: Any) -> float | None:
    """`poll.list_interval`: a duration of at least MIN_LIST_INTERVAL, or null (the list off)."""
    if value is None:
        return None
    seconds = parse_duration(value)
    if seconds < MIN_LIST_INTERVAL:
        raise ValueError(f"must be at least {MIN_LIST_INTERVAL:g} s, or null to turn the list off")
    return seconds


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{value!r} is not a whole number >= 1")
    return value


class SubKeyError(ValueError):
    """A problem with one entry of a mapping value: named `key.sub` in the message."""

    def __init__(self, sub: str, problem: str) -> None:
        super().__init__(problem)
        self.sub = sub


_MODEL_PATTERN = re.compile(r"[A-Za-z0-9*?\[\]._-]{1,64}")


def _in_progress(value: Any) -> Limits:
    """A whole number (every task counts against it), or model patterns to limits in the
    order given: `{"wan2.2-s2v*": 1, "*": 5}` (see core/inprogress.py)."""
    if not isinstance(value, dict):
        try:
            return ((UNKNOWN, _positive_int(value)),)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a whole number >= 1, nor a mapping of model patterns to "
                "limits like {'wan2.2-s2v*': 1, '*': 5}"
            ) from None
    if not value:
        raise ValueError("an empty mapping; give model patterns and their limits")
    limits: dict[str, int] = {}
    for pattern, limit in value.items():
        sub = str(pattern)
        if not isinstance(pattern, str) or not _MODEL_PATTERN.fullmatch(pattern):
            raise SubKeyError(sub, f"{pattern!r} is not a model pattern like wan2.2-s2v* or *")
        if pattern.lower() in limits:
            raise SubKeyError(sub, "given twice (patterns match without case)")
        if shadow := next((p for p in limits if p.strip("*") == ""), None):
            raise SubKeyError(
                sub, f"comes after {shadow!r}, which every model matches first; put it before"
            )
        try:
            limits[pattern.lower()] = _positive_int(limit)
        except ValueError as exc:
            raise SubKeyError(sub, str(exc)) from None
    return tuple(limits.items())


def _positive_rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{value!r} is not a number > 0")
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


def _path(value: Any) -> Path:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ValueError(f"{value!r} is not a folder path")
    return Path(os.path.expanduser(value))


def _optional_path(value: Any) -> Path | None:
    return None if value is None else _path(value)


API_PATH = "/api/v1"  # what every request path starts with (api.py)


def _base_url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query string or fragment")
    # The SDK's docs give `…/api/v1`; wansync adds that itself, so a copied one is dropped.
    return value.rstrip("/").removesuffix(API_PATH).rstrip("/")


def _host_patterns(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("must be a list of host name patterns like '*.aliyuncs.com'")
    return tuple(v.lower() for v in value)


def _model_name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value):
        raise ValueError(f"{value!r} is not a model name like wan2.7-i2v")
    return value


def _choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return str(value)

    return parse


def _command(value: Any) -> str:
    """A hook's command line: split like a shell would, run without one."""
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ValueError(f"{value!r} is not a command line")
    try:
        shlex.split(value)
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        raise ValueError(f"{value!r} is not a command line: {exc}") from None
    return value


def resolve_program(command: str, base: Path) -> str:
    """A hook's command with its program made absolute against `base` (the config file's
    folder), as the folders and `api.key_file` are: `./myhook.sh` is the one beside the
    config, wherever the daemon runs. A bare name (`notify`) keeps its `PATH` lookup, and
    the arguments are left as written."""
    words = shlex.split(command)
    program = os.path.expanduser(words[0])
    if "/" not in program:
        return command
    if not os.path.isabs(program):
        program = str((base / program).absolute())
    return shlex.join([program, *words[1:]])


_HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9-]{1,63})*")


def _listen(value: Any) -> tuple[str, int]:
    """`HOST:PORT` (`127.0.0.1:9464`, `localhost:9464`, `[::1]:9464`) → (host, port)."""
    text = value if isinstance(value, str) else ""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT like 127.0.0.1:9464 (port 1-65535)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{value!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, like [::1]:9464")
    elif not _HOST_NAME.fullmatch(host):
        raise ValueError(f"{value!r}: {host!r} is not a host name or address")
    return host, int(port)


# dotted key -> (default, parser). The YAML nesting follows the dots.
SCHEMA: dict[str, tuple[Any, Callable[[Any], Any]]] = {
    "inbox": ("/var/lib/wansync/inbox", _path),
    "outbox": ("/var/lib/wansync/outbox", _path),
    "failed": ("/var/lib/wansync/failed", _path),
    "api.base_url": ("https://dashscope-intl.aliyuncs.com", _base_url),
    "api.key_file": (None, _optional_path),
    "api.timeout": (10, parse_duration),
    "poll.interval": (15, parse_duration),
    "poll.max_per_second": (10, _positive_rate),
    "poll.give_up_after": (86400, parse_duration),
    "poll.list_interval": (LIST_INTERVAL, _list_interval),
    "download.concurrency": (4, _positive_int),
    "download.allowed_hosts": (["*.aliyuncs.com"], _host_patterns),
    "download.max_bytes": (2 * 1024**3, _positive_int),
    "download.require_https": (True, _bool),
    "download.low_speed_limit": (1024, _positive_rate),
    "download.low_speed_time": (60, parse_duration),
    "submit.model": ("wan2.7-i2v", _model_name),
    "submit.max_in_progress": (5, _in_progress),
    "submit.max_per_second": (1, _positive_rate),
    "submit.max_upload_bytes": (100 * 1024**2, _positive_int),
    "submit.search_for": (30, parse_duration),
    "log.format": ("auto", _choice("auto", "json", "console")),
    "log.level": ("info", _choice("debug", "info", "warning", "error")),
    "watch.rescan_interval": (10, parse_duration),
    "watch.polling": (False, _bool),
    "hooks.on_success": (None, _command),
    "hooks.on_failure": (None, _command),
    "hooks.timeout": (60, parse_duration),
    "hooks.attempts": (3, _positive_int),
    "metrics.listen": (None, _listen),
}


@dataclass(frozen=True)
class ApiConfig:
    base_url: str
    key_file: Path | None
    timeout: float


@dataclass(frozen=True)
class PollConfig:
    interval: float
    max_per_second: float
    give_up_after: float
    list_interval: float | None  # None: no task list passes (docs/performance.md)


@dataclass(frozen=True)
class DownloadConfig:
    concurrency: int
    allowed_hosts: tuple[str, ...]
    max_bytes: int
    require_https: bool
    low_speed_limit: float  # bytes/s; slower than this for low_speed_time: cut, resume later
    low_speed_time: float


@dataclass(frozen=True)
class SubmitConfig:
    model: str
    max_in_progress: Limits  # (pattern, limit) pairs; a number N is (("*", N),)
    max_per_second: float
    max_upload_bytes: int
    search_for: float


@dataclass(frozen=True)
class LogConfig:
    format: str
    level: str


@dataclass(frozen=True)
class WatchConfig:
    rescan_interval: float
    polling: bool


@dataclass(frozen=True)
class HooksConfig:
    on_success: str | None
    on_failure: str | None
    timeout: float
    attempts: int


@dataclass(frozen=True)
class MetricsConfig:
    listen: tuple[str, int] | None


@dataclass(frozen=True)
class Config:
    """Everything the daemon needs to know, validated; `source` is the file it came from."""

    inbox: Path
    outbox: Path
    failed: Path
    api: ApiConfig
    poll: PollConfig
    download: DownloadConfig
    submit: SubmitConfig
    log: LogConfig
    watch: WatchConfig
    hooks: HooksConfig
    metrics: MetricsConfig
    source: Path | None = None


def _flatten(data: Any, prefix: str, out: dict[str, Any]) -> None:
    sections = {k.split(".")[0] for k in SCHEMA if "." in k}
    if not isinstance(data, dict):
        where = prefix.rstrip(".") or "config"
        raise ConfigError(f"{where}: must be a mapping of keys, not {type(data).__name__}")
    for key, value in data.items():
        dotted = f"{prefix}{key}" if isinstance(key, str) and key.strip() else f"{prefix}{key!r}"
        if not isinstance(key, str):
            raise ConfigError(f"{dotted}: keys must be strings")
        if not prefix and key in sections:
            if value is None:
                continue
            _flatten(value, f"{dotted}.", out)
        elif dotted in SCHEMA:
            out[dotted] = value
        else:
            raise ConfigError(f"{dotted}: unknown key")


def from_mapping(data: Any, source: Path | None = None) -> Config:
    """Validate a parsed YAML document; relative folders resolve against the file's folder."""
    given: dict[str, Any] = {}
    if data is not None:
        _flatten(data, "", given)
    values: dict[str, Any] = {}
    for key, (default, parse) in SCHEMA.items():
        raw = given.get(key, default)
        try:
            values[key] = None if raw is None and default is None else parse(raw)
        except SubKeyError as exc:
            raise ConfigError(f"{key}.{exc.sub}: {exc}") from None
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    base = source.parent if source else Path.cwd()
    for key in ("inbox", "outbox", "failed", "api.key_file"):
        if values[key] is not None and not values[key].is_absolute():
            values[key] = (base / values[key]).absolute()
    for key in ("hooks.on_success", "hooks.on_failure"):
        if values[key] is not None:
            values[key] = resolve_program(values[key], base)

    def section(name: str, cls: type) -> Any:
        fields = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith(name + ".")}
        return cls(**fields)

    return Config(
        inbox=values["inbox"],
        outbox=values["outbox"],
        failed=values["failed"],
        api=section("api", ApiConfig),
        poll=section("poll", PollConfig),
        download=section("download", DownloadConfig),
        submit=section("submit", SubmitConfig),
        log=section("log", LogConfig),
        watch=section("watch", WatchConfig),
        hooks=section("hooks", HooksConfig),
        metrics=section("metrics", MetricsConfig),
        source=source,
    )


def find_config(explicit: str | None) -> Path | None:
    """`-c FILE`, else `$WANSYNC_CONFIG`, else the first of the search path that exists."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get(CONFIG_ENV):
        return Path(env)
    for candidate in SEARCH_PATH:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def looked_for() -> str:
    """Where a config file was looked for, for a message: each place by its real path."""
    try:
        here = str(Path.cwd())
    except OSError:  # the current folder was removed
        here = "the current folder"
    places = [f"${CONFIG_ENV} is not set"]
    for candidate in SEARCH_PATH:
        path = Path(candidate)
        places.append(f"no {path.name} in {here}" if not path.is_absolute() else f"no {path}")
    return f"no config file found ({'; '.join(places)})"


def load(explicit: str | None = None, required: bool = True) -> Config:
    """Read and validate the configuration. With no file anywhere, a command that writes
    into the folders refuses (`required`): the defaults are the service's folders, and
    work dropped there from the wrong folder is lost to the daemon the user meant
    (docs/commands.md, "Config file"); `status` only looks, so it shows the defaults."""
    path = find_config(explicit)
    if path is None:
        if required:
            defaults = ", ".join(str(SCHEMA[key][0]) for key in ("inbox", "outbox", "failed"))
            raise ConfigError(
                f"{looked_for()}: nothing done. Run wansync in the folder of your wansync.yaml, "
                f"or give -c FILE (or set {CONFIG_ENV}=FILE); a file that sets nothing means "
                f"every default (the folders {defaults})"
            )
        return from_mapping(None)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    return from_mapping(data, source=path.absolute())


KEY_CHARS = re.compile(r"\A[\x21-\x7e]+\Z")  # what an HTTP header value can carry as is


def _checked_key(key: str, where: str) -> str:
    """A key goes into an `Authorization` header: one line of printable ASCII. A key
    file of two lines (a comment, a key pasted twice) would otherwise fail in the HTTP
    client with the whole header, key included, in its message; this one never shows it."""
    if not KEY_CHARS.match(key):
        raise ConfigError(
            f"{where}: the API key must be one line of printable ASCII with no spaces "
            f"({len(key)} characters, {key.count(chr(10)) + 1} lines; the key is not shown)"
        )
    return key


def load_api_key(cfg: Config) -> str:
    """The key from `api.key_file`, else `$DASHSCOPE_API_KEY`, else the systemd credential."""
    if cfg.api.key_file is not None:
        try:
            key = cfg.api.key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"api.key_file: cannot read {cfg.api.key_file}: {exc.strerror}"
            ) from None
        if not key:
            raise ConfigError(f"api.key_file: {cfg.api.key_file} is empty")
        return _checked_key(key, f"api.key_file: {cfg.api.key_file}")
    if key := os.environ.get(KEY_ENV, "").strip():
        return _checked_key(key, f"${KEY_ENV}")
    if cred_dir := os.environ.get("CREDENTIALS_DIRECTORY"):
        cred = Path(cred_dir) / CREDENTIAL_NAME
        if cred.is_file():
            try:
                key = cred.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read the systemd credential {cred}: {exc.strerror}"
                ) from None
            if key:
                return _checked_key(key, f"the systemd credential {cred}")
    # No key file is involved: name every place that was looked at, not `api.key_file`.
    raise ConfigError(
        f"no API key: set api.key_file, ${KEY_ENV}, "
        f"or (under systemd) the {CREDENTIAL_NAME} credential"
    )


def key_file_ids(cfg: Config) -> frozenset[tuple[int, int]]:
    """(device, inode) of the files the API key is read from (`api.key_file`, the systemd
    credential), as they are now: a job may never upload one, whatever it is named
    (joblocal.py). A file that cannot be looked at is not among them."""
    paths = [cfg.api.key_file]
    if cred_dir := os.environ.get("CREDENTIALS_DIRECTORY"):
        paths.append(Path(cred_dir) / CREDENTIAL_NAME)
    found: set[tuple[int, int]] = set()
    for path in paths:
        if path is not None:
            with contextlib.suppress(OSError):
                st = path.stat()
                found.add((st.st_dev, st.st_ino))
    return frozenset(found)


class Live:
    """The one current config, replaced whole by a reload (SIGHUP).

    Everything that needs a setting reads `live.cfg` when it uses it and keeps no copy,
    so a reload applies everywhere at once (the download's redirect hops included).
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def download(self) -> DownloadConfig:
        return self.cfg.download
