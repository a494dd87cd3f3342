"""The completion-lag bench's four pollers, tiny and fast: what the bench asks of the
simulator (its tasks, its faults) is still accepted, and every poller sees every task
end. The figures themselves are `python -m bench`'s, never asserted here."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.run import SIDES, LagScenario, lag_side


class Tiny(LagScenario):
    """Time / 300 (tasks end within about 2 s); the list every 0.1 s, the least the
    config takes (the scaled default would be 0.017 s)."""

    @property
    def list_interval(self) -> float:
        return 0.1


@pytest.mark.parametrize("who", SIDES)
def test_each_lag_poller_runs_against_the_simulator(tmp_path: Path, who: str) -> None:
    sc = Tiny("smoke", n=4, rate=20, interval=0.3, scale=300, arrive_over=0.5)
    side = lag_side(tmp_path, sc, who)
    assert len(side.lags) == sc.n, f"{who}: {len(side.lags)} of {sc.n} ends seen"
    assert side.requests > 0
