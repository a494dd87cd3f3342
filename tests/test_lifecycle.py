"""The lifecycle table: every task status and outcome, decided in-process with `now` given."""

from __future__ import annotations

import dataclasses

import pytest

from wansync import config
from wansync.core import lifecycle
from wansync.core.errors import (
    AuthRejected,
    DownloadInterrupted,
    RateLimited,
    RemoteUnavailable,
    Stopping,
    TaskFailed,
    UrlRefused,
)
from wansync.core.filegroup import GroupDone
from wansync.core.lifecycle import (
    Fail,
    Ignore,
    Now,
    PauseForAuth,
    Policy,
    PollAt,
    Retry,
    StartDownload,
    Succeed,
)
from wansync.core.retry import AUTH_PAUSE_MIN
from wansync.core.shapes import FileUrl
from wansync.core.tracker import Task
from wansync.files import sidecar
from wansync.remote.api import TaskReport
from wansync.remote.download import Downloaded
from wansync.remote.urlcheck import check_url

NOW = Now(mono=1000.0, wall=1_800_000_000.0)
URL = "http://127.0.0.1/video/t1.mp4?Expires=1800003600&Signature=x"


def policy() -> Policy:
    cfg = config.from_mapping({"inbox": "/i", "outbox": "/o", "failed": "/f"})
    dl = dataclasses.replace(cfg.download, allowed_hosts=("127.0.0.1",), require_https=False)
    return Policy(2.0, 20.0, 3600.0, lambda url: check_url(url, dl))


def task(errors: int = 0, refused: str | None = None, age: float = 0.0) -> Task:
    data = sidecar.new("t", "task-1", {}, NOW.wall - age)
    return Task("t", data, errors_in_row=errors, refused_url=refused)


def report(status: str, **output: object) -> TaskReport:
    return TaskReport(status, "req", {"task_status": status, **output}, None)


STATUS_TABLE = [
    (report("PENDING"), PollAt),
    (report("RUNNING"), PollAt),
    (report("SUCCEEDED", video_url=URL), StartDownload),
    (report("SUCCEEDED"), Retry),
    (report("FAILED", code="DataInspectionFailed", message="no"), Fail),
    (report("FAILED"), Fail),
    (report("CANCELED"), Fail),
    (report("UNKNOWN"), Fail),
    (TaskFailed("InvalidParameter", "bad id"), Fail),
    (AuthRejected("HTTP 401", "InvalidApiKey"), PauseForAuth),
    (RateLimited("HTTP 429", 3.0), Retry),
    (RemoteUnavailable("HTTP 503"), Retry),
    (Stopping("bye"), Ignore),
]


@pytest.mark.parametrize(("outcome", "kind"), STATUS_TABLE)
def test_every_poll_outcome_has_one_decision(outcome, kind):
    """Each task status and each poll error maps to exactly one kind of decision."""
    decision = lifecycle.after_poll(task(), outcome, NOW.mono - 0.1, NOW, policy(), 2.0)
    assert isinstance(decision, kind)


def test_unfinished_polls_again_after_the_deferral():
    """PENDING/RUNNING: the next poll is `defer` seconds after the poll started."""
    decision = lifecycle.after_poll(task(), report("RUNNING"), 990.0, NOW, policy(), 7.0)
    assert decision == PollAt(997.0)


def test_failed_without_code_gets_a_generic_code():
    """FAILED without code or message still fails with a code and a readable message."""
    decision = lifecycle.after_poll(task(), report("FAILED"), 0, NOW, policy(), 2)
    assert decision == Fail("TaskFailed", "the task failed and the API gave no reason")


def test_failed_keeps_the_api_code():
    """FAILED with a code: the API's code and message are the task's."""
    out = report("FAILED", code="DataInspectionFailed", message="unsafe")
    assert lifecycle.after_poll(task(), out, 0, NOW, policy(), 2) == Fail(
        "DataInspectionFailed", "unsafe"
    )


def test_canceled_and_unknown_codes():
    """CANCELED → TaskCanceled, UNKNOWN → TaskNotFound."""
    p = policy()
    assert lifecycle.after_poll(task(), report("CANCELED"), 0, NOW, p, 2).code == "TaskCanceled"
    assert lifecycle.after_poll(task(), report("UNKNOWN"), 0, NOW, p, 2).code == "TaskNotFound"


def test_succeeded_with_a_host_not_allowed_fails():
    """A video URL outside download.allowed_hosts is never fetched."""
    out = report("SUCCEEDED", video_url="http://evil.example/v.mp4")
    decision = lifecycle.after_poll(task(), out, 0, NOW, policy(), 2)
    assert isinstance(decision, Fail) and decision.code == "DownloadRejected"


def test_succeeded_reads_the_urls_deadline():
    """SUCCEEDED: download, knowing when the signed URL expires."""
    out = report("SUCCEEDED", video_url=URL)
    assert lifecycle.after_poll(task(), out, 0, NOW, policy(), 2) == StartDownload(
        (FileUrl(URL, "video", "video_url"),), 1800003600.0
    )


def test_succeeded_with_the_refused_url_again_fails_as_expired():
    """The API hands back the URL storage already refused: it has expired."""
    out = report("SUCCEEDED", video_url=URL)
    decision = lifecycle.after_poll(task(refused=URL), out, 0, NOW, policy(), 2)
    assert isinstance(decision, Fail) and decision.code == "VideoUrlExpired"


def test_succeeded_without_url_backs_off():
    """SUCCEEDED without a video_url is a transient MalformedResponse with back-off."""
    decision = lifecycle.after_poll(task(errors=2), report("SUCCEEDED"), 0, NOW, policy(), 2)
    assert isinstance(decision, Retry)
    assert (decision.code, decision.errors_in_row, decision.delay) == ("MalformedResponse", 3, 8.0)
    assert decision.then == "poll" and decision.pause_until is None


def test_429_pauses_every_poll_for_retry_after():
    """A 429 holds the whole account for Retry-After, and this task backs off too."""
    decision = lifecycle.after_poll(task(), RateLimited("429", 5.0), 0, NOW, policy(), 2)
    assert isinstance(decision, Retry)
    assert decision.pause_until == NOW.mono + 5.0 and decision.at == NOW.mono + 5.0


def test_429_without_retry_after_pauses_one_second():
    """No Retry-After: the account waits one second."""
    decision = lifecycle.after_poll(task(), RateLimited("429", None), 0, NOW, policy(), 2)
    assert isinstance(decision, Retry) and decision.pause_until == NOW.mono + 1.0


def test_auth_rejection_pauses_everyone_and_fails_nothing():
    """401/403: pause at least AUTH_PAUSE_MIN; the task is kept."""
    decision = lifecycle.after_poll(
        task(), AuthRejected("401", "InvalidApiKey"), 0, NOW, policy(), 2
    )
    assert decision == PauseForAuth(
        "InvalidApiKey", "401", NOW.mono + AUTH_PAUSE_MIN, AUTH_PAUSE_MIN
    )


@pytest.mark.parametrize(
    ("paused", "outcome", "resumed"),
    [
        (True, report("RUNNING"), True),
        (True, RemoteUnavailable("503"), True),
        (True, AuthRejected("401"), False),
        (False, report("RUNNING"), False),
    ],
)
def test_the_probe_resumes_polling_unless_rejected_again(paused, outcome, resumed):
    """After an auth pause, any answer but another 401/403 resumes everyone."""
    assert lifecycle.auth_resumed(paused, outcome) is resumed


def test_give_up_after_fails_as_timeout():
    """A task older than poll.give_up_after fails as Timeout before its next poll."""
    assert lifecycle.before_poll(task(age=100), NOW, policy()) is None
    decision = lifecycle.before_poll(task(age=4000), NOW, policy())
    assert isinstance(decision, Fail) and decision.code == "Timeout"


VIDEO = Downloaded(100, "ab" * 32, "video/mp4", '"e"')
DOWNLOAD_TABLE = [
    (GroupDone((VIDEO,)), Succeed),
    (UrlRefused("storage answered HTTP 403"), Retry),
    (TaskFailed("DownloadRejected", "html"), Fail),
    (DownloadInterrupted("broke off"), Retry),
    (DownloadInterrupted("disk error: No space left on device"), Retry),
    (DownloadInterrupted("HTTP 503", retry_after=30.0), Retry),
    (Stopping("bye"), Ignore),
]


@pytest.mark.parametrize(("outcome", "kind"), DOWNLOAD_TABLE)
def test_every_download_outcome_has_one_decision(outcome, kind):
    """Each end of a download maps to exactly one kind of decision."""
    assert isinstance(lifecycle.after_download(task(), URL, outcome, NOW, policy()), kind)


def test_refused_url_polls_again_at_once_and_remembers_it():
    """Storage's 403: ask the API at once for a fresh URL; remember the refused one."""
    decision = lifecycle.after_download(task(), URL, UrlRefused("403"), NOW, policy())
    assert isinstance(decision, Retry)
    assert (decision.then, decision.at, decision.refused_url) == ("poll", NOW.mono, URL)


def test_a_second_refused_url_fails_as_expired():
    """Two different URLs refused: the video has expired."""
    decision = lifecycle.after_download(
        task(refused="other"), URL, UrlRefused("403"), NOW, policy()
    )
    assert isinstance(decision, Fail) and decision.code == "VideoUrlExpired"


def test_interrupted_download_resumes_after_backoff_and_retry_after():
    """A broken download is tried again after the back-off or Retry-After, whichever is longer."""
    out = DownloadInterrupted("HTTP 503", retry_after=30.0)
    decision = lifecycle.after_download(task(), URL, out, NOW, policy())
    assert isinstance(decision, Retry)
    assert (decision.then, decision.at, decision.pause_until) == ("download", NOW.mono + 30, None)


def test_unfinished_poll_carries_its_deadline():
    """Under saturation the next poll also has a latest time, counted from the poll's start
    (the two times themselves: CompletionModel.next_poll, tests/test_predictor.py)."""
    decision = lifecycle.after_poll(task(), report("RUNNING"), 990.0, NOW, policy(), 7.0, 12.0)
    assert decision == PollAt(997.0, 1002.0)
