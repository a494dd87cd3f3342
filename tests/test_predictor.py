"""The completion model learns durations and the API clock's offset from answers alone."""

from __future__ import annotations

from datetime import datetime, timedelta

from wansync.core.predictor import CompletionModel

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


def trained(runs: list[float], queues: list[float] | None = None) -> CompletionModel:
    """A model that has seen tasks finish with these run (and queue) durations."""
    model = CompletionModel()
    queues = queues or [30.0] * len(runs)
    for i, (queue, run) in enumerate(zip(queues, runs, strict=True)):
        now = 10_000.0 + i
        model.observe(finished(now, queue, run), now, finished=True)
    return model


RUNS = [100.0, 110, 120, 130, 140, 150, 160, 170, 180, 190]


def test_running_task_quantile_counts_only_runs_it_has_not_yet_exceeded():
    """A task running 165 s is done by the next longer run seen (170 s), not the median."""
    model = trained(RUNS)
    done = model.finish_quantile({"scheduled_time": api(20_000.0)}, 20_165.0, 0.05)
    assert done is not None and abs(done - 20_170.0) < 0.01


def test_pending_task_quantile_counts_only_longer_queues():
    """Queued 55 s already: only queues over 55 s (60..100) plus the run are possible."""
    model = trained([100.0] * 10, queues=[10.0 * k for k in range(1, 11)])
    done = model.finish_quantile({"submit_time": api(20_000.0)}, 20_055.0, 0.05)
    assert done is not None and abs(done - (20_000.0 + 60 + 100)) < 0.01


def test_task_past_every_run_seen_is_worth_polling_now():
    model = trained(RUNS)
    assert model.finish_quantile({"scheduled_time": api(20_000.0)}, 20_500.0, 0.05) == 20_500.0


def test_plain_interval_when_the_rate_covers_everyone():
    """Not saturated: poll every `interval`, no deadline."""
    model = trained(RUNS)
    assert model.next_poll({"scheduled_time": api(20_000.0)}, 20_001.0, 10.0, 15.0) == (15.0, None)


def test_saturated_defer_stays_within_the_forced_bound():
    """Saturated: the next poll is between `interval` and 1.8 cycles away, whatever the task."""
    model = trained(RUNS)
    for elapsed in (0.0, 50.0, 99.0, 150.0, 189.0, 400.0):
        delay, must = model.next_poll({"scheduled_time": api(20_000.0)}, 20_000.0 + elapsed, 40, 15)
        assert must == 72.0 and 15.0 <= delay <= must


def test_likely_finished_task_comes_before_a_fresh_one():
    """Of two running tasks the one running longer (more likely done) is due sooner."""
    model = trained(RUNS)
    now = 20_000.0
    old, _ = model.next_poll({"scheduled_time": api(now - 150)}, now, 100, 1)
    fresh, _ = model.next_poll({"scheduled_time": api(now - 1)}, now, 100, 1)
    assert old < fresh


def test_unready_model_polls_at_interval_but_still_sets_the_bound():
    model = CompletionModel()
    assert model.next_poll({"submit_time": api(20_000.0)}, 20_000.0, 40, 15) == (15.0, 72.0)
