"""The kinds table, a job's fields against it, and the files a SUCCEEDED output names.

In-process, no I/O: `core.kinds` (the table), `core.jobcheck` (fields, the create request)
and `core.shapes` (outputs), including hostile answers.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.kindsamples import AUDIO, CLIP, EXAMPLES, IMG, IMG2
from wansync.core import jobcheck, kinds, shapes
from wansync.core.fields import FILE_CLASSES
from wansync.core.kinds import KINDS, kind_for
from wansync.core.shapes import MAX_FILES, MAX_SCANNED, Outputs, Unsupported, outputs_of

VENDOR = "https://www.alibabacloud.com/help/en/model-studio/"


def kind(name: str) -> kinds.Kind:
    found = kind_for(EXAMPLES[name][0])
    assert found is not None
    return found


def problems(name: str, **changes: Any) -> list[str]:
    """The example job of row `name`, with fields changed (None removes one)."""
    fields = copy.deepcopy(EXAMPLES[name][1])
    for key, value in changes.items():
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
    return jobcheck.check_job(kind(name), fields)


def one(found: list[str]) -> str:
    assert len(found) == 1, found
    return found[0]


# -- the table ------------------------------------------------------------------------------
def test_every_row_has_an_example_and_its_example_passes():
    """Each row is exercised: its example job matches it and has no problem."""
    assert {k.name for k in KINDS} == set(EXAMPLES)
    for name, (model, fields) in EXAMPLES.items():
        assert kind_for(model) is kind(name), model
        assert jobcheck.check_job(kind(name), fields) == [], name


def test_every_row_is_consistent_and_cites_the_vendor_page():
    """Endpoint known, shape matches its files, a vendor page cited, names unique."""
    assert len({k.name for k in KINDS}) == len(KINDS)
    for row in KINDS:
        assert row.endpoint in kinds.ENDPOINTS, row.name
        assert (row.output == "video_url") == (row.files == "mp4"), row.name
        assert row.messages == (row.output == "choices"), row.name
        assert row.page.startswith(VENDOR) and len(row.page) > len(VENDOR), row.name
        assert len({p.name for p in row.fields}) == len(row.fields), row.name
        for param in row.fields:
            assert param.media is None or param.media in FILE_CLASSES


def test_every_rows_endpoint_is_the_one_the_readme_rule_gives():
    """kf2v, animate, s2v -> image2video; other video -> video-generation; image rules."""
    for name, (model, _) in EXAMPLES.items():
        row = kind(name)
        assert row.endpoint == kinds.endpoint_rule(model, row.files, row.messages), name
    rule = kinds.endpoint_rule
    assert rule("wan2.2-kf2v-flash", "mp4", False) == kinds.IMAGE2VIDEO
    assert rule("wan2.2-animate-mix", "mp4", False) == kinds.IMAGE2VIDEO
    assert rule("wan2.2-s2v", "mp4", False) == kinds.IMAGE2VIDEO
    assert rule("wan2.7-r2v", "mp4", False) == kinds.VIDEO_GENERATION
    assert rule("wan2.5-i2i-preview", "picture", False) == kinds.IMAGE2IMAGE
    assert rule("wanx2.1-imageedit", "picture", False) == kinds.IMAGE2IMAGE
    assert rule("wan2.2-t2i-plus", "picture", False) == kinds.TEXT2IMAGE
    assert rule("wan2.7-image", "picture", True) == kinds.IMAGE_GENERATION


@pytest.mark.parametrize(
    ("model", "row"),
    [
        ("WAN2.7-T2V", "text-to-video (wan2.7)"),
        ("wan2.6-i2v", "image-to-video (wan2.6)"),
        ("wanx2.1-i2v-turbo", "image-to-video (wan2.2, wanx2.1)"),
        ("wanx2.1-kf2v-plus", "first-and-last-frame (kf2v)"),
        ("wan2.2-animate-mix", "animate (move, mix)"),
        ("wan2.7-image", "image generation (wan2.7-image)"),
        ("wanx2.0-t2i-turbo", "text-to-image (wan2.2, wanx2.1, wanx2.0)"),
    ],
)
def test_kind_for_matches_the_family_whatever_the_variant(model, row):
    assert kind_for(model) is kind(row)


@pytest.mark.parametrize(
    "model",
    [None, 12, "", "x" * 200, "wan9.9-i2v-nonesuch", "wan2.2-s2v-detect", "qwen-max", ["a"]],
)
def test_kind_for_knows_nothing_else(model):
    """Unknown, synchronous-only or non-text models have no row (the job names `model`)."""
    assert kind_for(model) is None


# -- a job's fields ------------------------------------------------------------------------
def test_an_unknown_field_is_named_with_the_fields_the_kind_has():
    found = one(problems("text-to-video (wan2.7)", img_url=IMG))
    assert found.startswith("img_url: not a field of text-to-video (wan2.7)")
    assert "prompt, negative_prompt, audio_url" in found


def test_text_to_video_needs_a_prompt():
    assert one(problems("text-to-video (wan2.7)", prompt=None)) == (
        "prompt: required for text-to-video (wan2.7)"
    )
    assert one(problems("text-to-video (wan2.7)", prompt="   ")) == "prompt: must be non-empty text"
    assert "over the 5000" in one(problems("text-to-video (wan2.7)", prompt="x" * 5001))


@pytest.mark.parametrize(
    ("row", "field", "value", "words"),
    [
        ("text-to-image (wan2.5)", "n", 0, "n: 0 is not between 1 and 4"),
        ("text-to-image (wan2.5)", "n", 5, "n: 5 is not between 1 and 4"),
        ("text-to-image (wan2.5)", "n", True, "n: True is not a whole number"),
        ("text-to-image (wan2.5)", "n", 2.0, "n: 2.0 is not a whole number"),
        ("text-to-video (wan2.7)", "duration", 16, "duration: 16 is not between 2 and 15"),
        ("text-to-video (wan2.5)", "duration", 7, "duration: 7 is not one of 5, 10"),
        ("text-to-video (wan2.7)", "resolution", "480P", "resolution: '480P' is not one of"),
        ("text-to-video (wan2.7)", "ratio", "2:1", "ratio: '2:1' is not one of"),
        ("text-to-video (wan2.7)", "seed", -1, "seed: -1 is not between 0 and 2147483647"),
        ("text-to-video (wan2.7)", "watermark", "yes", "watermark: 'yes' is not true or false"),
        ("text-to-video (wan2.7)", "audio_url", "ftp://e/a.mp3", "audio_url: must be an http"),
        ("text-to-video (wan2.7)", "audio_url", {"path": ""}, "audio_url: give a URL, or"),
        ("text-to-video (wan2.7)", "audio_url", {"path": "a", "x": 1}, "audio_url: give a URL"),
        ("text-to-video (wan2.7)", "audio_url", "https://" + "e" * 9000, "more than 8192"),
        ("video editing (wan2.7)", "duration", 1, "duration: 1 is not between 2 and 10 or 0"),
        ("video (wan3.0)", "duration", 31, "duration: 31 is not between 2 and 30 or -1"),
        ("speech-to-video (s2v)", "resolution", "1080P", "resolution: '1080P' is not one of"),
        ("animate (move, mix)", "mode", "fast", "mode: 'fast' is not one of wan-std, wan-pro"),
        ("image editing (wan2.5)", "images", [], "images: must be a list of 1 to 3"),
        ("image editing (wan2.5)", "images", [IMG] * 4, "images: must be a list of 1 to 3"),
        ("image editing (wan2.5)", "images", [IMG, "x"], "images[1]: must be an http"),
    ],
)
def test_a_wrong_value_is_named_with_its_field(row, field, value, words):
    assert words in one(problems(row, **{field: value}))


@pytest.mark.parametrize(
    ("row", "value", "words"),
    [
        ("text-to-image (wan2.2, wanx2.1, wanx2.0)", "1024x1024", "is not a size (W*H"),
        ("text-to-image (wan2.2, wanx2.1, wanx2.0)", "256*256", "each side must be 512 to 1440"),
        ("text-to-image (wan2.2, wanx2.1, wanx2.0)", "1024*2000", "each side must be 512 to 1440"),
        ("text-to-image (wan2.5)", "512*512", "262144 pixels, not 589824 to 2073600"),
        ("text-to-image (wan2.5)", "2880*700", "the aspect ratio must be within 1:4 and 4:1"),
        ("text-to-image (wan2.6)", "1024*1024", "pixels, not 1638400 to 2073600"),
        ("image generation (wan2.7-image)", "8K", "is not a size (1K or 2K or 4K or W*H"),
        ("image generation (wan2.7-image)", 2048, "is not a size"),
    ],
)
def test_sizes_follow_each_familys_rule(row, value, words):
    assert words in one(problems(row, size=value))


def test_choices_are_sent_as_the_vendor_spells_them():
    """`720p` passes and goes out as `720P`; a size preset `2k` goes out as `2K`."""
    row = kind("text-to-video (wan2.7)")
    fields = {"prompt": "p", "resolution": "720p"}
    assert jobcheck.check_job(row, fields) == []
    body = jobcheck.request_body(row, "wan2.7-t2v", fields)
    assert body["parameters"] == {"resolution": "720P"}
    image = kind("image generation (wan2.7-image)")
    body = jobcheck.request_body(image, "wan2.7-image", {"prompt": "p", "size": "2k"})
    assert body["parameters"] == {"size": "2K"}


@pytest.mark.parametrize(
    ("media", "words"),
    [
        ([{"type": "first_frame", "url": IMG}], None),
        ([{"type": "first_frame", "url": IMG}, {"type": "driving_audio", "url": AUDIO}], None),
        ([{"type": "first_clip", "url": CLIP}, {"type": "last_frame", "url": IMG}], None),
        ([{"type": "last_frame", "url": IMG}], "last_frame is not a combination"),
        ([{"type": "first_clip", "url": CLIP}, {"type": "driving_audio", "url": AUDIO}], "is not"),
        ([{"type": "first_frame", "url": IMG}, {"type": "first_clip", "url": CLIP}], "is not"),
        ([{"type": "first_frame", "url": IMG}] * 2, "2 items of type first_frame, at most 1"),
        ([], "media: must be a list of 1 to 64"),
        ("frame.png", "media: must be a list"),
        (["frame.png"], "media[0]: must be a mapping with type and url"),
        ([{"type": "reference_image", "url": IMG}], "media[0].type: 'reference_image' is not"),
        ([{"type": "first_frame", "url": IMG, "path": "a.png"}], "exactly one of url or path"),
        ([{"type": "first_frame"}], "media[0]: give exactly one of url or path"),
        ([{"type": "first_frame", "uri": IMG}], "media[0].uri: unknown field"),
        ([{"type": "first_frame", "url": "file:///etc/passwd"}], "media[0].url: must be an"),
        ([{"type": "first_frame", "path": ""}], "media[0].path: give a URL, or"),
        ([{"type": "first_frame", "url": {"path": "a.png"}}], "media[0].url: give a URL (a"),
    ],
)
def test_wan27_image_to_video_takes_the_combinations_the_vendor_takes(media, words):
    found = problems("image-to-video (wan2.7)", media=media)
    if words is None:
        assert found == []
    else:
        assert any(words in p for p in found), found


def test_reference_to_video_counts_references_and_caps_duration_with_a_video():
    ref = {"type": "reference_image", "url": IMG}
    assert "6 reference_image/reference_video items; give 1 to 5" in one(
        problems(
            "reference-to-video (wan2.7)", media=[ref] * 5 + [{**ref, "type": "reference_video"}]
        )
    )
    assert "items of type reference_image, at most 5" in one(
        problems("reference-to-video (wan2.7)", media=[ref] * 6)
    )
    only_frame = [{"type": "first_frame", "url": IMG}]
    assert "0 reference_image" in one(problems("reference-to-video (wan2.7)", media=only_frame))
    assert "duration: 12 is over 10" in one(problems("reference-to-video (wan2.7)", duration=12))
    pictures_only = [ref]
    assert problems("reference-to-video (wan2.7)", media=pictures_only, duration=15) == []
    voice = [{**ref, "reference_voice": "voice.mp3"}]
    assert "media[0].reference_voice: must be an" in one(
        problems("reference-to-video (wan2.7)", media=voice)
    )


def test_video_editing_needs_the_video():
    refs = [{"type": "reference_image", "url": IMG}]
    assert "needs the video to edit" in one(problems("video editing (wan2.7)", media=refs))
    five = [{"type": "video", "url": CLIP}] + refs * 5
    assert "5 items of type reference_image, at most 4" in one(
        problems("video editing (wan2.7)", media=five)
    )


def test_wan30_modes_do_not_mix():
    frame = {"type": "first_frame", "url": IMG}
    ref = {"type": "reference_image", "url": IMG}
    assert "cannot be mixed with reference_image" in one(
        problems("video (wan3.0)", media=[frame, ref])
    )
    assert "last_frame needs a first_frame" in one(
        problems("video (wan3.0)", media=[{"type": "last_frame", "url": IMG}])
    )
    doc = {"type": "file", "url": "https://example.com/brief.pdf"}
    link = {"type": "link", "url": "https://example.com/page"}
    assert "a file or a link, not both" in one(problems("video (wan3.0)", media=[doc, link]))
    assert "a link is a URL, not a local file" in one(
        problems("video (wan3.0)", media=[{"type": "link", "path": "page.html"}])
    )
    assert problems("video (wan3.0)", media=None) == [], "text-to-video: a prompt alone"
    assert "prompt: required (unless media has a first_frame)" in one(
        problems("video (wan3.0)", prompt=None, media=[ref])
    )
    assert problems("video (wan3.0)", prompt=None, media=[frame]) == []


def test_first_and_last_frame_needs_both_unless_a_template():
    assert "last_frame_url: required" in one(
        problems("first-and-last-frame (kf2v)", last_frame_url=None)
    )
    assert problems("first-and-last-frame (kf2v)", last_frame_url=None, template="hanfu-1") == []
    assert "first_frame_url: required" in one(
        problems("first-and-last-frame (kf2v)", first_frame_url=None)
    )


def test_speech_to_video_and_animate_need_both_inputs():
    assert "audio_url: required" in one(problems("speech-to-video (s2v)", audio_url=None))
    assert "video_url: required" in one(problems("animate (move, mix)", video_url=None))
    assert "mode: required" in one(problems("animate (move, mix)", mode=None))


def test_more_than_four_pictures_need_sequential_mode():
    row = "image generation (wan2.7-image)"
    assert one(problems(row, n=5)) == "n: 5 pictures need enable_sequential: true (else 1 to 4)"
    assert problems(row, n=12, enable_sequential=True) == []
    assert "n: 13 is not between 1 and 12" in one(problems(row, n=13, enable_sequential=True))
    assert "images: must be a list of 0 to 9" in one(problems(row, images=[IMG] * 10))


def test_every_problem_is_reported_at_once():
    """A user fixes the file in one go: four problems, four lines, each naming its field."""
    found = problems("text-to-image (wan2.5)", n=0, size="big", colour="red", prompt=None)
    assert sorted(p.split(":")[0] for p in found) == ["colour", "n", "prompt", "size"]


def test_hostile_field_names_and_values_do_not_crash():
    row = kind("image-to-video (wan2.7)")
    hostile: dict[Any, Any] = {
        1: "x",
        "media": [{"type": ["first_frame"], "url": IMG}, {"type": None}, 7, {}],
        "duration": "5",
        "prompt": {"nested": "x"},
    }
    found = jobcheck.check_job(row, hostile)
    assert any(p.startswith("1: a field name must be text") for p in found)
    assert any(p.startswith("media[0].type:") for p in found)
    assert any(p.startswith("duration: '5' is not a whole number") for p in found)
    assert any(p.startswith("prompt: must be non-empty text") for p in found)
    huge = [{"type": "first_frame", "url": IMG}] * 10_000
    assert "media: must be a list of 1 to 64" in one(jobcheck.check_job(row, {"media": huge}))


# -- local files and URLs ----------------------------------------------------------------
def test_local_files_are_listed_with_their_file_class():
    row = kind("reference-to-video (wan2.7)")
    fields = {
        "prompt": "p",
        "media": [
            {"type": "reference_image", "path": "cat.png", "reference_voice": {"path": "v.wav"}},
            {"type": "reference_video", "url": CLIP},
        ],
    }
    assert jobcheck.check_job(row, fields) == []
    assert jobcheck.local_files(row, fields) == [
        ("media[0].path", "cat.png", "image"),
        ("media[0].reference_voice.path", "v.wav", "audio"),
    ]
    images = kind("image editing (wan2.5)")
    fields = {"prompt": "p", "images": [IMG, {"path": "sofa.jpg"}]}
    assert jobcheck.local_files(images, fields) == [("images[1].path", "sofa.jpg", "image")]
    s2v = kind("speech-to-video (s2v)")
    fields = {"image_url": {"path": "me.png"}, "audio_url": AUDIO}
    assert jobcheck.local_files(s2v, fields) == [("image_url.path", "me.png", "image")]
    assert jobcheck.url_values(s2v, fields) == [
        ("image_url", {"path": "me.png"}),
        ("audio_url", AUDIO),
    ]


def test_a_local_file_waits_in_the_request_as_path_for_the_upload():
    """`{path: P}` stays in the body (the upload replaces it); a media item's `path` too."""
    row = kind("image-to-video (wan2.7)")
    fields = {"media": [{"type": "first_frame", "path": "cat.png"}], "duration": 5}
    body = jobcheck.request_body(row, "wan2.7-i2v", fields)
    assert body == {
        "model": "wan2.7-i2v",
        "input": {"media": [{"type": "first_frame", "url": {"path": "cat.png"}}]},
        "parameters": {"duration": 5},
    }
    assert jobcheck.check_request(row, body) == ["input.media[0].url: url error, please check url"]
    body["input"]["media"][0]["url"] = "oss://dashscope-instant/x/cat.png"
    assert jobcheck.check_request(row, body) == []


# -- the create request ------------------------------------------------------------------
def test_every_example_makes_a_request_the_endpoint_accepts_and_reads_back():
    for name, (model, fields) in EXAMPLES.items():
        row = kind(name)
        body = jobcheck.request_body(row, model, fields)
        assert jobcheck.check_request(row, body) == [], name
        read, out_of_place = jobcheck.request_fields(row, body)
        assert out_of_place == [] and read == fields, name


def test_messages_style_requests_hold_one_user_message():
    row = kind("image generation (wan2.7-image)")
    body = jobcheck.request_body(row, "wan2.7-image", {"prompt": "p", "images": [IMG], "n": 1})
    assert body["input"] == {
        "messages": [{"role": "user", "content": [{"text": "p"}, {"image": IMG}]}]
    }
    assert body["parameters"] == {"n": 1}
    bad = copy.deepcopy(body)
    bad["input"]["messages"][0]["content"].append({"text": "again"})
    assert jobcheck.check_request(row, bad) == [
        "input.messages[0].content: exactly one {text} and only {image} items"
    ]
    bad = copy.deepcopy(body)
    bad["input"]["messages"][0]["role"] = "assistant"
    assert jobcheck.check_request(row, bad)[0].startswith("input.messages: must be one")
    bad = copy.deepcopy(body)
    bad["input"]["prompt"] = "p"
    assert "input.prompt: not a field" in jobcheck.check_request(row, bad)[0]
    bad = copy.deepcopy(body)
    bad["input"]["messages"][0]["content"][1]["image"] = "ftp://e/x.png"
    assert jobcheck.check_request(row, bad) == [
        "input.messages[0].content[1].image: must be an http(s):// or oss:// URL (or {path: FILE})"
    ]


def test_the_endpoint_names_fields_by_where_they_sit():
    row = kind("text-to-video (wan2.7)")
    body = {"model": "wan2.7-t2v", "input": {"prompt": "p", "duration": 5}, "parameters": {}}
    assert jobcheck.check_request(row, body) == ["input.duration: belongs in parameters"]
    body = {"model": "wan2.7-t2v", "input": {"prompt": "p"}, "parameters": {"style": "x"}}
    assert jobcheck.check_request(row, body) == [
        "parameters.style: not a field of text-to-video (wan2.7)"
    ]
    body = {"model": "wan2.7-t2v", "input": {"prompt": "p"}, "parameters": {"duration": 99}}
    assert jobcheck.check_request(row, body) == ["parameters.duration: 99 is not between 2 and 15"]
    assert jobcheck.check_request(row, {"model": "m"}) == ["input: is required"]
    assert jobcheck.check_request(row, ["x"]) == ["input: is required"]
    body = {"model": "m", "input": {"prompt": "p"}, "parameters": []}
    assert jobcheck.check_request(row, body) == ["parameters: must be an object"]
    i2v = kind("image-to-video (wan2.7)")
    body = {"model": "wan2.7-i2v", "input": {}, "parameters": None}
    assert jobcheck.check_request(i2v, body) == [
        "input.media: required for image-to-video (wan2.7)"
    ]


# -- the files a SUCCEEDED output names ---------------------------------------------------
def urls_of(found: Outputs | Unsupported) -> list[str]:
    assert isinstance(found, Outputs), found
    return [f.url for f in found.files]


def test_a_video_url_is_one_video_and_comes_first():
    output = {"video_url": "https://h/v.mp4?Expires=1", "results": [{"url": "https://h/p.png"}]}
    found = outputs_of(output)
    assert isinstance(found, Outputs) and found.shape == "video_url"
    assert [(f.url, f.kind, f.where) for f in found.files] == [
        ("https://h/v.mp4?Expires=1", "video", "video_url")
    ]


def test_results_give_one_picture_per_url_and_failed_sub_results():
    output = {
        "results": [
            {"orig_prompt": "p", "url": "https://h/1.png"},
            {"code": "InternalError.Timeout", "message": "timeout"},
            {"url": "https://h/2.png"},
        ],
        "task_metrics": {"TOTAL": 3, "SUCCEEDED": 2, "FAILED": 1},
    }
    found = outputs_of(output)
    assert isinstance(found, Outputs) and found.shape == "results"
    assert [(f.url, f.kind, f.where) for f in found.files] == [
        ("https://h/1.png", "picture", "results[0].url"),
        ("https://h/2.png", "picture", "results[2].url"),
    ]
    assert found.failed == (shapes.SubFailure("results[1]", "InternalError.Timeout", "timeout"),)


def test_choices_give_one_picture_per_image_item():
    output = {
        "choices": [
            {
                "message": {
                    "content": [{"type": "text", "text": "hi"}, {"image": "https://h/a.png"}]
                }
            },
            {"message": {"content": [{"type": "image", "image": "https://h/b.png"}]}},
        ],
        "finished": True,
    }
    assert urls_of(outputs_of(output)) == ["https://h/a.png", "https://h/b.png"]
    assert outputs_of(output).files[0].where == "choices[0].message.content[1].image"


@pytest.mark.parametrize(
    ("output", "words"),
    [
        ({}, "no video_url, results or choices (keys: none)"),
        ({"task_status": "SUCCEEDED", "orig_prompt": "p"}, "(keys: orig_prompt, task_status)"),
        ({"video_url": None}, "video_url is not a usable URL"),
        ({"video_url": ""}, "video_url is not a usable URL"),
        ({"results": [{"code": "E1"}, {"message": "m"}]}, "(2 failed: E1, no code)"),
        ({"results": []}, "results[] names no file"),
        ({"results": "https://h/1.png"}, "results is str, not a list"),
        ({"choices": {"message": {}}}, "choices is dict, not a list"),
        ({"choices": [{"message": {"content": "https://h/a.png"}}]}, "choices[] names no file"),
        ([], "output is list, not an object"),
        (None, "output is NoneType, not an object"),
    ],
)
def test_an_output_naming_no_file_is_unsupported_and_says_what_it_held(output, words):
    found = outputs_of(output)
    assert isinstance(found, Unsupported), found
    assert words in found.reason


@pytest.mark.parametrize(
    "bad",
    [
        123,
        ["https://h/1.png"],
        {"nested": "https://h/1.png"},
        "https://h/a b.png",
        "https://h/\x00.png",
        "https://h/\u00e9.png",
        "https://h/\n.png",
        "https://h/" + "a" * 9000,
    ],
)
def test_a_url_that_is_not_one_is_never_fetched(bad):
    """Wrong types, spaces, control or non-ASCII characters, or huge: not a file."""
    assert isinstance(outputs_of({"video_url": bad}), Unsupported)
    found = outputs_of({"results": [{"url": bad}, {"url": "https://h/ok.png"}]})
    assert urls_of(found) == ["https://h/ok.png"]
    assert isinstance(found, Outputs) and found.ignored == 1
    found = outputs_of({"choices": [{"message": {"content": [{"image": bad}]}}]})
    assert isinstance(found, Unsupported)


def test_a_huge_results_list_yields_at_most_max_files_and_is_scanned_only_so_far():
    """100 000 elements: 16 files fetched, the rest counted, no more than 256 looked at."""
    output = {"results": [{"url": f"https://h/{i}.png"} for i in range(100_000)]}
    found = outputs_of(output)
    assert isinstance(found, Outputs)
    assert len(found.files) == MAX_FILES == 16
    assert found.dropped == MAX_SCANNED - MAX_FILES
    assert found.ignored == 100_000 - MAX_SCANNED


def test_huge_choices_are_bounded_too():
    item = {"image": "https://h/x.png"}
    output = {"choices": [{"message": {"content": [item] * 1000}}] * 1000}
    found = outputs_of(output)
    assert isinstance(found, Outputs) and len(found.files) == MAX_FILES
    assert found.dropped + len(found.files) == MAX_SCANNED


def test_garbage_elements_are_ignored_and_failures_keep_short_text():
    output = {
        "results": [
            None,
            "https://h/1.png",
            {"url": 5},
            {"code": {"x": 1}, "message": "m" * 10_000},
            {"url": "https://h/ok.png"},
        ]
    }
    found = outputs_of(output)
    assert isinstance(found, Outputs) and urls_of(found) == ["https://h/ok.png"]
    assert found.ignored == 3
    [failure] = found.failed
    assert failure.code is None and failure.message == "m" * shapes.MAX_TEXT


def test_bounds_are_what_the_readme_says():
    assert MAX_FILES == 16
    assert max(p.name == "n" and 12 for k in KINDS for p in k.fields) <= MAX_FILES
    assert IMG2 != IMG
