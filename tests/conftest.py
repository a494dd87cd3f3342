from __future__ import annotations

import json

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
    """One wansync set-up; afterwards, whatever the test did, nothing may have leaked."""
    setup = Env(tmp_path, sim)
    yield setup
    setup.reap()
    assert TEST_KEY not in setup.every_file_text(), "the API key reached a file or a log"
    for event in setup.all_logs():
        line = json.dumps(event)
        assert "Signature=" not in line and "Expires=" not in line, f"query string: {line}"
