"""Aligned word lists of groups (data/word_lists/<bias type>.tsv, README there) and the counterfactual swap of a
text: every listed word replaced by its counterpart in another group, whole words, case-insensitive, the case of
the replaced word kept. Each swap is recorded with its character spans, so that positions can be aligned across the
original and its counterfactual (decoding/cafie.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bias_unlearn.config.errors import DataError

LIST_DIR = Path(__file__).parent / "word_lists"
LIST_TYPES = ("gender", "profession", "race", "religion")


@dataclass(frozen=True)
class WordList:
    bias_type: str
    groups: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def lookup(self) -> dict[str, tuple[int, int]]:
        """word -> (row, group); a word listed twice resolves to its first row."""
        out: dict[str, tuple[int, int]] = {}
        for r, row in enumerate(self.rows):
            for g, word in enumerate(row):
                out.setdefault(word, (r, g))
        return out


@cache
def load_word_list(bias_type: str, directory: Path = LIST_DIR) -> WordList:
    path = Path(directory) / f"{bias_type}.tsv"
    if not path.exists():
        raise DataError(str(path), f"no word list for bias type {bias_type!r} (lists: {', '.join(LIST_TYPES)})")
    lines = [line.rstrip("\n") for line in path.read_text().splitlines()]
    rows = [(n, line.split("\t")) for n, line in enumerate(lines, 1) if line.strip() and not line.startswith("#")]
    (_, groups), body = rows[0], rows[1:]
    for n, row in body:
        if len(row) != len(groups) or any(not w.strip() or w != w.lower() for w in row):
            raise DataError(str(path), f"line {n}: expected {len(groups)} lower-case tab-separated words, got {row}")
    return WordList(bias_type, tuple(groups), tuple(tuple(row) for _, row in body))


@dataclass(frozen=True)
class Swap:
    start: int  # character span of the original word
    end: int
    new_start: int  # and of its replacement in the counterfactual text
    new_end: int


def _cased(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


# Words after which a female "her" is an object ("told her the truth", "with her."), not a possessive ("her book").
_OBJECT_HER_FOLLOWERS = frozenset(
    "a an the to and or but nor in on at for with from by about as that this these those because so if when then "
    "up out off down back away again too very all more than into onto over under after before while is was be "
    "been not never always just only really once twice".split()
)
_NEXT_WORD = re.compile(r"\s*([A-Za-z][A-Za-z'-]*)")


def possessive_her(text: str, end: int) -> bool:
    """Whether the "her" ending at ``end`` is a possessive determiner: a word follows that does not begin a new
    phrase (a heuristic, no tagger: "her book" -> his, "told her the truth" / "saw her." -> him)."""
    nxt = _NEXT_WORD.match(text, end)
    return nxt is not None and nxt.group(1).lower() not in _OBJECT_HER_FOLLOWERS


class Counterfactuals:
    """Counterfactual texts from the word lists of ``bias_types``. ``variants(text)`` gives, for k = 1 .. (largest
    group count among the rows found) - 1, the text with every found word moved k groups on (wrapping within its
    row's list), with the swaps made; a text with no listed word has none.

    "her" stands for both "him" and "his"; the lists resolve it to its first row ("him"), as CAFIE's scoring uses it.
    ``resolve_her``: a possessive "her" (``possessive_her``) becomes "his" instead (the training counterfactuals)."""

    def __init__(self, bias_types=LIST_TYPES, directory: Path = LIST_DIR, resolve_her: bool = False):
        self.resolve_her = resolve_her
        self.lists = [load_word_list(bt, directory) for bt in bias_types]
        self.table: dict[str, tuple[WordList, int, int]] = {}
        for wl in self.lists:
            for word, (r, g) in wl.lookup().items():
                self.table.setdefault(word, (wl, r, g))
        words = sorted(self.table, key=len, reverse=True)  # longest first: multi-word entries win
        self.pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)

    def matches(self, text: str) -> list[re.Match]:
        return list(self.pattern.finditer(text))

    def replacement(self, match: re.Match, text: str, shift: int) -> str:
        """The lower-case word that replaces ``match`` when it moves ``shift`` groups on."""
        wl, r, g = self.table[match.group(0).lower()]
        new = wl.rows[r][(g + shift) % len(wl.groups)]
        if self.resolve_her and new == "him" and possessive_her(text, match.end()):
            return "his"  # "her" resolves to the him/her row; a possessive "her" stands for "his"
        return new

    def swap(self, text: str, shift: int, keep=None) -> tuple[str, list[Swap]]:
        """``text`` with every listed word moved ``shift`` groups on; ``keep(original, replacement)`` may veto one."""
        out, swaps, cursor, delta = [], [], 0, 0
        for m in self.matches(text):
            replacement = self.replacement(m, text, shift)
            if replacement == m.group(0).lower() or (keep is not None and not keep(m.group(0), replacement)):
                continue
            replacement = _cased(replacement, m.group(0))
            out += [text[cursor : m.start()], replacement]
            start = m.start() + delta
            swaps.append(Swap(m.start(), m.end(), start, start + len(replacement)))
            delta += len(replacement) - (m.end() - m.start())
            cursor = m.end()
        out.append(text[cursor:])
        return "".join(out), swaps

    def variants(self, text: str) -> list[tuple[str, list[Swap]]]:
        found = self.matches(text)
        if not found:
            return []
        groups = max(len(self.table[m.group(0).lower()][0].groups) for m in found)
        variants = [self.swap(text, k) for k in range(1, groups)]
        return [(t, s) for t, s in variants if s]


def map_offset(offset: int, swaps: list[Swap]) -> int | None:
    """Where a character boundary of the original falls in the counterfactual; None inside a swapped word."""
    delta = 0
    for s in swaps:
        if offset <= s.start:
            break
        if offset < s.end:
            return None
        delta = s.new_end - s.end
    return offset + delta
