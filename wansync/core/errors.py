"""The exception tree: the loop decides retry, pause or quarantine by type alone.

Every error carries `code` (the sidecar's `error.code`), `message` (its text, no code
prefix) and `retry_after` (seconds the remote asked us to wait, or None):

    WansyncError
    ├── ConfigError, UsageError, InboxLocked     the CLI exits 2 / 3 with the text
    ├── NoSpace                                  a command's file did not fit: exit 1
    ├── TaskFileError, JobFileError, NotARegularFile   a user's file we cannot use
    ├── TaskFailed(code, message)                terminal: the task ends in failed/
    ├── UrlRefused                               storage said 403: ask the API again
    ├── Stopping                                 shutting down: leave it resumable
    └── TransientError                           may work later: back off and retry
        ├── RemoteUnavailable, MalformedResponse, DownloadInterrupted
        ├── OutOfResources                       no descriptor/memory to read a file now
        ├── RateLimited                          429: pause the whole account
        ├── AuthRejected                         401/403: pause, probe, fail nothing
        └── SubmitAmbiguous                      a create may have worked: search
"""

from __future__ import annotations


class WansyncError(Exception):
    """Base of every error wansync raises on purpose."""

    code: str = "Error"

    def __init__(
        self, message: str = "", code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.retry_after = retry_after


class ConfigError(WansyncError):
    """The configuration (or the key) is unusable; the CLI exits 2 with this text."""

    code = "ConfigError"


class UsageError(WansyncError):
    """Bad command-line arguments: exit 2 with one line."""

    code = "UsageError"


class InboxLocked(WansyncError):
    """Another wansync holds this inbox's lock."""

    code = "InboxLocked"


class NoSpace(WansyncError):
    """A command could not write its file for want of space (ENOSPC, a quota): nothing is
    wrong with the input or the config, and nothing was left behind; the CLI exits 1."""

    code = "NoSpace"


class TaskFileError(WansyncError):
    """A `.task` file cannot be read as a task; it goes to `failed/` as `InvalidTaskFile`."""

    code = "InvalidTaskFile"

    def __init__(self, message: str, task_id: str | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id


class JobFileError(WansyncError):
    """A `.job` file cannot be submitted as written; it goes to `failed/` as `InvalidJobFile`."""

    code = "InvalidJobFile"


class NotARegularFile(WansyncError):
    """A user's file we refuse to read: a link (it could point anywhere) or not a file."""

    code = "NotARegularFile"


class TaskFailed(WansyncError):
    """A terminal outcome: the task ends in `failed/` with this code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code)
        self.args = (f"{code}: {message}",)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class UrlRefused(WansyncError):
    """Storage refused the signed URL (403): it may have expired; poll once more to be sure."""

    code = "VideoUrlRefused"


class Stopping(WansyncError):
    """The daemon is shutting down; work in progress is left resumable."""

    code = "Stopping"


class TransientError(WansyncError):
    """Something that may work later: the task keeps going, the error shows in its sidecar."""

    code = "TransientError"


class RemoteUnavailable(TransientError):
    """Network error, timeout, 5xx, or an answer we could not understand."""

    code = "RemoteUnavailable"


class MalformedResponse(TransientError):
    """A 200 whose body is not the task JSON we expect."""

    code = "MalformedResponse"


class RateLimited(TransientError):
    """HTTP 429: the account's quota is spent until `retry_after` seconds have passed."""

    code = "Throttling"

    def __init__(self, message: str, retry_after: float | None, code: str | None = None) -> None:
        super().__init__(message, code, retry_after)


class AuthRejected(TransientError):
    """HTTP 401/403 from the task API: pause all polling, fail nothing."""

    code = "InvalidApiKey"


class DownloadInterrupted(TransientError):
    """The video stream broke off or the disk refused it; the `.part` is kept for a resume."""

    code = "DownloadInterrupted"


class OutOfResources(TransientError):
    """The system had no descriptor or memory to read a user's file (EMFILE, ENFILE,
    EAGAIN, ENOMEM): the file is not at fault. It stays where it is and is read again
    later; it is never judged invalid for this. Not an `OSError`, so no handler that
    turns an unreadable file into `InvalidTaskFile` can catch it by accident.
    """

    code = "OutOfResources"


class SubmitAmbiguous(TransientError):
    """A submit whose answer was lost after the request went out: a task may exist.

    Never re-sent blindly; the task list is searched instead (see submitter.py).
    """

    code = "SubmitUncertain"


# a job's `.task` removed while its task was followed: the job ends, never sent again, and
# `wansync retry` points at `wansync add ID` instead of paying for a second task
TASK_FILE_REMOVED = "TaskFileRemoved"


def internal(exc: BaseException, error: type[WansyncError] = TransientError) -> WansyncError:
    """A bug's exception as an outcome the loop understands (never its text: it may hold data)."""
    return error(f"unexpected {type(exc).__name__}", "InternalError")
