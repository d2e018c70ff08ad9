import json

import pytest

from bias_unlearn.config.errors import DataError
from bias_unlearn.data.records import BIAS_TYPES, StereoSetExample
from bias_unlearn.data.splits import check_split, explicit_split, split_by_target
from bias_unlearn.data.stereoset import load_stereoset


@pytest.fixture
def examples(stereoset_jsonl):
    return load_stereoset("local", str(stereoset_jsonl))


def _targets(examples):
    return {(ex.bias_type, ex.target) for ex in examples}


def test_split_is_disjoint_by_target_and_stratified(examples):
    split = split_by_target(examples, seed=3, fractions=(0.5, 0.25, 0.25))
    train, dev, test = (_targets(split[name]) for name in ("train", "dev", "test"))
    assert not (train & dev) and not (train & test) and not (dev & test)
    assert len(split.train) + len(split.dev) + len(split.test) == len(examples)
    for part in (split.train, split.dev, split.test):
        assert {ex.bias_type for ex in part} == set(BIAS_TYPES)
    # a target's intra- and intersentence examples land in the same split
    for part in (split.train, split.dev, split.test):
        for _, target in _targets(part):
            assert {ex.kind for ex in part if ex.target == target} == {"intrasentence", "intersentence"}
    check_split(split)


def test_split_is_deterministic_and_seed_dependent(examples):
    a = split_by_target(examples, seed=1)
    b = split_by_target(list(reversed(examples)), seed=1)
    assert _targets(a.test) == _targets(b.test)
    assert any(_targets(split_by_target(examples, seed=s).test) != _targets(a.test) for s in range(2, 8))


def test_split_info_is_written(examples, tmp_path):
    split = split_by_target(examples, seed=0)
    info = json.loads(split.save(tmp_path / "split.json").read_text())
    assert info["seed"] == 0 and info["mode"] == "by_target"
    assert info["test"]["targets"] == sorted(f"{b}:{t}" for b, t in _targets(split.test))
    assert info["test"]["n_examples"] == len(split.test)


def test_too_few_targets_and_bad_fractions(examples):
    few = [ex for ex in examples if ex.target not in ("Bible", "Muslim")]
    with pytest.raises(DataError, match="'religion' has 2 target"):
        split_by_target(few)
    with pytest.raises(DataError, match="summing to 1"):
        split_by_target(examples, fractions=(0.5, 0.5, 0.5))


def test_explicit_split_keeps_eval_file_whole(examples):
    by_target = split_by_target(examples, seed=0)  # two files with disjoint targets, as StereoSet's test and dev
    train_file, eval_file = by_target.train + by_target.dev, by_target.test
    split = explicit_split(train_file, eval_file, seed=0, dev_fraction=0.25)
    assert split.test == eval_file
    assert not (_targets(split.train) & _targets(split.dev))
    assert len(split.train) + len(split.dev) == len(train_file)


def test_explicit_split_refuses_an_eval_file_sharing_targets(examples):
    train_file = [ex for ex in examples if ex.kind == "intrasentence"]
    eval_file = [ex for ex in examples if ex.kind == "intersentence"]  # the same target terms
    shared = _targets(train_file) & _targets(eval_file)
    assert shared
    with pytest.raises(DataError, match=f"shares {len(shared)} target term"):
        explicit_split(train_file, eval_file, seed=0, dev_fraction=0.25)


def test_check_split_rejects_missing_bias_type(examples):
    split = split_by_target(examples)
    split.train = [ex for ex in split.train if ex.bias_type != "race"]
    with pytest.raises(DataError, match="train split has no examples of bias type"):
        check_split(split)
    split = split_by_target(examples)
    split.dev = []
    with pytest.raises(DataError, match="dev split is empty"):
        check_split(split)


def test_target_matching_ignores_case():
    ex = [
        StereoSetExample(str(i), "intrasentence", t, "gender", "BLANK", "a", "b", "c")
        for i, t in enumerate(["Mother", "mother", "sister", "aunt", "uncle"])
    ]
    split = split_by_target(ex, fractions=(0.4, 0.3, 0.3))
    homes = {name for name in ("train", "dev", "test") for e in split[name] if e.target.lower() == "mother"}
    assert len(homes) == 1
