"""Is a task found in the task list this job's? Its prompt, as the task's own answer says it.

After a lost create answer, the task list shows the account's tasks of the job's model in
the create's window (jobsearch.py), and anything else on the account (the console,
another program with the same key) may have made one there too. What tells a task apart
is what its poll answer says of its input: DashScope echoes the prompt sent as
`output.orig_prompt` (a classic picture task: in each of `output.results[]`). That echo
comes with the task's end: a PENDING or RUNNING answer carries only the id, the status
and times, and a messages-style picture task (`choices[]`) never echoes it. So a task is
judged twice (docs/jobs.md, At most once): when it is found (an ended task that names
another prompt is not taken), and when it ends, before anything is fetched (lifecycle.py:
one that names another prompt then ends the job `SubmitUncertain`, nothing published).

Prompts are compared as SHA-256 digests of the text without its outer whitespace: the
job's is kept in its sidecar (`job.prompt_sha256`; a job sent without a prompt keeps the
digest of ""), the answer's is taken before the answer is cleaned for the sidecar (which
cuts long text). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Literal

TASK_LIST = "task list"  # a job's `found_by` when its task was taken from the task list
MAX_CHECKED = 5  # candidates one search polls to read their prompt; more: too many anyway

Match = Literal["ours", "other", "unknown"]


def digest(prompt: str | None) -> str:
    """The SHA-256 (hex) of a prompt without its outer whitespace; no prompt is ""."""
    return hashlib.sha256((prompt or "").strip().encode("utf-8", "surrogatepass")).hexdigest()


def prompt_sent(body: Mapping[str, Any]) -> str | None:
    """The prompt a create request carries, as the vendor echoes it: `input.prompt`, or
    the text of a messages-style request; None when it has none."""
    inputs = body.get("input")
    if not isinstance(inputs, Mapping):
        return None
    prompt = inputs.get("prompt")
    if isinstance(prompt, str):
        return prompt
    messages = inputs.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], Mapping):
        content = messages[0].get("content")
        for item in content if isinstance(content, list) else ():
            if isinstance(item, Mapping) and isinstance(item.get("text"), str):
                return str(item["text"])
    return None


def prompt_said(output: Mapping[str, Any]) -> str | None:
    """The prompt a poll answer's `output` echoes (`orig_prompt`, or the first
    `results[]` item's), or None when it says none (not ended yet, or a kind that never
    echoes it)."""
    said = output.get("orig_prompt")
    if isinstance(said, str):
        return said
    results = output.get("results")
    for item in results[:256] if isinstance(results, list) else ():
        if isinstance(item, Mapping) and isinstance(item.get("orig_prompt"), str):
            return str(item["orig_prompt"])
    return None


def said_digest(output: Mapping[str, Any]) -> str | None:
    """`digest` of the prompt an answer echoes; None when it echoes none."""
    said = prompt_said(output)
    return None if said is None else digest(said)


def compare(recorded: str | None, said: str | None) -> Match:
    """The job's prompt digest (None: a sidecar from before it was kept) against the one
    a task's answer echoes (None: it echoes none): `ours`, `other`, or `unknown`."""
    if recorded is None or said is None:
        return "unknown"
    return "ours" if said == recorded else "other"


def unknown_tasks(
    rows: Iterable[Mapping[str, Any]], ours: Iterable[str], model: str | None
) -> list[str]:
    """Ids of the listed tasks of `model` that no job or task of ours knows, in list order."""
    known = set(ours)
    return [
        str(r["task_id"])
        for r in rows
        if r["task_id"] not in known and r.get("model_name", model) == model
    ]


def not_ours_message(name: str, task_id: str) -> str:
    """Why a task taken from the task list ended the job when its answer showed its prompt."""
    return (
        f"task {task_id}, taken from the task list after the create's answer was lost, is "
        f"not this job's: its answer echoes another prompt than {name}.job's (someone or "
        f"something else on the account made it in the same window). Nothing of it was "
        f"published. The job's own create may still have made a task: a task of yours in "
        f"the console's task list goes into {name}.task in the inbox (`wansync add ID "
        f"--name {name}`); `wansync retry {name}` searches the window again (skipping "
        f"{task_id}); only `wansync retry {name} --force` creates a new one"
    )
