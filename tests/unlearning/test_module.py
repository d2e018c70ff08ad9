import math

import pytest
import torch
from omegaconf import OmegaConf

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.config.settings import LossConfig, OptimConfig
from bias_unlearn.data.datamodule import UnlearningDataModule
from bias_unlearn.data.splits import split_by_target
from bias_unlearn.data.stereoset import load_stereoset
from bias_unlearn.eval.scorer import SentenceScorer
from bias_unlearn.models.lora import wrap_lora
from bias_unlearn.unlearning.callbacks.adapter_checkpoint import save_adapter
from bias_unlearn.unlearning.module import BiasUnlearnModule
from tests.helpers import train_steps


@pytest.fixture
def setup(tiny, stereoset_jsonl):
    model, tokenizer = tiny
    split = split_by_target(load_stereoset("local", str(stereoset_jsonl)), fractions=(0.5, 0.25, 0.25))
    dm = UnlearningDataModule(split, tokenizer, forget_batch=4, retain_batch=8, kl_batch=4)
    targets = "c_attn" if "GPT2" in type(model).__name__ else ["q_proj", "v_proj"]
    policy = wrap_lora(model, OmegaConf.create({"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": targets}))
    module = BiasUnlearnModule(
        policy, tokenizer, LossConfig(), OptimConfig(lr=5e-3, warmup_steps=0, total_steps=10), dm.dev_examples
    )
    return module, dm, next(iter(dm.train_dataloader()))


def nll(module, batch):
    from bias_unlearn.models.logprobs import token_logprobs_from_logits
    from bias_unlearn.unlearning import losses

    with torch.no_grad():
        logp = token_logprobs_from_logits(module.engine._forward(module.model, batch), batch["input_ids"])
    return losses.cross_entropy_loss(logp, batch["loss_mask"]).item()


def test_losses_at_initialisation(setup):
    module, _, chunk = setup
    module.eval()
    terms = module.compute_losses(chunk)
    assert terms["forget"].item() == pytest.approx(2 / 0.1 * math.log(2), rel=1e-5)
    assert terms["kl"].item() == pytest.approx(0.0, abs=1e-6)
    expected = 0.4 * terms["forget"] + 0.4 * terms["retain"] + 0.2 * terms["kl"]
    assert terms["total"].item() == pytest.approx(expected.item())


def test_steps_raise_forget_nll_the_retain_term_protects_retain_and_reference_stays(setup):
    import copy

    module, dm, chunk = setup
    forget_before = nll(module, chunk["forget"])
    with module.engine.reference() as ref:
        ref_before = module.engine._forward(ref, chunk["kl"]).clone()
    # the same start trained without the retention term (the no_retain ablation): retention must make a difference
    ablation = BiasUnlearnModule(
        copy.deepcopy(module.model), module.tokenizer, LossConfig(retain_weight=0.0), module.optim_cfg, dm.dev_examples
    )
    train_steps(module, chunk, 3)
    train_steps(ablation, chunk, 3)
    assert nll(module, chunk["forget"]) > forget_before and nll(ablation, chunk["forget"]) > forget_before
    assert nll(module, chunk["retain"]) < nll(ablation, chunk["retain"])
    with module.engine.reference() as ref:
        assert torch.equal(module.engine._forward(ref, chunk["kl"]), ref_before)  # the adapter-disabled model is frozen
    assert module.model.training  # the reference context restores the mode


def test_reference_logps_are_cached(setup):
    module, _, chunk = setup
    first = module.engine.reference_logp(chunk["forget"])
    assert set(module.engine.ref_cache) == set(chunk["forget"]["keys"])
    module.model.base_model.model.get_input_embeddings().weight.data += 1.0  # would change a recomputation
    assert torch.equal(module.engine.reference_logp(chunk["forget"]), first)


def test_adapter_saved_reloaded_scores_the_same(setup, tmp_path):
    module, dm, chunk = setup
    optimizer = module.configure_optimizers()["optimizer"]
    module.compute_losses(chunk)["total"].backward()
    optimizer.step()
    sentences = [[ex.stereotype, ex.anti_stereotype] for ex in dm.dev_examples[:4]]
    trained = SentenceScorer(module.model, module.tokenizer).sentences(sentences)
    save_adapter(module.model, tmp_path / "last", {"step": 1})
    base = module.model.get_base_model()
    with module.model.disable_adapter():
        plain = SentenceScorer(module.model, module.tokenizer).sentences(sentences)
    from peft import PeftModel

    reloaded = PeftModel.from_pretrained(base, str(tmp_path / "last"), adapter_name="reloaded")
    reloaded.set_adapter("reloaded")
    again = SentenceScorer(reloaded, module.tokenizer).sentences(sentences)
    flat = lambda xs: [s.logprob for g in xs for s in g]  # noqa: E731
    assert flat(again) == pytest.approx(flat(trained), abs=1e-5)
    assert flat(plain) != pytest.approx(flat(trained), abs=1e-5)
    assert (tmp_path / "last" / "state.json").exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"forget_weight": -0.1}, ">= 0"),
        ({"forget_weight": 0, "retain_weight": 0, "kl_weight": 0}, "all zero"),
        ({"forget": "kto"}, "method.loss.forget must be one of"),
        ({"beta": 0}, "beta"),
    ],
)
def test_bad_loss_configs(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LossConfig(**kwargs)


@pytest.mark.parametrize("mode, start", [("sum", "legacy"), ("mean", "prepend")])
def test_every_dev_evaluation_scores_as_evaluate_does(setup, tmp_path, monkeypatch, mode, start):
    """Bug 4: step 0, the dev evaluations of training and evaluate.py's scorer are one measure from one config."""
    import lightning as L
    from torch.utils.data import DataLoader

    import bias_unlearn.unlearning.module as module_code
    from bias_unlearn.eval.scorer import ScoringConfig, make_scorer
    from bias_unlearn.eval.stereoset import evaluate_stereoset, stereoset_sentence_scores

    used = []  # (start, mode) of every scoring call the module makes
    monkeypatch.setattr(
        module_code,
        "stereoset_sentence_scores",
        lambda scorer, examples, how: (
            used.append((scorer.start, how)) or stereoset_sentence_scores(scorer, examples, how)
        ),
    )
    trained, dm, _ = setup
    intra = [ex for ex in dm.dev_examples if ex.kind == "intrasentence"]  # evaluate.py reports kinds apart
    scoring = ScoringConfig(mode=mode, start=start, batch_size=4, n_bootstrap=0)
    module = BiasUnlearnModule(trained.model, trained.tokenizer, trained.loss_cfg, trained.optim_cfg, intra, scoring)
    module.eval()
    step0 = module.score_dev()
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.validate(
        module, dataloaders=DataLoader(list(enumerate(intra)), batch_size=3, collate_fn=list), verbose=False
    )
    during = module.dev_history[-1]  # a dev evaluation as training runs it (validation loop, torchmetrics state)
    assert used and set(used) == {(start, mode)}
    by_evaluate = evaluate_stereoset(make_scorer(module.model, module.tokenizer, scoring), intra, mode, 0)
    for domain, values in by_evaluate["intrasentence"].items():
        assert step0[domain]["ss"] == pytest.approx(values["ss"]) and during[domain] == pytest.approx(values["ss"])
    assert during["lms"] == pytest.approx(by_evaluate["intrasentence"]["overall"]["lms"])
