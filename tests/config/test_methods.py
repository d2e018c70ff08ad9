"""Baselines as configs over the same module (CDA, SFT, DPO, GA, NPO), paired chunks, and weight transfer."""

import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.config.settings import LossConfig, OptimConfig
from bias_unlearn.data.datamodule import UnlearningDataModule
from bias_unlearn.data.splits import split_by_target
from bias_unlearn.data.stereoset import load_stereoset
from bias_unlearn.models.logprobs import token_logprobs_from_logits
from bias_unlearn.models.lora import wrap_lora
from bias_unlearn.unlearning import losses
from bias_unlearn.unlearning.module import BiasUnlearnModule
from tests.helpers import compose_config, save_random_adapter, train_steps


def _module(tiny, stereoset_jsonl, loss: LossConfig, paired: bool):
    model, tokenizer = tiny
    split = split_by_target(load_stereoset("local", str(stereoset_jsonl)), fractions=(0.5, 0.25, 0.25))
    dm = UnlearningDataModule(
        split, tokenizer, forget_batch=4, retain_batch=8, kl_batch=4, adversarial_fraction=0.0, paired=paired
    )
    targets = "c_attn" if "GPT2" in type(model).__name__ else ["q_proj", "v_proj"]
    policy = wrap_lora(model, OmegaConf.create({"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": targets}))
    module = BiasUnlearnModule(
        policy, tokenizer, loss, OptimConfig(lr=5e-3, warmup_steps=0, total_steps=10), dm.dev_examples
    )
    module.eval()
    return module, next(iter(dm.train_dataloader()))


def _ce(module, batch):
    with torch.no_grad():
        logp = token_logprobs_from_logits(module.engine._forward(module.model, batch), batch["input_ids"])
    return losses.cross_entropy_loss(logp, batch["loss_mask"]).item()


def test_paired_chunks_hold_each_examples_two_sentences(tiny, stereoset_jsonl):
    _, chunk = _module(tiny, stereoset_jsonl, LossConfig(), paired=True)
    forget, retain = chunk["forget"]["keys"], chunk["retain"]["keys"]
    assert len(forget) == len(retain) == 4
    for f, r in zip(forget, retain):
        assert f.endswith(":s") and r.endswith(":a") and f[:-2] == r[:-2]


def test_paired_chunks_refuse_the_adversarial_slice():
    from bias_unlearn.config.settings import MethodConfig

    with pytest.raises(ConfigError, match="adversarial_fraction=0"):
        MethodConfig(name="x", paired=True, adversarial_fraction=0.25)


def test_cda_is_cross_entropy_on_the_anti_stereotypes(tiny, stereoset_jsonl):
    module, chunk = _module(tiny, stereoset_jsonl, LossConfig(forget_weight=0, retain_weight=1, kl_weight=0), False)
    terms = module.compute_losses(chunk)
    assert set(terms) == {"retain", "total"}
    assert terms["total"].item() == pytest.approx(_ce(module, chunk["retain"]), rel=1e-5)
    assert all(k.endswith(":a") for k in chunk["retain"]["keys"])


def test_sft_is_cross_entropy_on_stereotypes_and_anti_stereotypes_one_to_one(tiny, stereoset_jsonl):
    module, chunk = _module(
        tiny, stereoset_jsonl, LossConfig(forget="ce", forget_weight=0.5, retain_weight=0.5, kl_weight=0), True
    )
    terms = module.compute_losses(chunk)
    expected = 0.5 * _ce(module, chunk["forget"]) + 0.5 * _ce(module, chunk["retain"])
    assert terms["total"].item() == pytest.approx(expected, rel=1e-5)


def test_dpo_is_ln2_at_initialisation_and_prefers_the_anti_stereotype_after_steps(tiny, stereoset_jsonl):
    module, chunk = _module(
        tiny,
        stereoset_jsonl,
        LossConfig(forget="dpo", forget_weight=1, retain_weight=0, kl_weight=0, logp_reduction="sum"),
        True,
    )
    assert module.compute_losses(chunk)["forget"].item() == pytest.approx(math.log(2), rel=1e-5)
    train_steps(module, chunk, 3)
    module.eval()
    assert module.compute_losses(chunk)["forget"].item() < math.log(2)  # margin chosen - rejected has grown


def test_npo_and_ga_baselines_use_only_the_forget_stream(tiny, stereoset_jsonl):
    for forget in ("npo", "ga"):
        module, chunk = _module(
            tiny, stereoset_jsonl, LossConfig(forget=forget, forget_weight=1, retain_weight=0, kl_weight=0), False
        )
        terms = module.compute_losses(chunk)
        assert set(terms) == {"forget", "total"}


def test_ga_equals_mean_sequence_log_likelihood(tiny, stereoset_jsonl):
    module, chunk = _module(
        tiny, stereoset_jsonl, LossConfig(forget="ga", forget_weight=1, retain_weight=0, kl_weight=0), False
    )
    batch = chunk["forget"]
    with torch.no_grad():
        logp = token_logprobs_from_logits(module.engine._forward(module.model, batch), batch["input_ids"])
    expected = (logp * batch["loss_mask"]).sum(-1) / batch["loss_mask"].sum(-1)
    assert module.compute_losses(chunk)["total"].item() == pytest.approx(expected.mean().item(), rel=1e-5)


def test_weight_transfer_to_a_variant(tmp_path, tiny_model_dir, data_overrides):
    """An adapter trained on one model, evaluated on a variant of the same architecture (base -> instruct)."""
    from bias_unlearn.eval.scorer import SentenceScorer
    from bias_unlearn.models.loading import load_model
    from bias_unlearn.models.lora import load_adapter
    from tests.helpers import make_model, make_tokenizer

    variant_dir = tmp_path / "variant"
    tokenizer = make_tokenizer("llama")
    make_model("llama", len(tokenizer), seed=7).save_pretrained(variant_dir)  # same shapes, other weights
    tokenizer.save_pretrained(variant_dir)
    source, _ = load_model("local", str(tiny_model_dir))
    save_random_adapter(source, ["q_proj", "v_proj"], tmp_path / "adapter")

    from bias_unlearn.jobs.evaluate import run_evaluation

    out = tmp_path / "transfer"
    run_evaluation(
        compose_config(
            "evaluate",
            f"paths.output_dir={out}",
            "model=local",
            f"model.name_or_path={variant_dir}",
            f"adapter={tmp_path / 'adapter'}",
            "benchmarks=[stereoset]",
            "scoring.n_bootstrap=0",
            *data_overrides,
        )
    )
    reported = json.loads((out / "results.json").read_text())["results"]["stereoset"]["intrasentence"]["overall"]

    # The same numbers by hand: the variant with the transferred adapter, and without it.
    from bias_unlearn.data.sources import build_stereoset_split
    from bias_unlearn.eval.stereoset import evaluate_stereoset

    data_cfg = OmegaConf.create(
        {
            "stereoset": {
                "source": "local",
                "path": data_overrides[1].split("=", 1)[1],
                "kinds": ["intrasentence", "intersentence"],
            },
            "split": {"mode": "by_target", "seed": 0, "fractions": [0.6, 0.15, 0.25]},
        }
    )
    test = build_stereoset_split(data_cfg).test
    variant, _ = load_model("local", str(variant_dir))
    sentence = [["The nurse was caring today ."]]
    plain = SentenceScorer(variant, tokenizer).sentences(sentence)[0][0].logprob
    transferred = load_adapter(variant, str(tmp_path / "adapter"))
    by_hand = evaluate_stereoset(SentenceScorer(transferred, tokenizer), test, "mean", 0)["intrasentence"]["overall"]
    assert reported["ss"] == pytest.approx(by_hand["ss"]) and reported["lms"] == pytest.approx(by_hand["lms"])
    assert reported["n"] == by_hand["n"] > 0
    assert abs(SentenceScorer(transferred, tokenizer).sentences(sentence)[0][0].logprob - plain) > 1e-4
