from omegaconf import OmegaConf

from bias_unlearn.reports.model_card import base_model_id


def test_base_model_is_the_hub_id_of_the_weights():
    offline = OmegaConf.create({"source": "offline", "name_or_path": "smollm2-135m-instruct"})
    hub = OmegaConf.create({"source": "hub", "name_or_path": "meta-llama/Meta-Llama-3-8B"})
    assert base_model_id(offline) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert base_model_id(hub) == "meta-llama/Meta-Llama-3-8B"


def test_the_card_says_how_the_split_was_made():
    from bias_unlearn.reports.model_card import split_sentence
    from tests.helpers import compose_config

    by_target = split_sentence(compose_config("train", "seed=3"))
    assert "train / dev / test (0.6 / 0.15 / 0.25 of each bias type's targets, seed 3)" in by_target
    explicit = split_sentence(compose_config("train", "data.split.mode=explicit", "data.split.train_path=test.json"))
    assert "train file (test.json)" in explicit and "no target term in common" in explicit and "test)" not in explicit
