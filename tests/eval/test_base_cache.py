"""base_cache.py: a cached base score is reused only where it was computed the same way."""

import torch

from bias_unlearn.eval.base_cache import cache_key, cache_path
from tests.helpers import compose_config


def test_the_key_covers_how_the_base_model_ran():
    cfg = compose_config("train")
    key = cache_key(cfg, [], [], "cpu", "float32")
    assert key == cache_key(cfg, [], [], "cpu", "float32")
    assert key != cache_key(cfg, [], [], "cuda", "float32") and key != cache_key(cfg, [], [], "cpu", "bfloat16")
    model = torch.nn.Linear(2, 2)
    assert cache_path(cfg, [], [], model).stem == key
    assert cache_path(cfg, [], [], model.to(torch.bfloat16)).stem == cache_key(cfg, [], [], "cpu", "bfloat16")
