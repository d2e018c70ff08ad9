"""Hub datasets as ``datasets`` >= 4 can read them (data/hub.py), tested with a stand-in for ``datasets`` shaped like
the hub's answers (this machine has no hub): a loading-script dataset is read from its parquet conversion, and a
failed load says why without sending an online user offline. (PIQA on the hub is lm-evaluation-harness's own task,
which reads its parquet copy baber/piqa: eval/general.py.)"""

from __future__ import annotations

import types

import pytest

from bias_unlearn.config.errors import DataError
from bias_unlearn.data import crows_pairs, hub

SCRIPT_ERROR = "Dataset scripts are no longer supported, but found {}.py"


class FakeRows(list):
    features: dict = {}


def stand_in(monkeypatch, scripts: dict[str, list[str]], rows: dict[str, list], reachable: bool = True):
    """``datasets`` as datasets 5 answers: a script-only repository raises unless read at refs/convert/parquet,
    whose subsets are ``scripts[name]``."""
    calls = []

    def load_dataset(name, config=None, split=None, revision=None):
        calls.append((name, config, split, revision))
        if name in scripts and revision != hub.PARQUET_REVISION:
            raise RuntimeError(SCRIPT_ERROR.format(name.split("/")[-1]))
        if name in scripts and config not in scripts[name]:
            raise ValueError(f"BuilderConfig '{config}' not found. Available: {scripts[name]}")
        return FakeRows(rows[name])

    def get_dataset_config_names(name, revision=None):
        return scripts[name] if revision == hub.PARQUET_REVISION else ["default"]

    fake = types.SimpleNamespace(load_dataset=load_dataset, get_dataset_config_names=get_dataset_config_names)
    monkeypatch.setitem(__import__("sys").modules, "datasets", fake)
    monkeypatch.setattr(hub, "hub_reachable", lambda: reachable)
    return calls


CROWS_ROW = {"id": 0, "sent_more": "He is rich .", "sent_less": "She is rich .", "bias_type": 2}


def test_crows_pairs_is_read_from_its_parquet_conversion(monkeypatch):
    calls = stand_in(monkeypatch, {"nyu-mll/crows_pairs": ["crows_pairs"]}, {"nyu-mll/crows_pairs": [CROWS_ROW]})
    pairs = crows_pairs.load_crows_pairs("hub")
    assert [(p.sent_more, p.bias_type) for p in pairs] == [("He is rich .", "gender")]
    assert calls == [("nyu-mll/crows_pairs", "crows_pairs", "test", hub.PARQUET_REVISION)]


def test_the_old_call_fails_as_datasets_5_fails_it(monkeypatch):
    """What the code of 2026-12-04 did (load_dataset(name, split=...)) meets the script error: the stand-in is the
    hub's shape, not a pass-through."""
    stand_in(monkeypatch, {"nyu-mll/crows_pairs": ["crows_pairs"]}, {"nyu-mll/crows_pairs": [CROWS_ROW]})
    import datasets

    with pytest.raises(RuntimeError, match="Dataset scripts are no longer supported"):
        datasets.load_dataset("nyu-mll/crows_pairs", split="test")


def test_a_failed_load_says_why(monkeypatch):
    stand_in(monkeypatch, {}, {}, reachable=False)
    with pytest.raises(DataError, match="hub is unreachable from here; use data.crows_pairs.source=offline"):
        crows_pairs.load_crows_pairs("hub")
    stand_in(monkeypatch, {"nyu-mll/crows_pairs": ["a", "b"]}, {}, reachable=True)
    with pytest.raises(DataError) as err:
        crows_pairs.load_crows_pairs("hub")
    assert "subsets ['a', 'b']" in str(err.value) and "offline" not in str(err.value)  # an online user stays online
