"""Local files to DashScope's temporary storage, as the official SDK does it.

The protocol (from `dashscope/utils/oss_utils.py`): GET an upload policy for the
model, POST the file as a multipart form to the policy's `upload_host` with the
policy's fields, and refer to it as `oss://{upload_dir}/{file name}` in the submit,
with the header `X-DashScope-OssResourceResolve: enable`. Uploading creates no task,
so any failure here is safe to retry.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

import requests

from .api import USER_AGENT, TaskApi
from .errors import RemoteUnavailable, TaskFailed
from .log import scrub


class Uploader:
    def __init__(self, api: TaskApi, timeout: float) -> None:
        self.api = api
        self.timeout = timeout

    def upload_all(self, model: str, paths: list[Path]) -> list[str]:
        """Upload `paths` under one policy; returns their `oss://` URLs in the same order."""
        if not paths:
            return []
        policy = self.api.upload_policy(model)
        urls = []
        names = [p.name for p in paths]
        for i, path in enumerate(paths):
            # The SDK keys by file name alone; two files of one job may share a name.
            name = path.name if names.count(path.name) == 1 else f"{i}-{path.name}"
            urls.append(self._post(policy, path, f"{policy['upload_dir']}/{name}"))
        return urls

    def _post(self, policy: dict[str, str], path: Path, key: str) -> str:
        form = {
            "OSSAccessKeyId": policy["oss_access_key_id"],
            "Signature": policy["signature"],
            "policy": policy["policy"],
            "key": key,
            "x-oss-object-acl": policy.get("x_oss_object_acl", "private"),
            "x-oss-forbid-overwrite": policy.get("x_oss_forbid_overwrite", "true"),
            "success_action_status": "200",
            "x-oss-content-type": mimetypes.guess_type(path.name)[0] or "application/octet-stream",
        }
        try:
            with path.open("rb") as fh:
                resp = requests.post(
                    policy["upload_host"],
                    data=form,
                    files={"file": (path.name, fh)},
                    headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                    timeout=(self.timeout, max(self.timeout, 300.0)),
                    allow_redirects=False,
                )
        except OSError as exc:
            if isinstance(exc, requests.RequestException):
                detail = f"upload of {path.name}: {type(exc).__name__}"
                raise RemoteUnavailable(detail, "UploadFailed") from None
            raise TaskFailed("UploadFailed", f"{path.name}: {exc.strerror or exc}") from None
        if resp.status_code == 200:
            return f"oss://{key}"
        if resp.status_code >= 500 or resp.status_code == 429:
            raise RemoteUnavailable(
                f"upload of {path.name}: HTTP {resp.status_code}", "UploadFailed"
            )
        body = scrub(resp.text[:200].strip()) or resp.reason
        raise TaskFailed(
            "UploadFailed", f"{path.name}: storage answered HTTP {resp.status_code}: {body}"
        )
