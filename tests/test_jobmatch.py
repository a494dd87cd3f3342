"""Is a task taken from the task list the job's? In-process: the prompt a create sends and
an answer echoes, the check when such a task ends, and what the sidecar keeps of it."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.helpers import TEST_KEY
from wansync import config
from wansync.core import jobmatch, lifecycle
from wansync.core.lifecycle import Fail, Now, Policy, PollAt, StartDownload
from wansync.core.record import JobRecord
from wansync.core.tracker import Task
from wansync.files import sidecar
from wansync.remote.api import TaskApi, TaskReport
from wansync.remote.urlcheck import check_url
from wansync.run.submit_worker import LookupJob, echoes
from wansync.simulator import Simulator

NOW = Now(mono=1000.0, wall=1_800_000_000.0)
URL = "http://127.0.0.1/video/t1.mp4?Expires=1800003600&Signature=x"
MINE, THEIRS = "my own clip", "SOMEONE ELSE s clip"


def test_the_prompt_a_create_sends_is_what_the_vendor_echoes():
    """`input.prompt`, or a messages-style request's text; none when it has none."""
    assert jobmatch.prompt_sent({"input": {"prompt": MINE}}) == MINE
    content = [{"text": MINE}, {"image": "https://h/a.png"}]
    assert jobmatch.prompt_sent({"input": {"messages": [{"content": content}]}}) == MINE
    assert jobmatch.prompt_sent({"input": {"media": []}}) is None
    assert jobmatch.prompt_sent({"input": {"prompt": ["not", "text"]}}) is None
    assert jobmatch.digest(None) == jobmatch.digest("") == jobmatch.digest("  \n")
    assert jobmatch.digest(f" {MINE}\n") == jobmatch.digest(MINE) != jobmatch.digest(THEIRS)


@pytest.mark.parametrize(
    ("output", "said"),
    [
        ({"task_status": "PENDING"}, None),  # the vendor echoes nothing before the end
        ({"task_status": "SUCCEEDED", "orig_prompt": MINE, "video_url": URL}, MINE),
        ({"results": [{"code": "X", "message": "no"}, {"orig_prompt": MINE, "url": URL}]}, MINE),
        ({"choices": [{"message": {"content": [{"image": URL}]}}]}, None),  # never echoes
        ({"orig_prompt": 5}, None),
    ],
)
def test_the_prompt_an_answer_echoes(output, said):
    assert jobmatch.prompt_said(output) == said


def test_compare_needs_both_sides():
    """`unknown` when the job's sidecar predates the digest or the answer echoes none."""
    mine = jobmatch.digest(MINE)
    assert jobmatch.compare(mine, mine) == "ours"
    assert jobmatch.compare(mine, jobmatch.digest(THEIRS)) == "other"
    assert jobmatch.compare(None, mine) == jobmatch.compare(mine, None) == "unknown"


def test_the_echo_is_read_before_the_answer_is_cleaned():
    """A 9,000-character prompt holding `?a=b` is cut and scrubbed in the sidecar's
    `output`, but the digest is of the whole text the API echoed."""
    long = ("a heron over the lake?mood=calm " * 300)[:9000]
    body = {"output": {"task_id": "task-1", "task_status": "SUCCEEDED", "orig_prompt": long}}
    answer = TaskApi._parse_report(json.dumps(body).encode(), "task-1")
    assert answer.output["orig_prompt"] != long
    assert answer.prompt_sha256 == jobmatch.digest(long)


def policy() -> Policy:
    cfg = config.from_mapping({"inbox": "/i", "outbox": "/o", "failed": "/f"})
    dl = dataclasses.replace(cfg.download, allowed_hosts=("127.0.0.1",), require_https=False)
    return Policy(2.0, 20.0, 3600.0, lambda url: check_url(url, dl))


def job_task(found_by: str | None, prompt: str | None = MINE) -> Task:
    data = sidecar.new("mine", "task-1", {}, NOW.wall)
    digest = None if prompt is None else jobmatch.digest(prompt)
    data.job = JobRecord("mine.job", "wan2.2-t2v-plus", 1, found_by=found_by, prompt_sha256=digest)
    return Task("mine", data)


def decide(task: Task, status: str, **output: object) -> lifecycle.Decision:
    answer = {"task_id": "task-1", "task_status": status, **output}
    echo = jobmatch.said_digest(answer)
    report = TaskReport(status, "r", answer, None, echo)
    return lifecycle.after_report(task, report, NOW.mono, NOW, policy(), 2.0)


def test_a_task_from_the_list_echoing_another_prompt_is_never_fetched():
    """Taken from the list while it echoed nothing; its end echoes another prompt: nothing
    is downloaded, the job ends SubmitUncertain naming the task and what to do."""
    fail = decide(job_task(jobmatch.TASK_LIST), "SUCCEEDED", orig_prompt=THEIRS, video_url=URL)
    assert isinstance(fail, Fail) and fail.code == "SubmitUncertain"
    assert "task task-1, taken from the task list" in fail.message
    assert "wansync add ID --name mine" in fail.message and "retry mine --force" in fail.message
    pictures = [{"orig_prompt": THEIRS, "url": URL}]
    assert isinstance(decide(job_task(jobmatch.TASK_LIST), "SUCCEEDED", results=pictures), Fail)


@pytest.mark.parametrize(
    ("found_by", "prompt", "echo", "expected"),
    [
        (jobmatch.TASK_LIST, MINE, MINE, StartDownload),  # the job's own: fetched
        (jobmatch.TASK_LIST, MINE, None, StartDownload),  # a kind that never echoes it
        (jobmatch.TASK_LIST, None, THEIRS, StartDownload),  # a sidecar from before the digest
        (None, MINE, THEIRS, StartDownload),  # the create's own answer named it: ours
    ],
)
def test_what_the_end_check_lets_through(found_by, prompt, echo, expected):
    said = {} if echo is None else {"orig_prompt": echo}
    assert isinstance(
        decide(job_task(found_by, prompt), "SUCCEEDED", video_url=URL, **said), expected
    )


def test_an_unended_task_from_the_list_is_polled_on():
    assert isinstance(decide(job_task(jobmatch.TASK_LIST), "RUNNING"), PollAt)


def test_the_sidecar_keeps_the_digest_and_reads_a_bad_one_as_none(tmp_path):
    record = job_task(jobmatch.TASK_LIST).record
    path = tmp_path / "mine.status.json"
    sidecar.write(path, record)
    assert sidecar.read(path).job.prompt_sha256 == jobmatch.digest(MINE)
    data = json.loads(path.read_text())
    data["job"]["prompt_sha256"] = "not a digest"
    path.write_text(json.dumps(data))
    back = sidecar.read(path)
    assert back.job.prompt_sha256 is None and back.job.found_by == jobmatch.TASK_LIST
    del data["job"]["prompt_sha256"]  # a sidecar written before the digest was kept
    path.write_text(json.dumps(data))
    assert sidecar.read(path).job.prompt_sha256 is None


def test_the_search_polls_each_unknown_candidate_for_its_echo():
    """The worker's part, against the simulator: an ended task echoes its prompt, a
    PENDING one nothing; known ids and other models are not polled."""
    with Simulator(key=TEST_KEY) as sim:
        model = "wan2.2-t2v-plus"
        sim.add_task(
            "task-ended-0001", model=model, prompt=THEIRS, pending_polls=0, running_polls=0
        )
        sim.add_task("task-pending-01", model=model, prompt=MINE, pending_polls=5)
        api = TaskApi(sim.url, TEST_KEY, 5.0)
        try:
            rows = [
                {"task_id": "task-ended-0001", "model_name": model},
                {"task_id": "task-pending-01", "model_name": model},
                {"task_id": "task-ours-00001", "model_name": model},
                {"task_id": "task-other-0001", "model_name": "wan2.7-t2v"},
            ]
            item = LookupJob(
                "mine", model, None, lambda _: (0.0, 1.0), frozenset({"task-ours-00001"})
            )
            said = echoes(api, item, rows, frozenset())
        finally:
            api.close()
        assert said == {"task-ended-0001": jobmatch.digest(THEIRS), "task-pending-01": None}
        assert not sim.requests("task", "task-ours-00001")
        assert not sim.requests("task", "task-other-0001")


def test_the_key_files_are_known_by_device_and_inode(tmp_path, monkeypatch):
    """`api.key_file` and the systemd credential, as they are now; a missing one is none."""
    key = tmp_path / "key.txt"
    key.write_text("k\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / config.CREDENTIAL_NAME).write_text("k\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = config.from_mapping({"inbox": "/i", "outbox": "/o", "failed": "/f"})
    cfg = dataclasses.replace(cfg, api=dataclasses.replace(cfg.api, key_file=key))
    ids = {(p.stat().st_dev, p.stat().st_ino) for p in (key, creds / config.CREDENTIAL_NAME)}
    assert config.key_file_ids(cfg) == ids
    key.unlink()
    assert len(config.key_file_ids(cfg)) == 1
