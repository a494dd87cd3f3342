"""The simulator serves every kind in the table, over real HTTP on 127.0.0.1.

Every row's create endpoint takes its example request and refuses what the vendor refuses;
the task it makes answers in the row's shape, with real files behind signed URLs (MP4s
that walk as MP4s, pictures that pass the signature check); failed sub-results and the
task list (filters, pages, newest first, times in the API's zone) behave as the real ones.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.helpers import TEST_KEY, wait_until
from tests.kindsamples import EXAMPLES, IMG
from wansync.core import jobcheck, kinds
from wansync.core.shapes import Outputs, outputs_of
from wansync.remote import mp4check, picturecheck
from wansync.remote.api import api_time

AUTH = {"Authorization": f"Bearer {TEST_KEY}"}
CREATE = {**AUTH, "X-DashScope-Async": "enable"}
API_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}")  # no zone, as the API writes


def create(sim: Any, row: str, stray: Any = None, **changes: Any) -> requests.Response:
    """POST the example request of `row` (fields changed, `stray` input added) to its
    endpoint."""
    model, fields = EXAMPLES[row]
    kind = kinds.kind_for(model)
    assert kind is not None
    body = jobcheck.request_body(kind, model, {**fields, **changes})
    body["input"].update(stray or {})
    return post(sim, kind.endpoint, body)


def post(sim: Any, endpoint: str, body: dict[str, Any], headers: Any = None) -> requests.Response:
    url = sim.url + kinds.SERVICES + endpoint
    return requests.post(url, json=body, headers=headers or CREATE, timeout=10)


def poll(sim: Any, task_id: str) -> dict[str, Any]:
    answer = requests.get(f"{sim.url}/api/v1/tasks/{task_id}", headers=AUTH, timeout=10)
    assert answer.status_code == 200
    return answer.json()


def finished(sim: Any, task_id: str) -> dict[str, Any]:
    done = ("SUCCEEDED", "FAILED")
    return wait_until(
        lambda: (a := poll(sim, task_id))["output"]["task_status"] in done and a,
        10,
        "the task to finish",
    )


def made(sim: Any, row: str, **changes: Any) -> tuple[str, dict[str, Any]]:
    answer = create(sim, row, **changes)
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["output"]["task_id"]
    return task_id, finished(sim, task_id)


def fetched(url: str, **headers: str) -> requests.Response:
    return requests.get(url, headers=headers, timeout=10)


def check_bytes(data: bytes, video: bool) -> str:
    """The file checks the daemon runs, on a real file: the MP4 walk or the signature."""
    with tempfile.TemporaryFile() as file:
        file.write(data)
        file.flush()
        fd = file.fileno()
        if video:
            mp4check.check(fd, len(data))
            return "video/mp4"
        return picturecheck.check(fd, len(data)).content_type


# -- every row, end to end -------------------------------------------------------------------
@pytest.mark.parametrize("row", sorted(EXAMPLES))
def test_every_kind_is_created_at_its_endpoint_and_answers_in_its_shape(sim, row):
    """Create -> PENDING -> SUCCEEDED in the row's shape; every file fetched is real."""
    kind = kinds.kind_for(EXAMPLES[row][0])
    assert kind is not None
    task_id, answer = made(sim, row)
    output = answer["output"]
    assert output["task_status"] == "SUCCEEDED"
    found = outputs_of(output)
    assert isinstance(found, Outputs) and found.shape == kind.output
    expected = 1 if kind.files == "mp4" else EXAMPLES[row][1].get("n", kind.default_n)
    assert len(found.files) == expected
    hashes = []
    for file in found.files:
        body = fetched(file.url)
        assert body.status_code == 200
        ctype = check_bytes(body.content, kind.files == "mp4")
        assert body.headers["Content-Type"] == ctype
        hashes.append(hashlib.sha256(body.content).hexdigest())
    if kind.files == "picture":
        assert hashes == sim.picture_sha256s(task_id)
        assert len(set(hashes)) == len(hashes), "each picture is a different picture"
        assert answer["usage"]["image_count"] == expected
    else:
        assert hashes == [sim.video_sha256(task_id)]
    [made_entry] = sim.desk.created
    assert made_entry["model"] == EXAMPLES[row][0]


def test_a_model_at_another_kinds_endpoint_does_not_exist_there(sim):
    model, fields = EXAMPLES["text-to-image (wan2.5)"]
    kind = kinds.kind_for(model)
    assert kind is not None
    body = jobcheck.request_body(kind, model, fields)
    answer = post(sim, kinds.VIDEO_GENERATION, body)
    assert answer.status_code == 400
    assert answer.json()["code"] == "InvalidParameter"
    assert answer.json()["message"] == "Model not exist."
    missing = requests.post(sim.url + kinds.SERVICES + "aigc/nothing/here", json=body, timeout=10)
    assert missing.status_code == 404
    assert not sim.desk.created


@pytest.mark.parametrize(
    ("row", "changes", "words"),
    [
        ("text-to-video (wan2.7)", {"stray": {"img_url": IMG}}, "input.img_url: not a field"),
        ("text-to-video (wan2.7)", {"duration": 20}, "parameters.duration: 20 is not between"),
        ("text-to-image (wan2.5)", {"n": 0}, "parameters.n: 0 is not between 1 and 4"),
        ("image-to-video (wan2.7)", {"media": [{"type": "last_frame", "url": IMG}]}, "media:"),
        ("image generation (wan2.7-image)", {"n": 8}, "n: 8 pictures need enable_sequential"),
        ("speech-to-video (s2v)", {"resolution": "1080P"}, "parameters.resolution: '1080P'"),
    ],
)
def test_a_wrong_field_is_invalid_parameter_naming_it_and_makes_nothing(sim, row, changes, words):
    answer = create(sim, row, **changes)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "InvalidParameter"
    assert words in answer.json()["message"]
    assert not sim.desk.created
    assert sim.requests("submit")[-1]["status"] == 400  # logged before it was answered


def test_a_field_in_the_wrong_section_or_a_missing_prompt_is_refused(sim):
    body = {"model": "wan2.7-t2v", "input": {"prompt": "p"}, "parameters": {"prompt_extend": "x"}}
    answer = post(sim, kinds.VIDEO_GENERATION, body)
    assert "parameters.prompt_extend: 'x' is not true or false" in answer.json()["message"]
    body = {"model": "wan2.7-t2v", "input": {}, "parameters": {"duration": 5}}
    answer = post(sim, kinds.VIDEO_GENERATION, body)
    assert answer.json()["message"] == "input.prompt: required for text-to-video (wan2.7)"
    body = {"model": "wan2.7-t2v", "input": {"prompt": "p", "resolution": "720P"}}
    answer = post(sim, kinds.VIDEO_GENERATION, body)
    assert answer.json()["message"] == "input.resolution: belongs in parameters"
    no_async = post(sim, kinds.VIDEO_GENERATION, body, headers=AUTH)
    assert no_async.status_code == 403
    assert not sim.desk.created


# -- pictures ---------------------------------------------------------------------------------
def test_failed_sub_results_are_reported_as_the_vendor_reports_them(sim):
    """`[1 failed]` in the prompt: one element with code/message and no url, two pictures."""
    _, answer = made(sim, "text-to-image (wan2.5)", prompt="a kite [1 failed]", n=3)
    output = answer["output"]
    assert output["task_status"] == "SUCCEEDED"
    failures = [r for r in output["results"] if "url" not in r]
    assert [sorted(r) for r in failures] == [["code", "message"]]
    assert output["task_metrics"] == {"TOTAL": 3, "SUCCEEDED": 2, "FAILED": 1}
    assert answer["usage"] == {"image_count": 2}
    found = outputs_of(output)
    assert isinstance(found, Outputs) and len(found.files) == 2 and len(found.failed) == 1


def test_a_picture_task_none_of_whose_pictures_were_made_failed(sim):
    _, answer = made(sim, "text-to-image (wan2.5)", prompt="a kite [2 failed]", n=2)
    assert answer["output"]["task_status"] == "FAILED"
    assert answer["output"]["code"]


@pytest.mark.parametrize(
    ("marker", "types"),
    [
        ("[jpeg]", ["image/jpeg"] * 3),
        ("[webp]", ["image/webp"] * 3),
        ("[mixed]", ["image/png", "image/jpeg", "image/png"]),
        ("", ["image/png"] * 3),
    ],
)
def test_pictures_come_in_the_format_asked(sim, marker, types):
    _, answer = made(sim, "text-to-image (wan2.5)", prompt=f"a kite {marker}", n=3)
    found = outputs_of(answer["output"])
    assert isinstance(found, Outputs)
    seen = [check_bytes(fetched(f.url).content, video=False) for f in found.files]
    assert seen == types
    extensions = [f.url.split("?")[0].rsplit(".", 1)[1] for f in found.files]
    assert extensions == [
        {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}[t] for t in types
    ]


def test_picture_urls_resume_and_expire_like_video_urls(sim):
    sim.add_task("pictures-expire-1", shape="results", pictures=1, url_ttl=1.0)
    output = finished(sim, "pictures-expire-1")["output"]
    url = output["results"][0]["url"]
    whole = fetched(url)
    etag = whole.headers["ETag"]
    rest = fetched(url, Range="bytes=100-", **{"If-Range": etag})
    assert rest.status_code == 206 and rest.content == whole.content[100:]
    assert (
        rest.headers["Content-Range"] == f"bytes 100-{len(whole.content) - 1}/{len(whole.content)}"
    )
    changed = fetched(url, Range="bytes=100-", **{"If-Range": '"other"'})
    assert changed.status_code == 200 and changed.content == whole.content
    past = fetched(url, Range=f"bytes={len(whole.content)}-")
    assert past.status_code == 416
    forged = fetched(url.replace("Signature=", "Signature=0"))
    assert forged.status_code == 403 and b"AccessDenied" in forged.content
    expires = int(re.search(r"Expires=(\d+)", url)[1])  # type: ignore[index]
    wait_until(lambda: time.time() > expires + 0.05, 5, "the URL to expire")
    expired = fetched(url)
    assert expired.status_code == 403 and b"Request has expired" in expired.content


def test_a_truncated_picture_fails_the_signature_check(sim):
    sim.add_task("pictures-cut-001", shape="results", pictures=1)
    url = finished(sim, "pictures-cut-001")["output"]["results"][0]["url"]
    sim.add_fault("picture", "truncate", task_id="pictures-cut-001", at=200)
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    connection.request("GET", f"{parts.path}?{parts.query}")
    answer = connection.getresponse()
    with pytest.raises(http.client.IncompleteRead) as cut:
        answer.read()
    connection.close()
    assert len(cut.value.partial) == 200 < int(answer.headers["Content-Length"])
    with pytest.raises(picturecheck.NotPicture):
        check_bytes(cut.value.partial, video=False)
    sim.add_fault("picture", "html", task_id="pictures-cut-001")
    page = fetched(url)
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html"
    with pytest.raises(picturecheck.NotPicture):
        check_bytes(page.content, video=False)
    assert [r["status"] for r in sim.requests("picture")] == [200, "html"]


def test_unscripted_ids_by_keyword_and_knobs_for_broken_answers(sim):
    """ "pictures" -> two in results[]; "choices" -> one in choices[]; no file at all."""
    found = outputs_of(finished(sim, "some-pictures-1")["output"])
    assert isinstance(found, Outputs) and found.shape == "results" and len(found.files) == 2
    found = outputs_of(finished(sim, "some-choices-01")["output"])
    assert isinstance(found, Outputs) and found.shape == "choices" and len(found.files) == 1
    sim.add_task("bare-pictures-1", shape="results", pictures=2, with_url=False)
    bare = finished(sim, "bare-pictures-1")["output"]
    assert bare["task_status"] == "SUCCEEDED" and "results" not in bare
    sim.add_task("odd-pictures-01", shape="choices", picture_urls=["https://elsewhere.example/x"])
    choices = finished(sim, "odd-pictures-01")["output"]["choices"]
    assert choices[0]["message"]["content"][0]["image"] == "https://elsewhere.example/x"


def test_a_picture_kind_takes_uploaded_files_by_oss_url(sim):
    """The upload policy as today: an oss:// URL needs the resolve header and the object."""
    policy = requests.get(
        f"{sim.url}/api/v1/uploads",
        params={"action": "getPolicy", "model": "wan2.5-i2i-preview"},
        headers=AUTH,
        timeout=10,
    ).json()["data"]
    key = f"{policy['upload_dir']}/sofa.png"
    form = {"key": key, "Signature": policy["signature"], "policy": policy["policy"]}
    upload = requests.post(policy["upload_host"], data=form, files={"file": b"png"}, timeout=10)
    assert upload.status_code == 200
    body = {
        "model": "wan2.5-i2i-preview",
        "input": {"prompt": "p", "images": [f"oss://{key}"]},
        "parameters": {"n": 1},
    }
    without = post(sim, kinds.IMAGE2IMAGE, body)
    assert without.status_code == 400 and "OssResourceResolve" in without.json()["message"]
    headers = {**CREATE, "X-DashScope-OssResourceResolve": "enable"}
    assert post(sim, kinds.IMAGE2IMAGE, body, headers).status_code == 200
    body["input"]["images"] = ["oss://dashscope-instant/nowhere/x.png"]
    missing = post(sim, kinds.IMAGE2IMAGE, body, headers)
    assert missing.json()["code"] == "InvalidParameter.DataInspection"


# -- the task list ---------------------------------------------------------------------------
def listing(sim: Any, **params: Any) -> requests.Response:
    return requests.get(f"{sim.url}/api/v1/tasks", params=params, headers=AUTH, timeout=10)


def script(sim: Any, task_id: str, model: str, created: float, **spec: Any) -> None:
    sim.add_task(task_id, model=model, created=created, **spec)


def test_the_task_list_filters_pages_and_shows_the_newest_first(sim):
    now = time.time()
    for i in range(5):
        script(sim, f"listed-t2i-{i:04d}", "wan2.2-t2i-flash", now - 100 + i, shape="results")
    script(sim, "listed-video-001", "wan2.7-t2v", now - 50, pending_polls=10_000)
    script(sim, "hidden-t2i-0001", "wan2.2-t2i-flash", now - 40, listed=False)
    sim.add_task("no-model-task-1")  # scripted without a model: not the account's
    for i in range(2):
        poll(sim, f"listed-t2i-{i:04d}")  # PENDING -> …; the list shows the current status
    first = listing(sim, model_name="wan2.2-t2i-flash", page_no=1, page_size=2).json()
    assert [r["task_id"] for r in first["data"]] == ["listed-t2i-0004", "listed-t2i-0003"]
    assert (first["total"], first["total_page"], first["page_no"], first["page_size"]) == (
        5,
        3,
        1,
        2,
    )
    last = listing(sim, model_name="wan2.2-t2i-flash", page_no=3, page_size=2).json()
    assert [r["task_id"] for r in last["data"]] == ["listed-t2i-0000"]
    beyond = listing(sim, model_name="wan2.2-t2i-flash", page_no=4, page_size=2).json()
    assert beyond["data"] == [] and beyond["total"] == 5
    everything = listing(sim, page_size=100).json()
    assert everything["total"] == 6, "hidden and model-less tasks are not listed"
    assert everything["data"][0]["task_id"] == "listed-video-001"
    pending = listing(sim, status="PENDING", model_name="wan2.7-t2v").json()
    assert [r["task_id"] for r in pending["data"]] == ["listed-video-001"]
    row = everything["data"][0]
    assert row["model_name"] == "wan2.7-t2v" and row["status"] == "PENDING"
    assert API_TIME.fullmatch(row["gmt_create"])
    assert row["gmt_create"] == api_time(now - 50)


def test_the_task_list_window_is_in_the_apis_own_zone(sim):
    """`start_time`/`end_time` are UTC+8 wall times, to the second, both ends included."""
    created = float(int(time.time()) - 3600)
    script(sim, "windowed-task-01", "wan2.7-t2v", created)
    at = api_time(created, compact=True)
    inside = listing(sim, start_time=at, end_time=at).json()
    assert [r["task_id"] for r in inside["data"]] == ["windowed-task-01"]
    later = api_time(created + 1, compact=True)
    assert listing(sim, start_time=later).json()["total"] == 0
    earlier = api_time(created - 1, compact=True)
    assert listing(sim, end_time=earlier).json()["total"] == 0
    utc = time.strftime("%Y%m%d%H%M%S", time.gmtime(created))
    assert listing(sim, start_time=utc, end_time=utc).json()["total"] == 0, "not UTC"


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"page_size": 101}, "page_size: '101' is not a whole number from 1 to 100"),
        ({"page_size": 0}, "page_size: '0'"),
        ({"page_no": "x"}, "page_no: 'x'"),
        ({"start_time": "2025-09-25"}, "start_time: '2025-09-25' is not a time"),
        ({"status": "DONE"}, "status: 'DONE' is not one of PENDING, RUNNING"),
    ],
)
def test_a_list_query_it_cannot_read_is_invalid_parameter(sim, params, words):
    answer = listing(sim, **params)
    assert answer.status_code == 400
    assert answer.json()["code"] == "InvalidParameter" and words in answer.json()["message"]


def test_the_task_list_can_be_made_to_fail(sim):
    """Knobs: 429 with Retry-After, 500, a 200 that is not JSON; and the key is checked."""
    sim.add_fault("list", "status", status=429, retry_after="3")
    throttled = listing(sim)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
    sim.add_fault("list", "status", status=500)
    assert listing(sim).status_code == 500
    sim.add_fault("list", "malformed")
    broken = listing(sim)
    assert broken.status_code == 200 and broken.headers["Content-Type"] == "text/html"
    wrong = requests.get(
        f"{sim.url}/api/v1/tasks", headers={"Authorization": "Bearer nope"}, timeout=10
    )
    assert wrong.status_code == 401
    assert listing(sim).status_code == 200
    assert [r["status"] for r in sim.requests("list")] == [
        "status",
        "status",
        "malformed",
        401,
        200,
    ]


def test_a_created_task_is_in_the_list_under_its_model(sim):
    task_id, _ = made(sim, "image editing (wan2.5)")
    rows = listing(sim, model_name="wan2.5-i2i-preview").json()["data"]
    assert [(r["task_id"], r["status"]) for r in rows] == [(task_id, "SUCCEEDED")]
    assert API_TIME.fullmatch(rows[0]["end_time"])
    assert os.environ.get("DASHSCOPE_API_KEY") != TEST_KEY
