"""What a remote (or a hand-edited file) sends is parsed without raising, scrubbed, capped.

In-process checks of the attacker's findings (findings 1, 4-7, 11-14 of the 09:30 report):
each pure decision with its hostile values; the daemon-level promises are in
`test_hostile_remote.py`.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.trickle import TrickleApi
from tests.videohost import SAMPLE
from wansync import log
from wansync.config import DownloadConfig
from wansync.core.errors import JobFileError, RemoteUnavailable, TaskFileError
from wansync.files import bounded, jobfile, names, sidecar, taskfile
from wansync.remote.api import TaskApi, api_time, header_int, parse_retry_after
from wansync.remote.download import Downloader
from wansync.remote.urlcheck import url_expires

KEY = "sk-parsefix-secret-4711"
HOSTILE_TIMES = [float("nan"), float("inf"), float("-inf"), 1e20, -1e20, 10**400, -(10**400)]


# -- 1: a URL's Expires, and any time, never raises ---------------------------------------
@pytest.mark.parametrize(
    "value", ["nan", "inf", "-inf", "1e20", "-1e20", "9" * 400, "0", "-1", "²", "١٢", "", "x"]
)
def test_url_expires_is_none_unless_a_plausible_unix_time(value):
    """Expires=nan|inf|1e20|-1e20|400 digits|non-ASCII is no deadline at all (None)."""
    assert url_expires(f"https://h/v.mp4?Expires={value}&Signature=s") is None


def test_url_expires_reads_a_real_deadline():
    """A real OSS deadline is read as it is."""
    assert url_expires("https://h/v.mp4?Expires=1764400000&Signature=s") == 1764400000.0


@pytest.mark.parametrize("ts", HOSTILE_TIMES)
def test_utc_iso_and_api_time_never_raise(ts):
    """Any number gives a date string (clamped), never ValueError/OverflowError."""
    assert sidecar.utc_iso(ts).endswith("Z")
    assert len(api_time(ts, compact=True)) == 14
    assert api_time(ts)[:4].isdigit()


# -- 7: a time read back from a sidecar ---------------------------------------------------
def test_sidecar_times_outside_a_plausible_window_are_absent_or_clamped():
    """Year 9999 is absent; 40 days ago is 30 days ago; a recent time is kept."""
    now = 1_764_400_000.0
    assert sidecar.read_time("9999-12-31T23:59:59.000Z", now) is None
    assert sidecar.read_time(sidecar.utc_iso(now + 3600), now) is None
    assert sidecar.read_time(sidecar.utc_iso(now - 40 * 86400), now) == now - 30 * 86400
    assert sidecar.read_time(sidecar.utc_iso(now - 60), now) == pytest.approx(now - 60)
    assert sidecar.read_time("garbage", now) is None


# -- 4: the remote's strings in sidecars and logs ------------------------------------------
def _answer(body: dict[str, Any]) -> Any:
    class Resp:
        status = 200
        data = json.dumps(body).encode()

    return TaskApi._parse_report(Resp.data, body["output"]["task_id"])


def test_remote_strings_are_scrubbed_and_capped_except_the_video_url():
    """A FAILED answer echoing the key and ?Signature= (and 900 KB) is cleaned; the URL kept."""
    log.add_secret(KEY)
    url = "https://h/v.mp4?Expires=1&Signature=abc"
    report = _answer(
        {
            "request_id": f"r-{KEY}",
            "output": {
                "task_id": "echo-task-0001",
                "task_status": "FAILED",
                "code": f"Bad{KEY}?Signature=abc&x=1 " + "C" * 900_000,
                "message": f"see https://h/x?Signature=zz {KEY}" + "m" * 10_000,
                "video_url": url,
                "nested": [{f"k{KEY}": "y" * 10_000}],
            },
            "usage": {"note": f"{KEY}?Signature=q"},
        }
    )
    text = json.dumps([report.output, report.usage, report.request_id])
    assert KEY not in text.replace(url, "")
    assert "Signature=abc&" not in text and "Signature=zz" not in text
    assert "Signature=q" not in text
    assert report.output["video_url"] == url
    assert len(report.output["code"]) <= log.CODE_CHARS
    assert len(report.output["message"]) <= log.MESSAGE_CHARS
    assert report.output["code"].endswith("…")
    assert len(report.output["nested"][0]["k***"]) <= log.TEXT_CHARS


def test_sidecar_error_scrubs_and_caps_code_and_message():
    """Whoever builds an error object, its code and message hold no key, no query, no 900 KB."""
    log.add_secret(KEY)
    record = sidecar.new("t", None, {}, 0.0)
    record.error = sidecar.error(f"Invalid.{KEY}?Signature=a " + "x" * 900_000, f"m {KEY}", False)
    error = sidecar.to_json(record)["error"]
    assert KEY not in json.dumps(error) and "Signature" not in json.dumps(error)
    assert len(error["code"]) <= log.CODE_CHARS and error["code"].endswith("…")


def test_log_lines_are_capped():
    """A 900 KB value is at most 8,000 characters in a log line (code: 200)."""
    event = log.redact(None, "info", {"event": "x", "code": "c" * 900_000, "detail": "d" * 900_000})
    assert len(event["code"]) == log.CODE_CHARS and len(event["detail"]) == log.TEXT_CHARS


# -- 5: the long-name hash ----------------------------------------------------------------
# Two 206-byte names found by a birthday search (about 36,000 sha256s, a fraction of a
# second) whose stems were the same under the old rule: 190 bytes, "~", 32 bits of hash.
COLLIDING = ("clip-" + "x" * 195 + "-32772", "clip-" + "x" * 195 + "-36307")


def _old_stem(name: str) -> str:
    """`names.stem` as it was before the hash grew to 96 bits (the rule the pair beat)."""
    raw = name.encode()
    return f"{raw[:190].decode()}~{hashlib.sha256(raw).hexdigest()[:8]}"


def test_colliding_long_names_now_get_different_stems():
    """The attacker's pair (same 32-bit stem) differs now; the hash is 96 bits."""
    a, b = COLLIDING
    assert a != b and _old_stem(a) == _old_stem(b)  # the pair truly collided before
    assert names.stem(a) != names.stem(b)
    assert len(names.stem(a).rsplit("~", 1)[1]) == 24


@pytest.mark.parametrize("size", [201, 240, 250])
def test_every_derived_name_of_a_long_name_still_fits(size):
    """With the longer hash every derived name is still within 255 bytes."""
    for name in ("é" * (size // 2) + "x" * (size % 2), "x" * size):
        names.check(name)
        assert all(len(n.encode()) <= names.NAME_MAX for n in names.derived(name).values())


# -- 6: an answer that trickles -----------------------------------------------------------
def test_a_trickling_answer_is_cut_at_the_deadline():
    """1 byte/s under a 0.5 s read timeout: RemoteUnavailable by 2 x timeout, not days."""
    with TrickleApi(gap=0.2) as server:
        api = TaskApi(server.url, KEY, timeout=0.5)
        result: list[Any] = []

        def poll() -> None:
            try:
                api.fetch("slowtask0001")
            except Exception as exc:  # the test looks at what it was
                result.append(exc)

        started = time.monotonic()
        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        thread.join(10)
        took = time.monotonic() - started
    assert result, "the poll was still reading the trickle after 10 s"
    assert isinstance(result[0], RemoteUnavailable) and result[0].code == "AnswerTooSlow"
    assert took < 3.0


# -- 12: header numbers are ASCII ---------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "value"), [("²", None), ("١٢", None), (" 12 ", 12), ("9" * 30, None)]
)
def test_header_numbers_are_ascii_digits_only(text, value):
    """`²` and Arabic-Indic digits are not HTTP numbers."""
    assert header_int(text) == value


def test_retry_after_in_non_ascii_digits_is_no_header():
    """`Retry-After: ١٢` is unreadable (None), not 12 s."""
    assert parse_retry_after("١٢") is None


class _SuperscriptLength(http.server.BaseHTTPRequestHandler):
    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", "²")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(SAMPLE)


def test_content_length_in_a_superscript_digit_downloads_to_the_end(tmp_path):
    """`Content-Length: ²` is no length (read to the end), not an unexpected ValueError."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SuperscriptLength)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = DownloadConfig(1, ("127.0.0.1",), 10**9, False, 1.0, 30.0)
        fetched = Downloader(cfg, 5.0, threading.Event()).fetch(
            f"http://127.0.0.1:{server.server_address[1]}/v.mp4", tmp_path / ".v.mp4.part", None
        )
    finally:
        server.shutdown()
        server.server_close()
    assert fetched.bytes == len(SAMPLE)


# -- 13: a task id with a newline after it ------------------------------------------------
def test_task_id_with_a_trailing_newline_is_refused():
    """`{"task_id":"duptask00001\\n"}` is InvalidTaskFile, not a second id for one task."""
    with pytest.raises(TaskFileError, match="not a valid task id"):
        taskfile.parse(b'{"task_id":"duptask00001\\n"}')
    assert not sidecar.SAFE_ID.match("duptask00001\n")


# -- 14: a key given twice ----------------------------------------------------------------
def test_task_json_with_a_key_twice_is_refused():
    """JSON `task_id` twice is the file's error naming the key, not last-one-wins."""
    with pytest.raises(TaskFileError, match="'task_id' is given twice"):
        taskfile.parse(b'{"task_id":"aaaaaaaa1","task_id":"bbbbbbbb2"}')


@pytest.mark.parametrize(
    "text",
    [
        "prompt: a\nprompt: b\nmedia: [{type: first_frame, url: 'https://e/x.png'}]\n",
        '{"prompt": "a", "prompt": "b", "media": [{"type": "first_frame", "url": "https://e/x.png"}]}',
    ],
)
def test_job_with_a_key_twice_is_refused(tmp_path, text):
    """YAML or JSON `prompt` twice is InvalidJobFile naming the key."""
    with pytest.raises(JobFileError, match="'prompt' is given twice"):
        jobfile.parse(text.encode(), "wan2.7-i2v", tmp_path, 10**6)


def test_yaml_merge_keys_may_still_be_overridden():
    """`<<: *base` then the same key is YAML's override, not a duplicate."""
    assert bounded.yaml_loads("a: &x {k: 1}\nb:\n  <<: *x\n  k: 2\n") == {
        "a": {"k": 1},
        "b": {"k": 2},
    }


# -- 3 and 11: a job's local file, a task or job file with another name -------------------
def _job(path: str) -> bytes:
    return f"prompt: hi\nmedia:\n  - {{type: first_frame, path: '{path}'}}\n".encode()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "OUTSIDE"
    folder.mkdir()
    (folder / "private.png").write_bytes(b"\x89PNG\r\n\x1a\nSECRET")
    (tmp_path / "inbox").mkdir()
    return folder


def test_local_file_through_a_linked_folder_is_refused(tmp_path, outside):
    """`d/private.png` with `d` a link to a folder elsewhere: InvalidJobFile, a symbolic link."""
    inbox = tmp_path / "inbox"
    os.symlink(outside, inbox / "d")
    with pytest.raises(JobFileError, match=r"media\[0\]\.path: .*'d', a symbolic link"):
        jobfile.parse(_job("d/private.png"), "wan2.7-i2v", inbox, 10**6)
    os.symlink(outside, tmp_path / "linked")
    with pytest.raises(JobFileError, match="a symbolic link"):
        jobfile.parse(_job(f"{tmp_path}/linked/private.png"), "wan2.7-i2v", inbox, 10**6)


def test_local_file_path_with_dotdot_is_refused(tmp_path, outside):
    """`../OUTSIDE/private.png`: InvalidJobFile, '..' is not allowed."""
    with pytest.raises(JobFileError, match=r"media\[0\]\.path: .*'\.\.' is not allowed"):
        jobfile.parse(_job("../OUTSIDE/private.png"), "wan2.7-i2v", tmp_path / "inbox", 10**6)


def test_local_file_plain_relative_and_absolute_paths_are_read(tmp_path, outside):
    """A file in a real sub-folder of the inbox, or by an absolute path, is accepted."""
    inbox = tmp_path / "inbox"
    (inbox / "pics").mkdir()
    (inbox / "pics" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nA")
    spec = jobfile.parse(_job("./pics/a.png"), "wan2.7-i2v", inbox, 10**6)
    assert spec.uploads[0].parts == ("pics", "a.png") and spec.uploads[0].root == inbox
    spec = jobfile.parse(_job(str(outside / "private.png")), "wan2.7-i2v", inbox, 10**6)
    assert spec.uploads[0].path == outside / "private.png"


def test_hard_links_are_refused(tmp_path, outside):
    """A hard-linked .task, .job or local file is refused: 'a hard link; copy the file'."""
    inbox = tmp_path / "inbox"
    key = tmp_path / "keyfile"
    key.write_text("sk-abcdefghijklmnop\n")
    os.link(key, inbox / "k.task")
    with pytest.raises(TaskFileError, match="a hard link; copy the file instead"):
        taskfile.read(inbox / "k.task")
    job = tmp_path / "j.job"
    job.write_bytes(_job("p.png"))
    os.link(job, inbox / "j.job")
    with pytest.raises(JobFileError, match="a hard link"):
        jobfile.read(inbox / "j.job", "wan2.7-i2v", 10**6)
    os.link(outside / "private.png", inbox / "p.png")
    with pytest.raises(JobFileError, match=r"media\[0\]\.path: 'p.png' is a hard link"):
        jobfile.parse(_job("p.png"), "wan2.7-i2v", inbox, 10**6)
