""".job files of every kind: checked, uploaded, created at the kind's endpoint, once.

Real daemon subprocesses against the simulator, which serves the create endpoint of every
row of the kinds table and checks each request as the vendor does. One daemon runs a job
of every row (`every_row`); each row's test then reads what that run did.

Picture rows: the test goes as far as the task being created and polled. Whether its
pictures land as files is the outputs work (`outputs` in the sidecar); a picture job that
did end is held to the same rules as a video one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import TEST_KEY, Env, wait_until
from tests.kindsamples import EXAMPLES
from wansync import config
from wansync.core import events as ev
from wansync.core import jobcheck, kinds
from wansync.core.errors import ConfigError
from wansync.simulator import Simulator
from wansync.simulator.model import sample_video

PNG = bytes.fromhex("89504e470d0a1a0a") + b"a small picture for a job"
FILES = {  # a local file of each class: its extension and its bytes
    "image": (".png", PNG),
    "audio": (".mp3", b"ID3\x04\x00 a short voice"),
    "video": (".mp4", sample_video()),
}
ENDPOINT_OF = {  # the vendor's create endpoint of each row, as its API reference gives it
    "text-to-video (wan2.7)": "aigc/video-generation/video-synthesis",
    "text-to-video (wan2.6)": "aigc/video-generation/video-synthesis",
    "text-to-video (wan2.5)": "aigc/video-generation/video-synthesis",
    "text-to-video (wan2.2, wanx2.1)": "aigc/video-generation/video-synthesis",
    "image-to-video (wan2.7)": "aigc/video-generation/video-synthesis",
    "image-to-video (wan2.6)": "aigc/video-generation/video-synthesis",
    "image-to-video (wan2.5)": "aigc/video-generation/video-synthesis",
    "image-to-video (wan2.2, wanx2.1)": "aigc/video-generation/video-synthesis",
    "first-and-last-frame (kf2v)": "aigc/image2video/video-synthesis",
    "reference-to-video (wan2.7)": "aigc/video-generation/video-synthesis",
    "video editing (wan2.7)": "aigc/video-generation/video-synthesis",
    "video (wan3.0)": "aigc/video-generation/video-synthesis",
    "speech-to-video (s2v)": "aigc/image2video/video-synthesis",
    "animate (move, mix)": "aigc/image2video/video-synthesis",
    "text-to-image (wan2.5)": "aigc/text2image/image-synthesis",
    "text-to-image (wan2.2, wanx2.1, wanx2.0)": "aigc/text2image/image-synthesis",
    "image editing (wan2.5)": "aigc/image2image/image-synthesis",
    "image generation (wan2.7-image)": "aigc/image-generation/generation",
    "text-to-image (wan2.6)": "aigc/image-generation/generation",
}


def drop_job(inbox: Path, name: str, doc: Any) -> Path:
    """Write a job the way producers should: a hidden temp file, then a rename."""
    tmp = inbox / f".{name}.job.tmp"
    tmp.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    target = inbox / f"{name}.job"
    os.rename(tmp, target)
    return target


def job_name(row: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in row.lower()).strip("-")


class Files:
    """Local files for a job, written into `folder` (under the inbox) one per URL slot."""

    def __init__(self, inbox: Path, folder: str) -> None:
        self.inbox, self.folder = inbox, folder
        (inbox / folder).mkdir(parents=True, exist_ok=True)
        self.made: dict[str, bytes] = {}  # path as the job names it -> bytes

    def make(self, media: str) -> dict[str, str]:
        ext, data = FILES[media]
        path = f"{self.folder}/{media}-{len(self.made)}{ext}"
        data = data + str(len(self.made)).encode()  # each file its own bytes
        (self.inbox / path).write_bytes(data)
        self.made[path] = data
        return {"path": path}


def localized(kind: kinds.Kind, fields: dict[str, Any], files: Files) -> dict[str, Any]:
    """The example's fields with every URL a local file instead (uploaded by the job)."""
    out = copy.deepcopy(fields)
    for key, value in fields.items():
        param = kind.param(key)
        if key == "media":
            assert kind.media is not None
            for i, item in enumerate(value):
                media_type = kind.media.type(item["type"])
                assert media_type is not None
                local = {k: v for k, v in item.items() if k != "url"}
                local["path"] = files.make(media_type.media)["path"]
                for extra in kind.media.extra:
                    if extra in item:
                        local[extra] = files.make("audio")
                out["media"][i] = local
        elif param is not None and param.media:
            out[key] = (
                [files.make(param.media) for _ in value]
                if isinstance(value, list)
                else files.make(param.media)
            )
    return out


def uploaded_as(body: Any, sim: Simulator, files: Files) -> Any:
    """`body` with each `oss://` URL the simulator holds replaced by `{path: P}`: the local
    file whose bytes it holds (so a body compares with the job's own fields)."""
    if isinstance(body, str) and body.startswith("oss://"):
        data = sim.desk.objects[body.removeprefix("oss://")]
        [path] = [p for p, d in files.made.items() if d == data]
        assert body.endswith("/" + Path(path).name), "the object is named after its file"
        return {"path": path}
    if isinstance(body, dict):
        return {k: uploaded_as(v, sim, files) for k, v in body.items()}
    if isinstance(body, list):
        return [uploaded_as(v, sim, files) for v in body]
    return body


def path_slots(node: Any, slot: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Every `{path: P}` under `node`, with where it is."""
    if isinstance(node, dict) and set(node) == {"path"}:
        return [(slot, node["path"])]
    if isinstance(node, dict):
        return [f for key, value in node.items() for f in path_slots(value, (*slot, key))]
    if isinstance(node, list):
        return [f for key, value in enumerate(node) for f in path_slots(value, (*slot, key))]
    return []


def creates(sim: Simulator, model: str) -> list[dict[str, Any]]:
    """The create requests for `model`, as the simulator logged them."""
    return [r for r in sim.requests("submit") if (r.get("body") or {}).get("model") == model]


# -- a job of every row, one daemon ----------------------------------------------------------
class Run:
    """What one daemon did with a job of every row."""

    def __init__(self, env: Env, sim: Simulator, files: dict[str, Files]) -> None:
        self.env, self.sim, self.files = env, sim, files
        self.ended: dict[str, dict[str, Any]] = {}
        self.polled: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def every_row(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("every-row")
    with Simulator(key=TEST_KEY, pending_polls=1, running_polls=1, max_in_progress=50) as sim:
        env = Env(root, sim, submit={"max_per_second": 50, "max_in_progress": 50})
        run = Run(env, sim, {})
        for row, (model, fields) in EXAMPLES.items():
            kind = kinds.kind_for(model)
            assert kind is not None and kind.name == row
            files = run.files[row] = Files(env.inbox, f"files-{job_name(row)}")
            drop_job(env.inbox, job_name(row), {"model": model, **localized(kind, fields, files)})
        daemon = env.start("run")
        try:
            for row, (model, _) in EXAMPLES.items():
                name = job_name(row)
                kind = kinds.kind_for(model)
                assert kind is not None
                if kind.files == "mp4":
                    run.ended[row] = env.wait_ended(name, timeout=90, kind=".job")[name]
                else:  # created and polled at least once (its pictures: the outputs work)
                    run.polled[row] = wait_until(
                        lambda name=name: _polled(env, sim, name), 90, f"{name} to be polled"
                    )
            wait_until(lambda: len(sim.requests("submit")) == len(EXAMPLES), 10, "the create log")
            assert daemon.stop() == 0
        finally:
            env.reap()
        yield run


def _polled(env: Env, sim: Simulator, name: str) -> dict[str, Any] | None:
    """The job's sidecar once its task exists and has been polled (in the inbox, or ended)."""
    data = env.sidecar(env.inbox, name) or env.ended(name, ".job")
    if data and data.get("task_id") and sim.requests("task", data["task_id"]):
        return data
    return None


@pytest.mark.parametrize("row", list(EXAMPLES))
def test_a_job_of_every_row_is_uploaded_created_at_its_endpoint_once(every_row, row):
    run, sim = every_row, every_row.sim
    model, fields = EXAMPLES[row]
    kind = kinds.kind_for(model)
    assert kind is not None
    files = run.files[row]
    data = run.ended.get(row) or run.polled[row]
    [create] = creates(sim, model)
    assert create["status"] == 200 and create["task_id"] == data["task_id"]
    assert create["endpoint"] == ENDPOINT_OF[row]
    made = [c for c in sim.desk.created if c["model"] == model]
    assert [c["task_id"] for c in made] == [data["task_id"]], "the task is created once"
    # every local file was uploaded and stands, as its oss:// URL, where the API wants it
    sent = uploaded_as(create["body"], sim, files)
    local = localized(kind, fields, Files(run.env.root / "again", "x"))
    expected = jobcheck.request_body(kind, model, local)
    assert _paths_renamed(sent) == _paths_renamed(expected)
    assert sorted(p for _, p in path_slots(sent)) == sorted(files.made), "each file, once"
    assert data["job"]["model"] == model and data["job"]["attempts"] == 1
    for path in files.made:
        assert (run.env.inbox / path).exists(), "a user's file is never moved or removed"
    if kind.files == "mp4":  # the video lands as it always has
        assert data["state"] == "succeeded", data["error"]
        mp4 = run.env.outbox / f"{job_name(row)}.mp4"
        assert hashlib.sha256(mp4.read_bytes()).hexdigest() == sim.video_sha256(data["task_id"])
        for suffix in (".job", ".task", ".status.json"):
            assert (run.env.outbox / f"{job_name(row)}{suffix}").exists(), suffix
    else:
        assert sim.requests("task", data["task_id"]), "the picture task is polled"
        if data["state"] == "succeeded":  # seen already (the outputs work): n pictures
            outputs = data["outputs"]
            assert len(outputs) == fields.get("n", kind.default_n)
            assert all((run.env.outbox / o["path"]).exists() for o in outputs)


def _paths_renamed(body: Any) -> Any:
    """`{path: P}` as `{path: P's extension}`: the same slots, whatever the files' names."""
    out = copy.deepcopy(body)
    for slot, path in list(path_slots(out)):
        node = out
        for key in slot:
            node = node[key]
        node["path"] = Path(path).suffix
    return out


def test_the_bodies_of_a_text_to_video_a_picture_and_a_messages_job(every_row):
    """Three bodies spelled out: prompt-only t2v, `n` pictures, messages-style images."""
    sim = every_row.sim
    [t2v] = creates(sim, "wan2.7-t2v")
    assert t2v["body"] == {
        "model": "wan2.7-t2v",
        "input": {"prompt": "a lighthouse at dusk"},
        "parameters": {"resolution": "720P", "ratio": "16:9", "duration": 5},
    }
    [t2i] = creates(sim, "wan2.2-t2i-flash")
    assert t2i["body"]["parameters"] == {"size": "1024*1024", "n": 4}
    assert t2i["endpoint"] == "aigc/text2image/image-synthesis"
    [s2v] = creates(sim, "wan2.2-s2v")
    assert set(s2v["body"]["input"]) == {"image_url", "audio_url"}
    assert all(u.startswith("oss://") for u in s2v["body"]["input"].values())
    [i2i] = creates(sim, "wan2.5-i2i-preview")
    assert len(i2i["body"]["input"]["images"]) == 2
    assert all(u.startswith("oss://") for u in i2i["body"]["input"]["images"])


# -- bad jobs of every kind -------------------------------------------------------------------
def test_bad_jobs_of_every_kind_fail_naming_the_field_and_send_nothing(env, sim, tmp_path):
    env.configure(submit={"max_per_second": 50})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "portrait.png").write_bytes(PNG)
    (outside / "dawn.png").write_bytes(PNG)
    os.symlink(outside, env.inbox / "linked")  # a folder link inside the inbox
    (env.inbox / "cat.png").symlink_to(outside / "portrait.png")  # a file link
    (env.inbox / "clip.png").write_bytes(PNG)
    (env.inbox / "voice.mp3").write_bytes(b"ID3 voice")
    url = "https://example.com/a.png"
    bad: dict[str, tuple[dict[str, Any], list[str]]] = {
        "t2v-img-url": (
            {"model": "wan2.7-t2v", "prompt": "p", "img_url": url},
            ["img_url: not a field of text-to-video (wan2.7)"],
        ),
        "t2i-duration": (
            {"model": "wan2.2-t2i-flash", "prompt": "p", "duration": 5},
            ["duration: not a field of text-to-image"],
        ),
        "s2v-prompt": (
            {"model": "wan2.2-s2v", "prompt": "p", "image_url": url, "audio_url": url},
            ["prompt: not a field of speech-to-video (s2v)"],
        ),
        "t2v-no-prompt": ({"model": "wan2.7-t2v", "duration": 5}, ["prompt: required for"]),
        "t2i-n-0": (
            {"model": "wan2.2-t2i-flash", "prompt": "p", "n": 0},
            ["n: 0 is not between 1 and 4"],
        ),
        "image-n-0": (
            {"model": "wan2.7-image", "prompt": "p", "n": 0},
            ["n: 0 is not between 1 and 12"],
        ),
        "s2v-through-a-folder-link": (
            {
                "model": "wan2.2-s2v",
                "image_url": {"path": "linked/portrait.png"},
                "audio_url": {"path": "voice.mp3"},
            },
            ["image_url.path: 'linked/portrait.png' goes through 'linked', a symbolic link"],
        ),
        "i2i-a-linked-file": (
            {"model": "wan2.5-i2i-preview", "prompt": "p", "images": [{"path": "cat.png"}]},
            ["images[0].path: 'cat.png' is a symbolic link"],
        ),
        "kf2v-outside-the-inbox": (
            {
                "model": "wan2.2-kf2v-flash",
                "first_frame_url": {"path": "../outside/dawn.png"},
                "last_frame_url": url,
            },
            ["first_frame_url.path: '../outside/dawn.png': '..' is not allowed"],
        ),
        "raw-outside-the-inbox": (
            {"model": "wan2.2-s2v", "input": {"image_url": {"path": "../outside/dawn.png"}}},
            ["input.image_url.path: '../outside/dawn.png': '..' is not allowed"],
        ),
        "animate-wrong-file": (
            {
                "model": "wan2.2-animate-move",
                "image_url": url,
                "video_url": {"path": "clip.png"},
                "mode": "wan-std",
            },
            ["video_url.path: 'clip.png' is not a video file (.mp4, .mov)"],
        ),
        "r2v-too-long": (
            {
                "model": "wan2.7-r2v",
                "prompt": "p",
                "media": [{"type": "reference_video", "url": "https://e.com/v.mp4"}],
                "duration": 15,
            },
            ["duration: 15 is over 10"],
        ),
        "unknown-model": (
            {"model": "wan9.9-new-thing", "prompt": "p"},
            ["model: 'wan9.9-new-thing' is not a known model (give endpoint:"],
        ),
        "unknown-model-raw": (
            {"model": "wan9.9-new-thing", "input": {"prompt": "p"}},
            ["model: 'wan9.9-new-thing' is not a known model (give endpoint:)"],
        ),
        "unknown-model-fields": (
            {"model": "wan9.9-new-thing", "endpoint": kinds.VIDEO_GENERATION, "prompt": "p"},
            ["model: 'wan9.9-new-thing' is not a known model, so its fields cannot be checked"],
        ),
        "raw-i2v-480p": (  # the raw form of a known model: its known values checked too
            {
                "model": "wan2.7-i2v",
                "input": {"media": [{"type": "first_frame", "url": {"path": "clip.png"}}]},
                "parameters": {"resolution": "480P", "not_in_the_table": 1},
            },
            ["parameters.resolution: '480P' is not one of 720P, 1080P"],
        ),
        "raw-and-fields": (
            {"model": "wan2.7-t2v", "input": {"prompt": "p"}, "duration": 5},
            ["duration: not allowed beside input and parameters"],
        ),
        "bad-endpoint": (
            {"model": "wan2.7-t2v", "endpoint": "../../tasks", "input": {"prompt": "p"}},
            ["endpoint: '../../tasks' is not a path under /api/v1/services/"],
        ),
        "every-problem-at-once": (
            {"model": "wan2.7-t2v", "n": 0, "duration": 99, "colour": "red"},
            [
                "n: not a field of text-to-video (wan2.7)",
                "duration: 99 is not between 2 and 15",
                "colour: unknown field",
                "prompt: required for text-to-video (wan2.7)",
            ],
        ),
    }
    for name, (doc, _) in bad.items():
        drop_job(env.inbox, name, doc)
    result = env.cli("once", "--timeout", "30")
    assert result.returncode == 1, result.stderr
    for name, (_, words) in bad.items():
        data = env.ended(name, ".job")
        assert data is not None, name
        assert data["state"] == "failed" and data["error"]["code"] == "InvalidJobFile", name
        message = data["error"]["message"]
        assert message.startswith(f"{name}.job: "), message
        for said in words:
            assert said in message, (name, message)
        assert (env.failed / f"{name}.job").exists()
    assert not sim.requests("submit"), "nothing invalid may be created"
    assert not sim.requests("upload") and not sim.requests("policy"), "nor uploaded"
    assert (outside / "portrait.png").read_bytes() == PNG


# -- the raw form ------------------------------------------------------------------------------
def test_a_raw_job_for_a_model_the_table_does_not_know_goes_to_its_endpoint(env, sim):
    """`endpoint` + `input`/`parameters` as given: sent as is, `{path}`s uploaded first."""
    env.configure(submit={"max_per_second": 50})
    sim.desk.add_model("wan9.9-new-thing", "aigc/new-thing/synthesis")
    (env.inbox / "pics").mkdir()
    (env.inbox / "pics" / "a.png").write_bytes(PNG)
    (env.inbox / "voice.wav").write_bytes(b"RIFF a voice")
    new = {
        "model": "wan9.9-new-thing",
        "endpoint": "aigc/new-thing/synthesis",
        "input": {
            "prompt": "a new thing",
            "media": [{"type": "first_frame", "url": {"path": "pics/a.png"}}],
            "style": {"anything": ["the", "table", "does", "not", "know"]},
        },
        "parameters": {"resolution": "720P", "novel": True},
        "meta": {"shot": 1},
    }
    known = {  # a known model in the raw form: its row's endpoint; files and known values checked
        "model": "wan2.2-s2v",
        "input": {"image_url": {"path": "pics/a.png"}, "audio_url": {"path": "voice.wav"}},
        "parameters": {"resolution": "480P"},
    }
    drop_job(env.inbox, "new", new)
    drop_job(env.inbox, "known", known)
    result = env.cli("once", "--timeout", "30")
    assert result.returncode == 0, result.stderr
    ended = env.wait_ended("new", "known", kind=".job")
    assert all(e["state"] == "succeeded" for e in ended.values())
    wait_until(lambda: len(sim.requests("submit")) == 2, 10, "the create log")
    [sent] = creates(sim, "wan9.9-new-thing")
    assert sent["endpoint"] == "aigc/new-thing/synthesis"
    oss = sent["body"]["input"]["media"][0]["url"]
    assert sim.desk.objects[oss.removeprefix("oss://")] == PNG
    expected = copy.deepcopy({k: new[k] for k in ("model", "input", "parameters")})
    expected["input"]["media"][0]["url"] = oss
    assert sent["body"] == expected, "sent as given, but for the uploaded file's URL"
    assert ended["new"]["meta"] == {"shot": 1}
    [s2v] = creates(sim, "wan2.2-s2v")
    assert s2v["endpoint"] == kinds.IMAGE2VIDEO
    audio = s2v["body"]["input"]["audio_url"].removeprefix("oss://")
    assert sim.desk.objects[audio] == b"RIFF a voice"
    for name in ("new", "known"):
        assert (env.outbox / f"{name}.mp4").read_bytes()[4:8] == b"ftyp"


# -- per-model max_in_progress -----------------------------------------------------------------
def test_a_model_pattern_limit_holds_back_its_own_jobs_only(tmp_path):
    """`{"wan2.2-s2v*": 1, "*": 5}`: one s2v task at a time; the t2v jobs behind go out."""
    with Simulator(key=TEST_KEY, pending_polls=10_000, max_in_progress=50) as sim:
        limits = {"wan2.2-s2v*": 1, "*": 5}
        env = Env(tmp_path, sim, submit={"max_per_second": 50, "max_in_progress": limits})
        env.config_path.write_text(yaml.safe_dump(env.settings, sort_keys=False))  # in order
        url = "https://example.com/a.png"
        s2v = {"model": "wan2.2-s2v", "image_url": url, "audio_url": "https://e.com/a.mp3"}
        d = env.start("run")
        try:
            for i in range(3):
                drop_job(env.inbox, f"s2v-{i}", s2v)
            for i in range(3):
                d.wait_event("job.queued", name=f"s2v-{i}")
            for i in range(3):
                drop_job(env.inbox, f"t2v-{i}", {"model": "wan2.7-t2v", "prompt": f"t2v {i}"})
            wait_until(lambda: len(creates(sim, "wan2.7-t2v")) == 3, 30, "the t2v jobs to go out")
            assert len(creates(sim, "wan2.2-s2v")) == 1, "one s2v task at a time"
            assert env.sidecar(env.inbox, "s2v-1")["state"] == "queued"
            first = creates(sim, "wan2.2-s2v")[0]["task_id"]
            with sim._lock:  # the s2v task finishes: the next s2v job may go
                sim.tasks[first].pending_polls = 0
                sim.tasks[first].running_polls = 0
            env.wait_ended("s2v-0", timeout=30, kind=".job")
            wait_until(lambda: len(creates(sim, "wan2.2-s2v")) == 2, 30, "the next s2v job")
            done = [r["t"] for r in sim.requests("task", first) if r["task_status"] == "SUCCEEDED"]
            assert done and done[0] < creates(sim, "wan2.2-s2v")[1]["t"]
            assert len(creates(sim, "wan2.2-s2v")) == 2
            assert d.stop() == 0
        finally:
            env.reap()


def test_in_progress_limits_count_each_task_against_its_first_pattern():
    """Pure: first pattern wins; a `.task`'s task (model unknown) counts as `*`."""
    from wansync.core import inprogress

    limits = (("wan2.2-s2v*", 1), ("wan2.7-*", 2), ("*", 3))
    assert inprogress.pattern_for(limits, "WAN2.2-S2V") == "wan2.2-s2v*"
    assert inprogress.pattern_for(limits, "wan2.7-t2v") == "wan2.7-*"
    assert inprogress.pattern_for(limits, None) == "*"
    running = {"wan2.2-s2v": 1, "wan2.7-t2v": 1, None: 2}
    assert inprogress.room(limits, "wan2.2-s2v", running) == 0
    assert inprogress.room(limits, "wan2.7-r2v", running) == 1
    assert inprogress.room(limits, "wan2.2-t2i-flash", running) == 1  # 2 `.task`s count here
    queued = ["wan2.2-s2v", "wan2.2-s2v", "wan2.2-t2i-flash"]
    assert inprogress.first_with_room(limits, queued, lambda m: m, running) == "wan2.2-t2i-flash"
    full = {**running, None: 3}
    assert inprogress.first_with_room(limits, queued, lambda m: m, full) is None
    only_s2v = (("wan2.2-s2v*", 1),)  # a model no pattern matches has no limit
    assert inprogress.room(only_s2v, "wan2.7-t2v", {"wan2.7-t2v": 99}) is None
    assert inprogress.room(only_s2v, None, {None: 99}) is None
    assert inprogress.first_with_room(only_s2v, queued, lambda m: m, running) == "wan2.2-t2i-flash"
    plain = (("*", 5),)  # a plain number: every task, known model or not, counts
    assert inprogress.room(plain, "wan2.7-i2v", {None: 3, "wan2.2-s2v": 1}) == 1


def test_max_in_progress_takes_a_number_or_patterns_in_order():
    def limits(value: Any) -> Any:
        return config.from_mapping({"submit": {"max_in_progress": value}}).submit.max_in_progress

    assert limits(5) == (("*", 5),)
    assert limits({"Wan2.2-S2V*": 1, "wan2.7-*": 2, "*": 5}) == (
        ("wan2.2-s2v*", 1),
        ("wan2.7-*", 2),
        ("*", 5),
    )
    assert config.from_mapping(None).submit.max_in_progress == (("*", 5),)
    bad = {
        0: "submit.max_in_progress: 0 is not a whole number >= 1, nor a mapping",
        "five": "submit.max_in_progress: 'five' is not a whole number >= 1, nor a mapping",
        (): "submit.max_in_progress: () is not",
        frozenset(): "submit.max_in_progress: frozenset() is not",
    }
    for value, said in bad.items():
        with pytest.raises(ConfigError) as caught:
            limits(value)
        assert str(caught.value).startswith(said), str(caught.value)
    named = {
        "wan2.2-s2v*: 0 is not a whole number >= 1": {"wan2.2-s2v*": 0},
        "wan2.2-s2v*: True is not a whole number >= 1": {"wan2.2-s2v*": True},
        "wan 2: 'wan 2' is not a model pattern": {"wan 2": 1},
        "WAN*: given twice": {"wan*": 1, "WAN*": 2},
        "wan2.2-s2v*: comes after '*', which every model matches first": {
            "*": 5,
            "wan2.2-s2v*": 1,
        },
    }
    for said, value in named.items():
        with pytest.raises(ConfigError) as caught:
            limits(value)
        assert str(caught.value).startswith(f"submit.max_in_progress.{said}"), str(caught.value)
    with pytest.raises(ConfigError, match=r"^submit\.max_in_progress: an empty mapping"):
        limits({})


# -- wansync submit: every kind ----------------------------------------------------------------
def test_submit_writes_a_text_to_video_job_that_becomes_an_mp4(env, sim):
    env.configure(submit={"max_per_second": 50})
    result = env.cli(
        "submit", "--model", "wan2.7-t2v", "--prompt", "a lighthouse", "--duration", "5",
        "--wait", "--timeout", "30",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == env.outbox / "video.mp4"
    assert (env.outbox / "video.mp4").read_bytes()[4:8] == b"ftyp"
    job = yaml.safe_load((env.outbox / "video.job").read_text())
    assert job == {"model": "wan2.7-t2v", "prompt": "a lighthouse", "duration": 5}
    [sent] = creates(sim, "wan2.7-t2v")
    assert sent["endpoint"] == kinds.VIDEO_GENERATION


def test_submit_n_pictures_and_a_picture_for_a_picture_model(env, sim, tmp_path):
    result = env.cli("submit", "--model", "wan2.2-t2i-flash", "--prompt", "a kite", "--n", "4")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == env.inbox / "picture.job"
    job = yaml.safe_load((env.inbox / "picture.job").read_text())
    assert job == {"model": "wan2.2-t2i-flash", "prompt": "a kite", "n": 4}
    cat = tmp_path / "cat.png"
    cat.write_bytes(PNG)
    result = env.cli("submit", str(cat), "--model", "wan2.5-i2i-preview", "--prompt", "a hat")
    assert result.returncode == 0, result.stderr
    job = yaml.safe_load((env.inbox / "cat.job").read_text())
    assert job["images"] == [{"path": str(cat)}]
    result = env.cli("submit", str(cat), "--model", "wan2.6-i2v", "--prompt", "she smiles")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load((env.inbox / "cat-2.job").read_text())["img_url"] == {"path": str(cat)}


def test_submit_raw_json_writes_the_request_as_given(env, sim, tmp_path):
    env.configure(submit={"max_per_second": 50})
    face, voice = tmp_path / "face.png", tmp_path / "voice.mp3"
    face.write_bytes(PNG)
    voice.write_bytes(b"ID3 a voice")
    given = {"image_url": {"path": str(face)}, "audio_url": {"path": str(voice)}}
    result = env.cli(
        "submit", "--model", "wan2.2-s2v", "--input-json", json.dumps(given),
        "--parameters-json", '{"resolution": "480P"}', "--name", "talk", "--wait",
        "--timeout", "30",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    job = yaml.safe_load((env.outbox / "talk.job").read_text())
    assert job == {"model": "wan2.2-s2v", "input": given, "parameters": {"resolution": "480P"}}
    [sent] = creates(sim, "wan2.2-s2v")
    assert sent["endpoint"] == kinds.IMAGE2VIDEO
    assert sim.desk.objects[sent["body"]["input"]["audio_url"].removeprefix("oss://")] == (
        b"ID3 a voice"
    )


def test_submit_refuses_bad_combinations_with_one_line(env, tmp_path):
    cat = tmp_path / "cat.png"
    cat.write_bytes(PNG)
    refused = {
        ("--model", "wan2.7-t2v", "--prompt", "p", str(cat)): (
            "IMAGE_OR_URL: wan2.7-t2v (text-to-video (wan2.7)) takes no picture"
        ),
        ("--model", "wan2.7-t2v"): "--prompt: required for text-to-video (wan2.7)",
        ("--model", "wan2.7-t2v", "--prompt", "p", "--n", "2"): "--n: not a field of",
        ("--model", "wan2.2-t2i-flash", "--prompt", "p", "--n", "0"): "--n: 0 is not between 1",
        ("--model", "wan9.9-x", "--prompt", "p"): "--model: 'wan9.9-x' is not a known model",
        ("--input-json", "{}", "--prompt", "p"): "--input-json gives the request as the API "
        "takes it: --prompt cannot be given beside it",
        (str(cat), "--input-json", '{"a": 1}'): "--input-json gives the request as the API "
        "takes it: IMAGE_OR_URL cannot be given beside it",
        ("--parameters-json", "{}"): "--parameters-json needs --input-json",
        ("--input-json", "[1]"): "--input-json: must be a JSON object",
        ("--input-json", "{nope"): "--input-json: not JSON: ",
        ("--model", "wan9.9-x", "--input-json", '{"prompt": "p"}'): "model: 'wan9.9-x' is "
        "not a known model (give endpoint:)",
        ("--model", "wan2.7-i2v", "--prompt", "p", str(tmp_path / "song.mp3")): "song.mp3: no "
        "such file or directory",
    }
    for argv, said in refused.items():
        result = env.cli("submit", *argv)
        assert result.returncode == 2, (argv, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("wansync: "), (argv, result.stderr)
        assert said in lines[0], (argv, lines[0])
    assert not list(env.inbox.glob("*.job")), "nothing is written for a refused job"


def test_jobs_held_by_the_limit_do_not_wake_the_loop_at_once(tmp_path):
    """No room: the submitter asks to be woken at its next recount, not now (the loop
    spun at full CPU while jobs waited). Seen failing before the fix: next_time was T0."""
    from tests.test_submitter_machine import T0, Machine

    m = Machine(tmp_path, in_progress=10**6)
    m.sub.discover(m.drop("a"), T0)
    m.sub.dispatch(T0)
    assert m.sent() == []
    woken = m.sub.next_time()
    assert woken is not None and woken >= T0.mono + 1.0
    m.running = 0  # a task ended: the event makes the next dispatch recount at once
    m.sub(ev.TaskRemoved(at=T0.wall, name="x", task_id="t", detail="gone"))
    m.sub.dispatch(T0)
    assert [type(item).__name__ for item in m.sent()] == ["PostJob"]
