"""A task's files on their way down, as one group: which to fetch next, which are done,
and what a round of downloads came to. In memory, main thread only; no I/O, no clock.

A SUCCEEDED answer names one file (a video) or several (pictures: `shapes.outputs_of`).
Each file is its own download, in its own slot of `download.concurrency`, so the files
of one task come down side by side. A *round* starts every file not yet done; it ends
when none of them is running any more, and then `FileGroup.ended` says what it came to:

  every file done          → `GroupDone` (the lifecycle's `Succeed`)
  a file refused for good  → that `TaskFailed` at once (the other files are stopped: the
                             task ends, `DownloadRejected` and the like)
  a file's URL refused     → `UrlRefused` (ask the task API again: a fresh URL set)
  a transient failure      → that error (the next round, after the back-off, fetches
                             only the files not done)
  shutting down            → `Stopping`

After the first error of a round no more of its files start (a host that refuses one
file is unlikely to serve the next); the ones running finish first. A file done stays
done for the rest of the run: its `.part` is whole and verified.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from posixpath import splitext
from urllib.parse import urlsplit

from wansync.core.errors import Stopping, TaskFailed, UrlRefused, WansyncError
from wansync.core.messages import Downloaded
from wansync.core.shapes import FileUrl

PICTURE_EXTENSIONS = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".webp": "webp"}


def expected_extension(file: FileUrl) -> str:
    """The extension a file's `.part` is named with while it downloads: `mp4` for a
    video; for a picture the one its URL's path ends with (`png` when it says nothing
    usable). What is published is named from what the bytes turn out to be."""
    if file.kind == "video":
        return "mp4"
    try:
        path = urlsplit(file.url).path
    except ValueError:
        return "png"
    return PICTURE_EXTENSIONS.get(splitext(path)[1].lower(), "png")


@dataclass(frozen=True, slots=True)
class GroupDone:
    """Every file of the group is whole and verified, in file order."""

    files: tuple[Downloaded, ...]


Verdict = GroupDone | WansyncError | None


@dataclass
class FileGroup:
    """The files of one task's answer and how far each has come in this run."""

    files: tuple[FileUrl, ...]
    done: dict[int, Downloaded] = field(default_factory=dict)
    waiting: list[int] = field(default_factory=list)  # to start in this round
    running: set[int] = field(default_factory=set)
    error: WansyncError | None = None  # the round's error that decides, so far
    error_url: str | None = None  # the URL of the file that error came from

    def __post_init__(self) -> None:
        self.new_round()

    @property
    def count(self) -> int:
        return len(self.files)

    def same_files(self, files: tuple[FileUrl, ...]) -> bool:
        """Does a new answer name the same number of files of the same kinds?"""
        return [f.kind for f in files] == [f.kind for f in self.files]

    def renewed(self, files: tuple[FileUrl, ...]) -> FileGroup:
        """The group for a new answer (a fresh URL set): files done stay done when it
        names the same files."""
        group = FileGroup(files)
        if self.same_files(files):
            group.done = dict(self.done)
            group.new_round()
        return group

    def new_round(self) -> None:
        """Every file not done is to be started again."""
        self.waiting = [k for k in range(self.count) if k not in self.done]
        self.running = set()
        self.error = self.error_url = None

    def take(self) -> int | None:
        """The next file to start in this round (it is then running), or None."""
        if not self.waiting:
            return None
        index = self.waiting.pop(0)
        self.running.add(index)
        return index

    def ended(
        self, index: int, outcome: Downloaded | WansyncError
    ) -> GroupDone | WansyncError | None:
        """File `index` came down (or did not): what the round came to, or None while
        it goes on."""
        self.running.discard(index)
        if isinstance(outcome, Downloaded):
            self.done[index] = outcome
        else:
            self.waiting.clear()  # no more of this round's files start
            if _weight(outcome) > _weight(self.error):
                self.error, self.error_url = outcome, self.files[index].url
            if isinstance(outcome, TaskFailed):
                return outcome  # the task ends now; its other downloads are stopped
        if self.running or self.waiting:
            return None
        if self.error is not None:
            return self.error
        return GroupDone(tuple(self.done[k] for k in range(self.count)))


def _weight(error: WansyncError | None) -> int:
    """Which error of a round decides what it came to: a stop, then a file refused for
    good, then a refused URL (ask again), then any transient error."""
    if error is None:
        return 0
    if isinstance(error, Stopping):
        return 4
    if isinstance(error, TaskFailed):
        return 3
    if isinstance(error, UrlRefused):
        return 2
    return 1
