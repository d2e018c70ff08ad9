"""Swapping, balance-based early stopping and the adapter delivery rule, driven by scripted dev scores."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from bias_unlearn.balance import excess_imbalance, imbalance, is_balanced, ss_resolution
from bias_unlearn.callbacks.adapter_checkpoint import (RULE_BALANCE, RULE_LEAST_LMS_DROP, AdapterCheckpoint,
                                                       selection_key)
from bias_unlearn.callbacks.balance_stopping import BalancedStereotypeStopping
from bias_unlearn.callbacks.swapping import DynamicSwapping, swap_decisions
from bias_unlearn.errors import ConfigError

FINE = {"gender": 0.5, "profession": 0.5, "race": 0.5, "religion": 0.5}  # resolutions too fine to matter


def test_swap_decisions_from_scripted_dev_scores():
    assert swap_decisions({"gender": 48.0, "race": 55.0, "religion": 50.0}, set()) == {"gender": True}
    assert swap_decisions({"gender": 51.0, "race": 45.0}, {"gender", "race"}) == {"gender": False}
    assert swap_decisions({"gender": 49.0}, {"gender"}) == {}


class _DataModule:
    def __init__(self):
        self.swapped = set()

    def swap(self, bias_type, flag):
        (self.swapped.add if flag else self.swapped.discard)(bias_type)


def _trainer(datamodule=None, step=0, callbacks=()):
    strategy = SimpleNamespace(broadcast=lambda value, src=0: value, barrier=lambda: None)
    return SimpleNamespace(strategy=strategy, sanity_checking=False, global_step=step, should_stop=False,
                           is_global_zero=True, datamodule=datamodule or _DataModule(), callbacks=list(callbacks))


def test_swapping_callback_follows_a_script():
    dm, cb = _DataModule(), DynamicSwapping()
    script = [{"gender": 58, "profession": 49, "race": 60, "religion": 52},
              {"gender": 53, "profession": 47, "race": 56, "religion": 44},
              {"gender": 49.5, "profession": 51, "race": 52, "religion": 50}]
    states = []
    for step, entry in enumerate(script):
        cb.apply(None, dm, entry, step * 10)
        states.append(sorted(dm.swapped))
    assert states == [["profession"], ["profession", "religion"], ["gender", "religion"]]
    assert [(e["step"], e["bias_type"], e["swapped"]) for e in cb.events] == [
        (0, "profession", True), (10, "religion", True), (20, "gender", True), (20, "profession", False)]


def test_swapping_sets_the_starting_roles_from_the_step0_dev_score():
    trainer, cb = _trainer(), DynamicSwapping()
    module = SimpleNamespace(dev_history=[{"step": 0, "gender": 47.0, "race": 60.0}])
    cb.on_train_start(trainer, module)
    assert trainer.datamodule.swapped == {"gender"} and cb.events[0]["step"] == 0


def _one_target_examples(bias_type: str, n: int):
    return [SimpleNamespace(bias_type=bias_type, target=f"{bias_type}-t") for _ in range(n)]


def test_resolution_of_a_type_is_one_examples_step():
    examples = _one_target_examples("religion", 25) + [SimpleNamespace(bias_type="race", target=t)
                                                       for t in ("a", "b") for _ in range(10)]
    assert ss_resolution(examples) == {"religion": 4.0, "race": 5.0}


@pytest.mark.parametrize("sizes", [(8, 30), (5, 40), (3, 7, 20), (25,)])
def test_resolution_is_the_largest_gap_between_attainable_values(sizes):
    """Brute force: every SS a type with these target sizes can take; the resolution is its widest gap (uneven
    targets: the largest target sets it, not the smallest)."""
    import itertools

    values = sorted({sum(100 * k / n for k, n in zip(ks, sizes)) / len(sizes)
                     for ks in itertools.product(*(range(n + 1) for n in sizes))})
    widest = max(b - a for a, b in zip(values, values[1:]))
    examples = [SimpleNamespace(bias_type="race", target=f"t{i}") for i, n in enumerate(sizes) for _ in range(n)]
    assert ss_resolution(examples)["race"] == pytest.approx(widest)


def test_balance_is_reachable_for_a_type_with_one_small_dev_target():
    """One religion target of 25 dev examples: SS takes the values ..., 48, 52, ...; the paper's |SS - 50| < 2
    never holds (the old rule), so balance must count values within half a resolution step of 50."""
    resolution = ss_resolution(_one_target_examples("religion", 25))
    reachable = [100 * k / 25 for k in range(26)]
    assert not any(abs(v - 50) < 2 for v in reachable)  # the old rule could never fire
    dev = {"gender": 50.5, "profession": 49.0, "race": 51.0, "religion": 52.0}
    assert is_balanced(dev, 2.0, resolution)
    assert not is_balanced({**dev, "religion": 56.0}, 2.0, resolution)
    assert excess_imbalance({**dev, "religion": 56.0}, 2.0, resolution) == pytest.approx(4.0)
    assert not is_balanced({"gender": 52.0, "profession": 50, "race": 50, "religion": 50}, 2.0, FINE)
    assert is_balanced({"gender": 51.9, "profession": 48.1, "race": 50, "religion": 50.5}, 2.0, FINE)
    assert not is_balanced({}, 2.0, FINE)
    assert imbalance({"gender": 53, "race": 46.5, "overall": 70}) == 3.5


def test_stopping_callback_fires_on_the_reachable_rule():
    for bad in (0, 50, -1, 60):
        with pytest.raises(ConfigError):
            BalancedStereotypeStopping(threshold=bad)
    cb = BalancedStereotypeStopping(threshold=2.0)
    resolution = ss_resolution(_one_target_examples("religion", 25))
    module = SimpleNamespace(dev_history=[{"gender": 50.0, "profession": 50.0, "race": 50.0, "religion": 48.0}],
                             dev_resolution={**FINE, **resolution})
    trainer = _trainer(step=40)
    cb.on_validation_end(trainer, module)
    assert trainer.should_stop and cb.stopped_at == 40


class _Adapter:
    """Stands in for a PEFT model: writes a weights file whose content names the step."""

    def __init__(self):
        self.step = 0

    def save_pretrained(self, path, state_dict=None):
        (path / "adapter_model.safetensors").write_text(str(self.step))


def _run_checkpoints(tmp_path, script, max_lms_drop=2.0):
    cb, adapter = AdapterCheckpoint(str(tmp_path), max_lms_drop=max_lms_drop, threshold=2.0), _Adapter()
    module = SimpleNamespace(model=adapter, dev_history=[script[0]], dev_resolution=FINE)
    for entry in script[1:]:
        adapter.step = entry["step"]
        module.dev_history.append(entry)
        cb.on_validation_end(_trainer(step=entry["step"]), module)
    return cb, json.loads((tmp_path / "best" / "state.json").read_text())


def _entry(step, ss, lms):
    return {"step": step, "gender": ss, "profession": ss, "race": ss, "religion": ss, "lms": lms}


def test_delivery_rule_prefers_balance_within_the_lms_bar(tmp_path):
    script = [_entry(0, 62, 90.0), _entry(25, 56, 89.5), _entry(50, 50.5, 87.0), _entry(75, 53, 88.5)]
    cb, state = _run_checkpoints(tmp_path, script)
    assert cb.best["step"] == 75 and state["best"]["rule"] == RULE_BALANCE and state["best"]["lms_bar_met"]
    assert (tmp_path / "best" / "adapter_model.safetensors").read_text() == "75"
    assert (tmp_path / "last" / "adapter_model.safetensors").read_text() == "75"


def test_delivery_rule_when_no_evaluation_meets_the_bar_is_the_least_lms_drop(tmp_path):
    """The old rule delivered the last (most degraded) adapter silently; now the least damaged one, and it says so."""
    script = [_entry(0, 62, 90.0), _entry(25, 55, 87.5), _entry(50, 51, 86.0), _entry(75, 50, 80.0)]
    cb, state = _run_checkpoints(tmp_path, script)
    assert cb.best["step"] == 25 and state["best"]["rule"] == RULE_LEAST_LMS_DROP
    assert state["best"]["lms_bar_met"] is False
    assert (tmp_path / "best" / "adapter_model.safetensors").read_text() == "25"


def test_selection_key_orders_bar_first_then_balance():
    meets = selection_key(_entry(1, 56, 89.0), 90.0, 2.0, 2.0, FINE)
    closer_but_broken = selection_key(_entry(2, 50, 70.0), 90.0, 2.0, 2.0, FINE)
    assert meets < closer_but_broken
    assert selection_key(_entry(3, 50, 70.0), 90.0, None, 2.0, FINE) < meets  # no bar: balance alone
