from omegaconf import OmegaConf

from bias_unlearn.model_card import base_model_id


def test_base_model_is_the_hub_id_of_the_weights():
    offline = OmegaConf.create({"source": "offline", "name_or_path": "smollm2-135m-instruct"})
    hub = OmegaConf.create({"source": "hub", "name_or_path": "meta-llama/Meta-Llama-3-8B"})
    assert base_model_id(offline) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert base_model_id(hub) == "meta-llama/Meta-Llama-3-8B"
