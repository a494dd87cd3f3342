"""Task files: what is accepted, and a clear reason for everything that is not."""

from __future__ import annotations

import json

import pytest

from wansync.core.errors import TaskFileError
from wansync.files.taskfile import is_task_name, parse

ID = "af6efbc0-4bd4-4b2e-9a2b-1a2b3c4d5e6f"


@pytest.mark.parametrize("data", [ID, f"{ID}\n", f"  {ID}  \r\n\n", f"\n\n{ID}\n"])
def test_bare_id_with_whitespace(data):
    """Surrounding whitespace and a trailing newline are ignored."""
    spec = parse(data.encode())
    assert spec.task_id == ID and spec.meta == {}


def test_json_keeps_other_keys_as_meta():
    spec = parse(b'{"task_id": "%s", "prompt": "a cat", "n": 2}' % ID.encode())
    assert spec.task_id == ID and spec.meta == {"prompt": "a cat", "n": 2}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"  \n\t\n", "empty"),
        (b"\x00\x01binary", "binary"),
        (b"\xff\xfe\xfa", "not UTF-8"),
        (b"a" * (64 * 1024 + 1), "larger than 64 KiB"),
        (f"{ID}\n{ID}\n".encode(), "2 lines"),
        (b"short", "not a valid task id"),
        (b"has space inside-1234", "not a valid task id"),
        (b"-starts-with-dash", "not a valid task id"),
        (b"x" * 129, "not a valid task id"),
        (b"{not json", "not valid JSON"),
        (b"{}", "no task_id"),
        (b'{"output": {"task_status": "PENDING"}}', "no task_id"),
        (b'{"output": {"task_id": 12345678}}', "output.task_id must be a string"),
        (b'{"task_id": 12345678}', "must be a string"),
        (b'{"task_id": "bad id!"}', "not a valid task id"),
    ],
)
def test_invalid_files_say_what_is_wrong(data, reason):
    with pytest.raises(TaskFileError, match=reason):
        parse(data)


def test_dashscope_create_answer_is_a_task_file():
    """`curl … > clip.task` saves the create answer: its `output.task_id` is the id."""
    answer = {
        "request_id": "4909100c-7b5a-9f92-bfe5-xxxxxx",
        "output": {"task_id": ID, "task_status": "PENDING"},
    }
    spec = parse(json.dumps(answer).encode())
    assert spec.task_id == ID
    assert spec.meta == answer  # the rest is kept as meta, as it came
    same = parse(json.dumps({**answer, "task_id": ID}).encode())
    assert same.task_id == ID and same.meta == answer


def test_two_different_ids_in_one_file_are_refused():
    """`task_id` and `output.task_id` both given and different: refused, naming both."""
    other = "0f6efbc0-4bd4-4b2e-9a2b-1a2b3c4d5e6f"
    data = json.dumps({"task_id": ID, "output": {"task_id": other}}).encode()
    with pytest.raises(TaskFileError) as caught:
        parse(data)
    assert ID in str(caught.value) and other in str(caught.value)
    assert "differ" in str(caught.value)


def test_json_array_is_rejected():
    with pytest.raises(TaskFileError, match="must be an object"):
        parse(b'[{"task_id": "abc"}]')


@pytest.mark.parametrize(
    ("filename", "is_task"),
    [
        ("a.task", True),
        (".a.task", False),
        ("a.task.tmp", False),
        ("a.txt", False),
        (".task", False),
        ("clip 1 é.task", True),
    ],
)
def test_which_names_are_tasks(filename, is_task):
    """Dotfiles (writers' temp files) and other extensions are ignored."""
    assert is_task_name(filename) is is_task
