"""How low can the completion lag go? The optimum for one task at a price per poll.

    python -m bench.lagbound                 # the two-cycle rule of the steady state (7.5 s)
    python -m bench.lagbound --max-gap 0     # no starvation rule

The bench's tasks queue U(3,15) s and then run U(6,18) s; a poll says PENDING, RUNNING
(and from then on the scheduled time, so the finish is scheduled + run) or SUCCEEDED.
For a price `lam` per poll, dynamic programming over the poll times finds the policy that
minimises E[lag] + lam * E[polls] for one task, with the first poll at the drop, polls of
one task at least 0.75 s apart and, with `--max-gap`, at most that far apart. Each price
gives a (polls per task, mean lag) pair; no policy that spends as many polls per task on
average does better (it is a relaxation: the rate may be spent unevenly in time).
In the bench's steady state 10 polls/s serve 75 / 42 s = 1.79 new tasks/s: 5.6 polls per
task, and the two-cycle rule caps a gap at 2 x 37.5 / 10 = 7.5 s.
Needs numpy (bench/requirements.txt); a few seconds per price.
"""

from __future__ import annotations

import argparse

import numpy as np

H, GAP = 0.05, 0.75  # time step, and the per-task interval
QL, QH, RL, RH = 3.0, 15.0, 6.0, 18.0  # queue and run ranges, uniform
X = np.arange(0, RH + H / 2, H)  # running: time since scheduled at the last poll


def _done_lag(x: np.ndarray, lo: float) -> np.ndarray:
    """E[(x - R) 1{lo < R <= x}] for R ~ U(RL, RH): the lag of finishes caught by a poll at x."""
    lo = max(lo, RL)
    hi = np.clip(x, lo, RH)
    return ((x - lo) ** 2 - (x - hi) ** 2) / (2 * (RH - RL))


def _survive(x: np.ndarray | float) -> np.ndarray:
    return np.clip((RH - np.maximum(x, RL)) / (RH - RL), 0, 1)


def running(lam: float, max_gap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cost, lag and polls to go for a running task not done at x (conditional on R > x)."""
    cost, lag, polls = (np.zeros(len(X)) for _ in range(3))
    for i in range(len(X) - 1, -1, -1):
        alive = float(_survive(X[i]))
        if alive <= 0:
            continue
        y = X[i + round(GAP / H) :]
        y = y[y <= X[i] + max_gap + 1e-9] if len(y) else np.array([RH])
        j = np.minimum(np.round(y / H).astype(int), len(X) - 1)
        caught, left = _done_lag(y, X[i]) / alive, _survive(y) / alive
        total = lam + caught + left * cost[j]
        k = int(np.argmin(total))
        cost[i], lag[i], polls[i] = (
            total[k],
            caught[k] + left[k] * lag[j[k]],
            1 + left[k] * polls[j[k]],
        )
    return cost, lag, polls


def after_scheduling(values: np.ndarray, x: np.ndarray, with_caught: bool) -> np.ndarray:
    """A poll x after the (then unknown) scheduling: caught finishes plus what remains."""
    j = np.minimum(np.round(np.clip(x, 0, RH) / H).astype(int), len(X) - 1)
    return (_done_lag(x, RL) if with_caught else 0) + _survive(x) * values[j]


def task(lam: float, max_gap: float) -> tuple[float, float]:
    """(mean lag, polls per task) of the optimal policy for one task at price lam."""
    run_cost, run_lag, run_polls = running(lam, max_gap)
    grid = np.arange(0, QH + H / 2, H)
    best = {}  # index in grid -> (cost, lag, polls) for a task still PENDING at grid[i]
    for i in range(len(grid) - 1, -1, -1):
        a = grid[i]
        waiting = (QH - max(a, QL)) / (QH - QL)
        if waiting <= 0:
            best[i] = (0.0, 0.0, 0.0)
            continue
        choice = None
        for b in np.arange(a + GAP, min(a + max_gap, QH + RH) + H / 2, H):
            q = np.arange(max(a, QL) + H / 2, min(b, QH), H)  # scheduled before this poll
            w = H / (QH - QL) / waiting
            c = lam + w * after_scheduling(run_cost, b - q, True).sum()
            lg = w * after_scheduling(run_lag, b - q, True).sum()
            n = 1 + w * after_scheduling(run_polls, b - q, False).sum()
            still = max(0.0, (QH - max(b, QL)) / (QH - QL)) / waiting
            if still > 0:
                nxt = best[min(round(b / H), len(grid) - 1)]
                c, lg, n = c + still * nxt[0], lg + still * nxt[1], n + still * nxt[2]
            if choice is None or c < choice[0]:
                choice = (c, lg, n)
        best[i] = choice  # type: ignore[assignment]
    _, lag, polls = best[0]
    return lag, 1 + polls  # the first poll, at the drop, says PENDING (the queue is >= 3 s)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lagbound", description=__doc__)
    parser.add_argument("--max-gap", type=float, default=7.5, help="0: no starvation rule")
    parser.add_argument("--lam", type=float, nargs="*", default=[0.2, 0.3, 0.4, 0.45, 0.5])
    args = parser.parse_args()
    max_gap = args.max_gap or 1e9
    for lam in args.lam:
        lag, polls = task(lam, max_gap)
        print(f"price {lam:.2f}: {polls:.2f} polls per task, mean lag {lag:.3f} s", flush=True)


if __name__ == "__main__":
    main()
