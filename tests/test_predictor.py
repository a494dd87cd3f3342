"""The completion model learns durations and the API clock's offset from answers alone."""

from __future__ import annotations

from datetime import datetime, timedelta

from wansync.predictor import CompletionModel

BEIJING = timedelta(hours=8)


def api(ts: float) -> str:
    """A timestamp as the API writes it: Beijing local time, no zone."""
    return (datetime.utcfromtimestamp(ts) + BEIJING).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def finished(now: float, queue: float, run: float) -> dict:
    return {
        "submit_time": api(now - queue - run),
        "scheduled_time": api(now - run),
        "end_time": api(now),
    }


def test_not_ready_before_five_finished_tasks():
    model = CompletionModel()
    for i in range(4):
        model.observe(finished(1000.0 + i, 30, 120), 1000.0 + i, finished=True)
    assert model.likely_done_at({"scheduled_time": api(1000.0)}) is None


def test_learns_run_time_and_the_zone_offset():
    """Running tasks are likely done at scheduled + the median run time, in our clock."""
    model = CompletionModel()
    for i, run in enumerate([100, 110, 120, 130, 140, 150, 160, 170, 180, 190]):
        now = 10_000.0 + i
        model.observe(finished(now, 30, run), now, finished=True)
    done = model.likely_done_at({"scheduled_time": api(20_000.0)})
    assert abs(done - (20_000.0 + 140)) < 0.01  # the median run, the zone offset removed


def test_pending_tasks_add_the_queue_time():
    model = CompletionModel()
    for i in range(10):
        now = 10_000.0 + i
        model.observe(finished(now, 60, 100), now, finished=True)
    done = model.likely_done_at({"submit_time": api(20_000.0)})
    assert abs(done - (20_000.0 + 60 + 100)) < 0.01


def test_unfinished_answers_teach_only_the_clock():
    model = CompletionModel()
    model.observe({"submit_time": api(500.0), "scheduled_time": api(510.0)}, 510.0, False)
    assert len(model.run) == 0 and len(model.queue) == 0
