from __future__ import annotations

import pytest

from tests.helpers import TEST_KEY, Env
from wansync.simulator import Simulator


@pytest.fixture
def sim():
    """The DashScope simulator on 127.0.0.1, tasks done after 1 PENDING + 1 RUNNING poll."""
    with Simulator(key=TEST_KEY, pending_polls=1, running_polls=1) as server:
        yield server


@pytest.fixture
def env(tmp_path, sim):
    return Env(tmp_path, sim)
