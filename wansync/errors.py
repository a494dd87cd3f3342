"""The exception tree: the main loop decides retry or quarantine by type alone."""

from __future__ import annotations


class WansyncError(Exception):
    """Base of every error wansync raises on purpose."""


class ConfigError(WansyncError):
    """The configuration (or the key) is unusable; the CLI exits 2 with this text."""


class TaskFileError(WansyncError):
    """A `.task` file cannot be read as a task; it goes to `failed/` as `InvalidTaskFile`."""

    def __init__(self, message: str, task_id: str | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id


class JobFileError(WansyncError):
    """A `.job` file cannot be submitted as written; it goes to `failed/` as `InvalidJobFile`."""


class TaskFailed(WansyncError):
    """A terminal outcome: the task ends in `failed/` with this code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class TransientError(WansyncError):
    """Something that may work later: the task keeps going, the error shows in its sidecar."""

    code = "TransientError"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


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
        super().__init__(message, code)
        self.retry_after = retry_after


class AuthRejected(TransientError):
    """HTTP 401/403 from the task API: pause all polling, fail nothing."""

    code = "InvalidApiKey"


class DownloadInterrupted(TransientError):
    """The video stream broke off or the disk refused it; the `.part` is kept for a resume."""

    code = "DownloadInterrupted"


class SubmitAmbiguous(TransientError):
    """A submit whose answer was lost after the request went out: a task may exist.

    Never re-sent blindly; the task list is searched instead (see submitter.py).
    """

    code = "SubmitUncertain"


class UrlRefused(WansyncError):
    """Storage refused the signed URL (403): it may have expired; poll once more to be sure."""


class Stopping(WansyncError):
    """The daemon is shutting down; work in progress is left resumable."""
