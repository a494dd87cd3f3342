"""A task's files as one group, decided in-process: rounds, verdicts, the answer's rules.

`filegroup.FileGroup` says which file starts next and what a round of downloads came
to; `lifecycle.after_success` turns a SUCCEEDED answer into the files to fetch (or an
UnsupportedOutput after three answers naming none). No threads, sockets or files.
"""

from __future__ import annotations

import dataclasses

import pytest

from wansync import config
from wansync.core import lifecycle
from wansync.core.errors import DownloadInterrupted, Stopping, TaskFailed, UrlRefused
from wansync.core.filegroup import FileGroup, GroupDone, expected_extension
from wansync.core.lifecycle import Fail, Now, Policy, Retry, StartDownload
from wansync.core.messages import Downloaded
from wansync.core.record import DownloadState, FileDownload
from wansync.core.shapes import FileUrl
from wansync.core.tracker import Task
from wansync.files import sidecar
from wansync.remote.urlcheck import check_url

NOW = Now(mono=1000.0, wall=1_800_000_000.0)


def pictures(n: int, deadline: int = 1800003600) -> tuple[FileUrl, ...]:
    return tuple(
        FileUrl(
            f"http://127.0.0.1/p/{k}.png?Expires={deadline + k}&Signature=s", "picture", f"r{k}"
        )
        for k in range(n)
    )


def done(k: int) -> Downloaded:
    return Downloaded(100 + k, f"{k:064x}", "image/png", f'"e{k}"')


def policy() -> Policy:
    cfg = config.from_mapping({"inbox": "/i", "outbox": "/o", "failed": "/f"})
    dl = dataclasses.replace(cfg.download, allowed_hosts=("127.0.0.1",), require_https=False)
    return Policy(2.0, 20.0, 3600.0, lambda url: check_url(url, dl))


def task(unsupported: int = 0, refused: str | None = None) -> Task:
    record = sidecar.new("t", "task-1", {}, NOW.wall)
    return Task("t", record, unsupported_in_row=unsupported, refused_url=refused)


# -- rounds -----------------------------------------------------------------------------------
def test_a_round_ends_when_its_last_file_does_and_gives_them_in_order():
    """Files end in any order; the verdict waits for the last and lists them in file order."""
    group = FileGroup(pictures(3))
    assert [group.take(), group.take(), group.take(), group.take()] == [0, 1, 2, None]
    assert group.ended(2, done(2)) is None and group.ended(0, done(0)) is None
    assert group.ended(1, done(1)) == GroupDone((done(0), done(1), done(2)))


def test_a_transient_failure_stops_the_round_and_the_next_fetches_only_the_rest():
    """After an error no more of the round's files start; the next round skips those done."""
    group = FileGroup(pictures(4))
    group.take(), group.take()
    assert group.ended(0, done(0)) is None
    error = DownloadInterrupted("broke off")
    assert group.ended(1, error) is error  # nothing running, and 2 and 3 are not started
    group.new_round()
    assert group.waiting == [1, 2, 3] and group.error is None


def test_a_file_refused_for_good_ends_the_task_at_once():
    """DownloadRejected on one file: the verdict comes now, not after the others."""
    group = FileGroup(pictures(3))
    group.take(), group.take()
    rejected = TaskFailed("DownloadRejected", "not a picture")
    assert group.ended(1, rejected) is rejected and group.running == {0}


@pytest.mark.parametrize(
    ("first", "second", "verdict"),
    [
        (UrlRefused("403"), DownloadInterrupted("reset"), UrlRefused),
        (DownloadInterrupted("reset"), UrlRefused("403"), UrlRefused),
        (UrlRefused("403"), Stopping("bye"), Stopping),
    ],
)
def test_the_weightier_error_of_a_round_decides(first, second, verdict):
    """A stop beats a refused URL, which beats a transient error (ask the API again)."""
    group = FileGroup(pictures(2))
    group.take(), group.take()
    assert group.ended(0, first) is None
    assert isinstance(group.ended(1, second), verdict)
    assert group.error_url == group.files[[first, second].index(group.error)].url


def test_a_fresh_url_set_keeps_the_files_done_when_it_names_the_same_files():
    """After storage's 403 the API hands out new URLs: files done stay done, unless the
    answer now names other files."""
    group = FileGroup(pictures(3))
    group.done = {0: done(0), 2: done(2)}
    renewed = group.renewed(pictures(3, deadline=1900000000))
    assert renewed.done == group.done and renewed.waiting == [1]
    other = group.renewed(pictures(2))
    assert other.done == {} and other.waiting == [0, 1]


@pytest.mark.parametrize(
    ("url", "kind", "extension"),
    [
        ("https://h/v/x.mp4?Expires=1", "video", "mp4"),
        ("https://h/p/x.JPEG?Expires=1", "picture", "jpg"),
        ("https://h/p/x.webp", "picture", "webp"),
        ("https://h/p/x?Expires=1", "picture", "png"),
        ("https://h/p/x.gif", "picture", "png"),
    ],
)
def test_a_part_is_named_by_what_its_url_says(url, kind, extension):
    """A `.part`'s EXT while it downloads: mp4 for a video, the URL's for a picture."""
    assert expected_extension(FileUrl(url, kind, "w")) == extension


def test_a_groups_download_state_keeps_each_files_own_and_the_sums():
    """One file: the block is the file's; several: each file's, and the sums."""
    single = DownloadState(None).with_file(0, 1, FileDownload('"a"', 5, 10))
    assert single == DownloadState('"a"', 5, 10)
    group = DownloadState(None).with_file(1, 3, FileDownload('"b"', 4, 8))
    group = group.with_file(0, 3, FileDownload('"a"', 2, 2))
    assert (group.etag, group.bytes, group.total) == (None, 6, None)  # file 3's size unknown
    assert group.file(1, 3) == FileDownload('"b"', 4, 8) and group.file(2, 3).etag is None


# -- the answer -------------------------------------------------------------------------------
def test_succeeded_pictures_are_fetched_with_the_earliest_deadline():
    """results[]: every picture with a URL, in order; `expires` the earliest of them."""
    results = [{"code": "InternalError", "message": "no"}] + [{"url": f.url} for f in pictures(3)]
    decision = lifecycle.after_success(task(), {"results": results}, NOW, policy())
    assert isinstance(decision, StartDownload)
    assert [f.url for f in decision.files] == [f.url for f in pictures(3)]
    assert decision.expires == 1800003600.0 and decision.dropped == 0


def test_one_url_of_a_host_not_allowed_fails_the_task():
    """A group is fetched whole or not at all: one URL outside allowed_hosts fails it."""
    results = [{"url": pictures(1)[0].url}, {"url": "http://evil.example/p.png"}]
    decision = lifecycle.after_success(task(), {"results": results}, NOW, policy())
    assert isinstance(decision, Fail) and decision.code == "DownloadRejected"


def test_a_refused_url_handed_out_again_means_no_newer_one():
    """After a 403 the new answer still holds the refused URL: VideoUrlExpired."""
    urls = pictures(2)
    results = [{"url": f.url} for f in urls]
    decision = lifecycle.after_success(
        task(refused=urls[1].url), {"results": results}, NOW, policy()
    )
    assert isinstance(decision, Fail) and decision.code == "VideoUrlExpired"


@pytest.mark.parametrize(
    "output",
    [
        {"task_status": "SUCCEEDED"},
        {"results": [{"code": "InternalError", "message": "all failed"}]},
        {"choices": [{"message": {"content": [{"type": "text", "text": "sorry"}]}}]},
        {"video_url": "not a url with spaces"},
    ],
)
def test_no_file_to_fetch_is_retried_twice_then_unsupported_output(output):
    """The first two such answers in a row are a transient MalformedResponse (counted);
    the third ends the task as UnsupportedOutput, the reason in its message."""
    first = lifecycle.after_success(task(0), output, NOW, policy())
    assert isinstance(first, Retry) and first.code == "MalformedResponse"
    assert first.unsupported_in_row == 1 and first.then == "poll"
    second = lifecycle.after_success(task(1), output, NOW, policy())
    assert isinstance(second, Retry) and second.unsupported_in_row == 2
    third = lifecycle.after_success(task(2), output, NOW, policy())
    assert isinstance(third, Fail) and third.code == "UnsupportedOutput"
    assert "3 answers in a row" in third.message


def test_more_files_than_the_cap_fetches_the_first_and_counts_the_rest():
    """An answer naming 20 pictures: the first 16 are fetched, 4 are dropped (logged)."""
    results = [{"url": f"http://127.0.0.1/p/{k}.png"} for k in range(20)]
    decision = lifecycle.after_success(task(), {"results": results}, NOW, policy())
    assert isinstance(decision, StartDownload)
    assert len(decision.files) == 16 and decision.dropped == 4


def test_a_stopped_download_drops_only_the_part_it_wrote(tmp_path):
    """A download stopped because its task ended removes its `.part` only while that is
    still the file it wrote: a retried task's new `.part` of the same name stays."""
    import os

    from wansync.run.workers import _unlink_if

    part, new = tmp_path / ".clip.1.png.part", tmp_path / "new"
    part.write_bytes(b"old")
    new.write_bytes(b"new")  # made while the old one still exists: another inode
    st = os.lstat(part)
    wrote = [(st.st_dev, st.st_ino)]
    new.rename(part)  # the task's end dropped the old one; a retried task made its own
    _unlink_if(part, wrote)
    assert part.read_bytes() == b"new"
    _unlink_if(part, [(os.lstat(part).st_dev, os.lstat(part).st_ino)])
    assert not part.exists()
