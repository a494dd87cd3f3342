"""`submit.max_in_progress`: how many tasks may be generating at once, per model pattern.

The limit is the account's (each model family has its own quota), so it is a list of
(pattern, limit) pairs in the order written: a task counts against the first pattern its
model matches (shell-style, without case). A `.task` file's task, whose model wansync
does not know, counts as the model `*` (so against the catch-all pattern `*`, if there is
one). A plain number N is `{"*": N}`: every task counts against it. A model that matches
no pattern has no limit. Pure functions of the config and the counts.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")

Limits = tuple[tuple[str, int], ...]  # (pattern, limit) pairs, lower case, first match wins
UNKNOWN = "*"  # the model a task counts as when wansync does not know it


@functools.lru_cache(maxsize=1024)
def pattern_for(limits: Limits, model: str | None) -> str | None:
    """The first pattern `model` matches, or None (no limit for it)."""
    name = (model or UNKNOWN).lower()
    return next((p for p, _ in limits if fnmatch.fnmatchcase(name, p)), None)


def room(limits: Limits, model: str | None, running: Mapping[str | None, int]) -> int | None:
    """Places free for one more task of `model`, given the tasks generating now by model
    (`running`); None when no pattern limits it."""
    pattern = pattern_for(limits, model)
    if pattern is None:
        return None
    used = sum(n for m, n in running.items() if pattern_for(limits, m) == pattern)
    return dict(limits)[pattern] - used


def first_with_room(
    limits: Limits,
    queued: Iterable[T],
    model_of: Callable[[T], str | None],
    running: Mapping[str | None, int],
) -> T | None:
    """The first of `queued` (jobs, in order) whose model's limit has room, or None: a
    full pattern holds back its own jobs, never another pattern's."""
    full: set[str] = set()
    catch_all = any(p.strip("*") == "" for p, _ in limits)  # a pattern matching every model
    for item in queued:
        model = model_of(item)
        pattern = pattern_for(limits, model)
        if pattern is None:
            return item  # no limit for this model
        if pattern in full:
            continue
        free = room(limits, model, running)
        if free is not None and free > 0:
            return item
        full.add(pattern)
        if catch_all and len(full) == len(limits):  # every model matches a full pattern
            return None
    return None
