"""Configuration: defaults, durations, and errors that name the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wansync import config
from wansync.core.errors import ConfigError


def test_empty_file_gives_every_default():
    """An empty document means the defaults of docs/configuration.md."""
    cfg = config.from_mapping(None)
    assert cfg.api.base_url == "https://dashscope-intl.aliyuncs.com"
    assert cfg.poll.interval == 15 and cfg.poll.max_per_second == 10
    assert cfg.poll.give_up_after == 86400
    assert cfg.download.allowed_hosts == ("*.aliyuncs.com",)
    assert cfg.download.max_bytes == 2147483648 and cfg.download.require_https is True
    assert cfg.inbox == Path("/var/lib/wansync/inbox")


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [(15, 15.0), (0.2, 0.2), ("15s", 15.0), ("10m", 600.0), ("24h", 86400.0), ("250ms", 0.25)],
)
def test_durations(raw, seconds):
    """Numbers are seconds; strings may carry a unit."""
    assert config.from_mapping({"poll": {"interval": raw}}).poll.interval == seconds


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"poll": {"intervall": 5}}, "poll.intervall: unknown key"),
        ({"pol": {"interval": 5}}, "pol: unknown key"),
        ({"poll": {"interval": 0}}, "poll.interval: must be greater than 0"),
        ({"poll": {"interval": "soon"}}, "poll.interval: 'soon' is not a duration"),
        ({"poll": {"interval": True}}, "poll.interval:"),
        ({"download": {"concurrency": 0}}, "download.concurrency:"),
        ({"download": {"allowed_hosts": "*.x.com"}}, "download.allowed_hosts:"),
        ({"download": {"require_https": "yes"}}, "download.require_https:"),
        ({"api": {"base_url": "ftp://x"}}, "api.base_url:"),
        ({"log": {"format": "xml"}}, "log.format:"),
        ({"api": 5}, "api: must be a mapping"),
        ([1, 2], "config: must be a mapping"),
    ],
)
def test_bad_values_name_the_key(doc, message):
    """Every rejection starts with the dotted key and says what is wrong."""
    with pytest.raises(ConfigError) as info:
        config.from_mapping(doc)
    assert str(info.value).startswith(message)


def test_relative_folders_resolve_against_the_config_file(tmp_path):
    """`inbox: in` in /x/wansync.yaml means /x/in, wherever the daemon was started."""
    path = tmp_path / "wansync.yaml"
    path.write_text("inbox: in\noutbox: out\nfailed: /abs/failed\n")
    cfg = config.load(str(path))
    assert cfg.inbox == tmp_path / "in" and cfg.outbox == tmp_path / "out"
    assert cfg.failed == Path("/abs/failed")


def test_invalid_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "wansync.yaml"
    path.write_text("poll: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(str(path))


def test_config_search_order(tmp_path, monkeypatch):
    """-c wins over $WANSYNC_CONFIG, which wins over ./wansync.yaml."""
    (tmp_path / "wansync.yaml").write_text("poll: {interval: 1}\n")
    (tmp_path / "env.yaml").write_text("poll: {interval: 2}\n")
    (tmp_path / "flag.yaml").write_text("poll: {interval: 3}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANSYNC_CONFIG", raising=False)
    assert config.load(None).poll.interval == 1
    monkeypatch.setenv("WANSYNC_CONFIG", str(tmp_path / "env.yaml"))
    assert config.load(None).poll.interval == 2
    assert config.load(str(tmp_path / "flag.yaml")).poll.interval == 3


def test_key_sources_in_order(tmp_path, monkeypatch):
    """api.key_file, then $DASHSCOPE_API_KEY, then $CREDENTIALS_DIRECTORY/dashscope_api_key."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "dashscope_api_key").write_text("from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    cfg = config.from_mapping(None)
    assert config.load_api_key(cfg) == "from-credential"
    monkeypatch.setenv("DASHSCOPE_API_KEY", "from-env")
    assert config.load_api_key(cfg) == "from-env"
    key_file = tmp_path / "key"
    key_file.write_text("  from-file\n")
    cfg = config.from_mapping({"api": {"key_file": str(key_file)}})
    assert config.load_api_key(cfg) == "from-file"


def test_missing_key_is_a_config_error(monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match="no API key"):
        config.load_api_key(config.from_mapping(None))


def test_an_empty_key_is_named_visibly():
    """Found by hypothesis: an empty key once gave the message ': unknown key'."""
    with pytest.raises(ConfigError, match=r"^'': unknown key"):
        config.from_mapping({"": None})
    with pytest.raises(ConfigError, match=r"^poll\.'': unknown key"):
        config.from_mapping({"poll": {"": 1}})


def test_a_key_of_two_lines_is_refused_without_showing_it(tmp_path: Path) -> None:
    """A key file holding a comment and the key (or the key twice) is one clear line and
    exit 2 from `check`, never a traceback holding the key (it used to reach the HTTP
    client, whose error printed the whole Authorization header)."""
    import subprocess
    import sys

    key_file = tmp_path / "key"
    key_file.write_text("# my key\nsk-CANARYKEYFILE2\n")
    key_file.chmod(0o600)
    cfg = tmp_path / "wansync.yaml"
    cfg.write_text(f"inbox: {tmp_path}/in\noutbox: {tmp_path}/out\nfailed: {tmp_path}/failed\n")
    done = subprocess.run(
        [sys.executable, "-m", "wansync", "check", "-c", str(cfg), "--key-file", str(key_file)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"},
    )
    assert done.returncode == 2, done
    assert "CANARY" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "one line of printable ASCII" in done.stdout + done.stderr
