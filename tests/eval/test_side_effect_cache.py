"""side_effect_cache.py: a side effect is read back only where it was scored the same way, by the same model under
the same decoding-time method; the cache never changes what evaluate_model returns."""

import pytest
import torch

from bias_unlearn.eval.side_effect_cache import SideEffectCache
from bias_unlearn.eval.side_effects import evaluate_model
from tests.helpers import compose_config


def test_the_key_covers_the_method_the_benchmark_settings_and_how_the_model_ran(tmp_path, monkeypatch):
    monkeypatch.setenv("BIAS_UNLEARN_CACHE", str(tmp_path))
    cfg, model = compose_config("train"), torch.nn.Linear(2, 2)
    plain = SideEffectCache(cfg, model)
    assert plain.path("bbq") == SideEffectCache(cfg, model).path("bbq")
    assert plain.path("bbq") != plain.path("crows_pairs")
    assert plain.path("bbq") != SideEffectCache(cfg, model, {"kind": "cafie", "alpha": 0.99}).path("bbq")
    assert plain.path("bbq") != SideEffectCache(cfg, torch.nn.Linear(2, 2).to(torch.bfloat16)).path("bbq")
    other_items = compose_config("train", "data.general.max_items=5")
    assert plain.path("general") != SideEffectCache(other_items, model).path("general")
    assert plain.path("bbq") == SideEffectCache(other_items, model).path("bbq")  # another benchmark's setting
    assert plain.path("bbq").parent == tmp_path / "side_effects"


def test_scores_read_back_equal_the_scores_kept(tiny_model_dir, data_overrides, tmp_path, monkeypatch):
    from bias_unlearn.data.sources import load_side_effect_data
    from bias_unlearn.eval.scorer import make_scorer
    from bias_unlearn.models.policy import load_base

    monkeypatch.setenv("BIAS_UNLEARN_CACHE", str(tmp_path))
    cfg = compose_config(
        "train",
        "model=local",
        f"model.name_or_path={tiny_model_dir}",
        *data_overrides,
        "eval.crows_pairs=true",
        "eval.bbq=true",
        "eval.general=true",
        "data.general.max_items=2",
    )
    from bias_unlearn.config.schema import train_settings

    settings = train_settings(cfg)
    side = load_side_effect_data(cfg.data, settings.eval)
    model, tokenizer = load_base(settings.model, "cpu")
    scorer = make_scorer(model, tokenizer, settings.scoring)
    fresh = SideEffectCache(cfg, model)
    scored = evaluate_model(scorer, settings.scoring, side, cache=fresh)
    assert fresh.hits == [] and scored.crows_pairs and scored.bbq and scored.general

    class NoScorer:  # a cache hit must not score anything
        def __getattr__(self, name):
            raise AssertionError(f"scored although cached ({name})")

    again = SideEffectCache(cfg, model)
    read = evaluate_model(NoScorer(), settings.scoring, side, cache=again)
    assert again.hits == ["crows_pairs", "bbq", "general"]
    assert (read.crows_pairs, read.bbq, read.general) == (scored.crows_pairs, scored.bbq, scored.general)
    assert read.outcomes.crows_pairs == scored.outcomes.crows_pairs and read.stereoset is None
    assert evaluate_model(scorer, settings.scoring, side) == scored  # no cache: the same scores
    again.path("bbq").write_text("{not json")
    with pytest.raises(AssertionError, match="scored although cached"):  # a damaged entry is scored afresh
        evaluate_model(NoScorer(), settings.scoring, {"bbq": side["bbq"]}, cache=SideEffectCache(cfg, model))
