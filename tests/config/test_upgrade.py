"""Configs saved by earlier versions read in today's layout (config/upgrade.py)."""

from __future__ import annotations

from omegaconf import OmegaConf

from bias_unlearn.config.schema import TrainJob
from bias_unlearn.config.upgrade import flatten, upgrade
from tests.helpers import LEGACY, compose_config


def legacy_config(run: str = "killed_run") -> dict:
    return OmegaConf.to_container(OmegaConf.load(LEGACY / run / "config.yaml"))


def test_a_config_saved_before_the_move_reads_in_todays_layout():
    old = legacy_config()
    assert "loss" in old and "paired" in old["train"] and "enabled" in old["callbacks"]["swapping"]
    new = upgrade(old)
    assert "loss" not in new and "paired" not in new["train"] and "adversarial_fraction" not in new["train"]
    assert new["method"] == {
        "name": "bias_unlearn",
        "loss": {k: old["loss"][k] for k in new["method"]["loss"]},
        "adversarial_fraction": 0.25,
        "paired": False,
        "swapping": True,
    }
    assert new["callbacks"]["swapping"] == {"_target_": "bias_unlearn.unlearning.callbacks.DynamicSwapping"}
    assert new["callbacks"]["adapter_checkpoint"]["_target_"] == "bias_unlearn.unlearning.callbacks.AdapterCheckpoint"
    # every key it holds is one today's schema knows, with a value of the right type
    OmegaConf.merge(OmegaConf.structured(TrainJob), new)


def test_upgrade_names_a_baseline_from_what_it_trained_and_leaves_todays_configs_alone():
    cda = upgrade(legacy_config("sweep_v3/1_method=cda"))["method"]
    assert cda["name"] == "cda" and cda["loss"]["forget_weight"] == 0 and cda["swapping"] is False
    today = OmegaConf.to_container(compose_config("train", "paths.output_dir=x", "method=dpo"), resolve=True)
    assert upgrade(today) == today


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {}}, "d": 2}) == {"a.b": 1, "a.c": {}, "d": 2}
