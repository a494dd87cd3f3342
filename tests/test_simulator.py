"""The simulator as a DashScope client sees it: what it echoes, reports, refuses and holds.

Plain HTTP against a real simulator on 127.0.0.1 (the official SDK is not a dependency;
these check the wire format it reads).
"""

from __future__ import annotations

import ast
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import TEST_KEY, wait_until
from wansync.remote.api import SUBMIT_PATH

AUTH = {"Authorization": f"Bearer {TEST_KEY}"}
CREATE_HEADERS = {**AUTH, "X-DashScope-Async": "enable"}
FRAME = [{"type": "first_frame", "url": "https://example.com/frame.png"}]
ROOT = Path(__file__).resolve().parent.parent


def create(
    sim: Any, model: str = "wan2.7-i2v", prompt: str = "a cat waves", timeout: float = 10
) -> requests.Response:
    body = {"model": model, "input": {"prompt": prompt, "media": FRAME}}
    return requests.post(sim.url + SUBMIT_PATH, json=body, headers=CREATE_HEADERS, timeout=timeout)


def poll(sim: Any, task_id: str) -> dict[str, Any]:
    answer = requests.get(f"{sim.url}/api/v1/tasks/{task_id}", headers=AUTH, timeout=10)
    assert answer.status_code == 200
    return answer.json()


def poll_until_done(sim: Any, task_id: str) -> dict[str, Any]:
    return wait_until(
        lambda: (a := poll(sim, task_id))["output"]["task_status"] == "SUCCEEDED" and a,
        10,
        "the task to succeed",
    )


def mvhd_seconds(mp4: bytes) -> float:
    """Read the movie header the way a player does (independent of the simulator's code)."""
    at = mp4.index(b"mvhd") + 4  # version(1) flags(3) created(4) modified(4) scale duration
    version = mp4[at]
    if version == 1:
        scale, duration = struct.unpack(">IQ", mp4[at + 20 : at + 32])
    else:
        scale, duration = struct.unpack(">II", mp4[at + 12 : at + 20])
    return duration / scale


def test_orig_prompt_echoes_the_prompt_sent_to_the_create_endpoint(sim):
    """A task made by the create endpoint reports the prompt that was sent, not a stock one."""
    task_id = create(sim, prompt="a heron lifts off the lake").json()["output"]["task_id"]
    answer = poll_until_done(sim, task_id)
    assert answer["output"]["orig_prompt"] == "a heron lifts off the lake"


def test_the_prompt_is_echoed_with_the_end_as_the_vendor_does(sim):
    """As the vendor's pages show: a PENDING or RUNNING answer carries the id, status and
    times, no `orig_prompt`; SUCCEEDED echoes it (a classic picture task in each of
    `results[]`), FAILED gives its code and message. wansync's check of a task taken from
    the task list (jobmatch.py) relies on exactly this."""
    task_id = create(sim, prompt="a heron lifts off the lake").json()["output"]["task_id"]
    seen = [poll(sim, task_id)["output"] for _ in range(3)]
    assert [o["task_status"] for o in seen] == ["PENDING", "RUNNING", "SUCCEEDED"]
    assert [("orig_prompt" in o) for o in seen] == [False, False, True]
    body = {"model": "wan2.2-t2i-flash", "input": {"prompt": "a heron"}, "parameters": {"n": 2}}
    url = sim.url + "/api/v1/services/aigc/text2image/image-synthesis"
    made = requests.post(url, json=body, headers=CREATE_HEADERS, timeout=10).json()
    done = poll_until_done(sim, made["output"]["task_id"])["output"]
    assert "orig_prompt" not in done and {r["orig_prompt"] for r in done["results"]} == {"a heron"}
    failed = create(sim, prompt="a heron [fail]").json()["output"]["task_id"]
    seen = [poll(sim, failed)["output"] for _ in range(3)]
    assert seen[-1]["task_status"] == "FAILED" and "orig_prompt" not in seen[-1]


def test_usage_durations_match_the_video_file_served(sim):
    """`duration`, `video_duration` and `output_video_duration` are the served MP4's length."""
    task_id = create(sim).json()["output"]["task_id"]
    answer = poll_until_done(sim, task_id)
    body = requests.get(answer["output"]["video_url"], timeout=10).content
    seconds = round(mvhd_seconds(body))
    assert seconds == 3, "the shipped sample is a 3 s clip"
    usage = answer["usage"]
    assert usage["duration"] == usage["video_duration"] == seconds
    assert usage["output_video_duration"] == seconds
    assert usage["video_count"] == 1 and usage["SR"] == 720


def test_an_unknown_model_is_refused_as_dashscope_refuses_it(sim):
    """HTTP 400 `InvalidParameter` "Model not exist.", and no task is made."""
    answer = create(sim, model="wan9.9-i2v-nonesuch")
    assert answer.status_code == 400
    assert answer.json()["code"] == "InvalidParameter"
    assert answer.json()["message"] == "Model not exist."
    assert not sim.desk.created


def test_a_job_for_an_unknown_model_fails_with_the_apis_words(env, sim):
    """End to end: the daemon fails the job with the API's code and message.

    (A model of no row is sent only in the raw form with an `endpoint`; without one the
    job is refused before anything is sent, tests/test_job_kinds.py.)
    """
    env.configure(submit={"max_per_second": 50})
    (env.inbox / "odd.job").write_text(
        "model: wan9.9-i2v-nonesuch\nendpoint: aigc/video-generation/video-synthesis\n"
        "input: {prompt: p, img_url: 'https://example.com/a.png'}\n"
    )
    result = env.cli("once", "--timeout", "30")
    assert result.returncode == 1, result.stderr
    data = env.sidecar(env.failed, "odd")
    assert data["error"]["code"] == "InvalidParameter"
    assert data["error"]["message"] == "Model not exist."


def test_cancel_endpoint_cancels_only_a_pending_task(sim):
    """PENDING → 200 and CANCELED; RUNNING, SUCCEEDED and unknown ids → 400 UnsupportedOperation."""
    sim.add_task("waiting-task-01", pending_polls=10_000)
    sim.add_task("running-task-01", queue_seconds=0, run_seconds=1000)
    sim.add_task("finished-task-1", queue_seconds=0, run_seconds=0)

    def cancel(task_id: str, headers: dict[str, str] = AUTH) -> requests.Response:
        url = f"{sim.url}/api/v1/tasks/{task_id}/cancel"
        return requests.post(url, headers=headers, timeout=10)

    accepted = cancel("waiting-task-01")
    assert accepted.status_code == 200 and set(accepted.json()) == {"request_id"}
    output = poll(sim, "waiting-task-01")["output"]
    assert output["task_status"] == "CANCELED" and output["end_time"]
    for task_id, status in [
        ("waiting-task-01", "CANCELED"),
        ("running-task-01", "RUNNING"),
        ("finished-task-1", "SUCCEEDED"),
    ]:
        refused = cancel(task_id)
        assert refused.status_code == 400, task_id
        assert refused.json()["code"] == "UnsupportedOperation"
        assert f"is {status}, not PENDING" in refused.json()["message"]
    unknown = cancel("an-unknown-task-1")  # ids with "unknown" do not exist
    assert unknown.status_code == 400 and "does not exist" in unknown.json()["message"]
    assert cancel("waiting-task-01", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert cancel("never-polled-task").status_code == 200, "an unseen id starts PENDING"
    assert [r["method"] for r in sim.requests("cancel")] == ["POST"] * 7


def test_a_request_is_logged_before_its_answer_begins(sim):
    """A client holding an answer (its headers) finds the request in `requests()`: logged
    before the first byte went out, `t` when it arrived, `answered` when its answer began."""
    sim.add_task("slow-video-log01", video_size=2_000_000, video_rate=200_000)  # a 10 s body
    url = poll_until_done(sim, "slow-video-log01")["output"]["video_url"]
    with requests.get(url, stream=True, timeout=10) as answer:  # returns with the headers
        assert answer.status_code == 200
        [logged] = sim.requests("video", "slow-video-log01")
    assert logged["status"] == 200 and logged["t"] <= logged["answered"]
    polls = sim.requests("task", "slow-video-log01")
    assert [p["task_status"] for p in polls] == ["PENDING", "RUNNING", "SUCCEEDED"]
    assert all(p["status"] == 200 and p["t"] <= p["answered"] for p in polls)


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_stalled_create_is_held_unanswered_until_the_client_leaves(sim, when):
    """`stall("create")` withholds the answer; the task exists only with `when="after"`."""
    stall = sim.stall("create", when=when)
    with pytest.raises(requests.exceptions.ReadTimeout):
        create(sim, prompt=f"held {when}", timeout=1)  # then the client hangs up
    assert stall.reached.is_set()
    wait_until(lambda: sim.requests("submit"), 10, "the held create to be logged")
    assert sim.requests("submit")[0]["status"] == f"stalled-{when}"
    assert len(sim.desk.created) == (1 if when == "after" else 0)
    assert create(sim).status_code == 200, "a stall holds one request only"


def test_simulate_help_shows_the_defaults_and_the_readme_names_the_options():
    """`wansync simulate --help` states each option's default; docs/commands.md names them too."""
    result = subprocess.run(
        [sys.executable, "-m", "wansync", "simulate", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for option, default in [("--polls", "2"), ("--port", "8765"), ("--key", "sim-key")]:
        assert f"{option} " in text and f"(default: {default})" in text, option
    assert "--seconds SECONDS" in text and "default: unset" in text
    page = (ROOT / "docs" / "commands.md").read_text()
    by_hand = page.split("\n## Trying it by hand", 1)[1].split("\n## ", 1)[0]
    for word in ("--polls", "--seconds", "/cancel", "wansync cancel"):
        assert word in by_hand, word


def test_the_simulator_modules_import_one_way():
    """No module of the simulator subpackage imports one that imports it back (no cycle)."""
    folder = ROOT / "wansync" / "simulator"
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module} if node.module else {a.name for a in node.names}
        graph[path.stem] = deps - {"__init__"}
    order: list[str] = []
    while graph:
        ready = sorted(m for m, deps in graph.items() if deps <= set(order))
        assert ready, f"an import cycle among {sorted(graph)}"
        order += ready
        for m in ready:
            del graph[m]
    assert order.index("model") < order.index("server")


def test_faults_posted_over_http_are_checked_and_a_text_body_works(sim):
    """`POST /_sim/faults`: a redirect and a malformed answer whose `body` is text work
    (302 to it; that body as the answer); a fault that is not one (not JSON, not an
    object, unknown target, kind or field, a wrong type) is 400 naming what is wrong,
    and the simulator goes on serving."""
    url = sim.url + "/_sim/faults"
    sim.add_task("redirected-0001")
    sim.add_task("malformed-0001")
    ok = requests.post(
        url,
        json={"target": "video", "kind": "redirect", "body": "/elsewhere.mp4"},
        timeout=10,
    )
    assert ok.status_code == 200, ok.text
    video = requests.get(sim.url + "/videos/redirected-0001.mp4", allow_redirects=False, timeout=10)
    assert video.status_code == 302 and video.headers["Location"] == "/elsewhere.mp4"
    said = '{"output": "not what a task answers"}'
    fault = {"target": "task", "kind": "malformed", "body": said, "task_id": "malformed-0001"}
    assert requests.post(url, json=fault, timeout=10).status_code == 200
    answer = requests.get(f"{sim.url}/api/v1/tasks/malformed-0001", headers=AUTH, timeout=10)
    assert answer.status_code == 200 and answer.text == said
    bad = {
        b"{not json": "the body is not JSON",
        b"[1, 2]": "must be a JSON object",
        b'{"target": "moon", "kind": "reset"}': "target: 'moon' is not one of",
        b'{"target": "task", "kind": "explode"}': "kind: 'explode' is not one of",
        b'{"target": "task", "kind": "reset", "colour": 1}': "colour: not a field",
        b'{"target": "video", "kind": "redirect", "body": 5}': "body: must be text",
        b'{"target": "task", "kind": "status", "count": "x"}': "count: must be a whole number",
        b'{"target": "task", "kind": "slow", "delay": 1e9}': "delay: must be seconds",
    }
    for body, words in bad.items():
        refused = requests.post(url, data=body, timeout=10)
        assert refused.status_code == 400, (body, refused.text)
        assert refused.json()["code"] == "InvalidParameter" and words in refused.json()["message"]
    tasks = requests.post(sim.url + "/_sim/tasks", data=b'{"no_task_id": 1}', timeout=10)
    assert tasks.status_code == 400, tasks.text
    assert poll(sim, "redirected-0001")["output"]["task_id"] == "redirected-0001", "still up"
