"""The fast step computes what the plain step computes: the LM head only at loss positions and the cached KL
reference give the same loss terms and the same gradients (GPT-2 and Llama shapes)."""

import pytest
import torch
from omegaconf import OmegaConf

from bias_unlearn.config.settings import ComputeConfig, LossConfig, OptimConfig
from bias_unlearn.data.datamodule import UnlearningDataModule
from bias_unlearn.data.splits import split_by_target
from bias_unlearn.data.stereoset import load_stereoset
from bias_unlearn.models.fused_lora import set_fused_lora
from bias_unlearn.models.lora import wrap_lora
from bias_unlearn.unlearning.module import BiasUnlearnModule
from tests.helpers import train_steps

PLAIN = ComputeConfig.plain()
FAST = ComputeConfig()  # the default: every switch on (dropout 0 here: the two ways see the same function)


@pytest.fixture
def policy_and_chunks(tiny, stereoset_jsonl):
    model, tokenizer = tiny
    split = split_by_target(load_stereoset("local", str(stereoset_jsonl)), fractions=(0.5, 0.25, 0.25))
    dm = UnlearningDataModule(
        split, tokenizer, forget_batch=2, retain_batch=4, kl_batch=3, kinds=["intrasentence", "intersentence"]
    )
    targets = ["c_attn", "c_proj"] if "GPT2" in type(model).__name__ else ["q_proj", "v_proj", "down_proj"]
    policy = wrap_lora(model, OmegaConf.create({"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": targets}))
    stream = iter(dm.train_dataloader())
    chunks = [next(stream) for _ in range(3)]
    module = BiasUnlearnModule(
        policy,
        tokenizer,
        LossConfig(),
        OptimConfig(lr=5e-2, warmup_steps=0, total_steps=5),
        dm.dev_examples,
        compute=PLAIN,
    )
    train_steps(module, chunks[0], 2)  # move the adapter off zero: policy != reference
    return policy, tokenizer, dm, chunks


def losses_and_grads(module, chunk):
    module.eval()  # no dropout: both ways see the same function
    set_fused_lora(module.model, module.compute.fused_lora)  # the modules share one policy: each its own forward
    module.model.zero_grad()
    terms = module.compute_losses(chunk)
    terms["total"].backward()
    grads = {n: p.grad.clone() for n, p in module.model.named_parameters() if p.requires_grad}
    return {k: v.item() for k, v in terms.items()}, grads


@pytest.mark.parametrize(
    "loss, compute",
    [
        (LossConfig(), FAST),
        (LossConfig(forget="ga", kl_weight=0.5), FAST),
        (LossConfig(retain_reduction="token"), FAST),
        (LossConfig(), ComputeConfig(pack_sequences=False)),
        (LossConfig(), ComputeConfig(cache_kl_reference=False)),
        (LossConfig(), ComputeConfig(fused_lora=False)),
    ],
    ids=["npo", "ga", "token-ce", "unpacked", "uncached", "unfused"],
)
def test_fast_step_equals_plain_step(policy_and_chunks, loss, compute):
    policy, tokenizer, dm, chunks = policy_and_chunks
    plain = BiasUnlearnModule(policy, tokenizer, loss, OptimConfig(), dm.dev_examples, compute=PLAIN)
    fast = BiasUnlearnModule(policy, tokenizer, loss, OptimConfig(), dm.dev_examples, compute=compute)
    assert fast.engine.split is not None and plain.engine.split is None
    for chunk in chunks:
        want_terms, want_grads = losses_and_grads(plain, chunk)
        got_terms, got_grads = losses_and_grads(fast, chunk)
        assert got_terms == pytest.approx(want_terms, rel=1e-5, abs=1e-6)
        for name, grad in want_grads.items():
            assert torch.allclose(got_grads[name], grad, rtol=1e-4, atol=1e-6), name
    assert fast.engine.ref_cache == pytest.approx(plain.engine.ref_cache, rel=1e-5)


def test_kl_reference_runs_once_per_sequence(policy_and_chunks):
    policy, tokenizer, dm, chunks = policy_and_chunks
    module = BiasUnlearnModule(policy, tokenizer, LossConfig(), OptimConfig(), dm.dev_examples, compute=FAST)
    reference_rows = []
    body = module.engine.split.body
    hook = body.register_forward_hook(
        lambda m, args, kwargs, out: (
            reference_rows.append(len(kwargs["input_ids"])) if not torch.is_grad_enabled() else None
        ),
        with_kwargs=True,
    )
    try:
        module.compute_losses(chunks[1])
        first = sum(reference_rows)
        module.compute_losses(chunks[1])  # the same KL and forget sequences: nothing to recompute
    finally:
        hook.remove()
    assert first > 0 and sum(reference_rows) == first
    assert set(module.engine.kl_cache) == set(chunks[1]["kl"]["keys"])


def test_reference_values_a_chunk_misses_come_from_one_forward(policy_and_chunks, monkeypatch):
    """A run's first pass misses on every forget and KL sequence: the fast step computes the reference for all
    of them in one packed forward (and only for the missing ones), the values the per-batch path computes."""
    import bias_unlearn.unlearning.engine as module_py

    policy, tokenizer, dm, chunks = policy_and_chunks
    fast = BiasUnlearnModule(policy, tokenizer, LossConfig(), OptimConfig(), dm.dev_examples, compute=FAST)
    plain = BiasUnlearnModule(
        policy, tokenizer, LossConfig(), OptimConfig(), dm.dev_examples, compute=ComputeConfig(pack_sequences=False)
    )
    forwards = []  # per packed reference forward: the sequences it ran

    def counting_pack(batches, pad_id, *args, **kwargs):
        if not torch.is_grad_enabled():
            forwards.append(sum(len(b["input_ids"]) for b in batches))
        return module_py.pack.__wrapped__(batches, pad_id, *args, **kwargs)

    counting_pack.__wrapped__ = module_py.pack
    monkeypatch.setattr(module_py, "pack", counting_pack)
    policy.eval()
    forget, kl = chunks[0]["forget"], chunks[0]["kl"]
    fast.engine.fill_reference(chunks[0])
    assert forwards == [len(forget["keys"]) + len(kl["keys"])]  # forget and KL batches in one forward
    first = dict(fast.engine.ref_cache), {k: v.clone() for k, v in fast.engine.kl_cache.items()}
    assert set(fast.engine.ref_cache) == set(forget["keys"]) and set(fast.engine.kl_cache) == set(kl["keys"])
    fast.engine.fill_reference(chunks[0])
    assert len(forwards) == 1  # nothing missing: no forward
    del fast.engine.ref_cache[forget["keys"][0]]
    fast.engine.fill_reference(chunks[0])
    assert forwards[1:] == [1]  # that one sequence alone
    with torch.no_grad():
        plain.engine.reference_logp(forget), plain.engine.reference_kl_rows(kl)  # the per-batch, padded path
    assert first[0] == pytest.approx(plain.engine.ref_cache, rel=1e-5, abs=1e-6)
    for key, rows in plain.engine.kl_cache.items():
        assert torch.allclose(first[1][key], rows, atol=1e-5), key


def test_dpo_reads_both_partners_reference_from_the_merged_forward(tiny, stereoset_jsonl):
    model, tokenizer = tiny
    split = split_by_target(load_stereoset("local", str(stereoset_jsonl)), fractions=(0.5, 0.25, 0.25))
    dm = UnlearningDataModule(
        split,
        tokenizer,
        forget_batch=2,
        retain_batch=2,
        kl_batch=2,
        kinds=["intrasentence", "intersentence"],
        paired=True,
        adversarial_fraction=0.0,
    )
    policy = wrap_lora(
        model,
        OmegaConf.create(
            {
                "r": 4,
                "alpha": 8,
                "dropout": 0.0,
                "target_modules": ["c_attn"] if "GPT2" in type(model).__name__ else ["q_proj", "v_proj"],
            }
        ),
    )
    chunk = next(iter(dm.train_dataloader()))
    loss = LossConfig(forget="dpo", retain_weight=0.0, kl_weight=0.0)
    plain = BiasUnlearnModule(policy, tokenizer, loss, OptimConfig(), dm.dev_examples, compute=PLAIN)
    fast = BiasUnlearnModule(policy, tokenizer, loss, OptimConfig(), dm.dev_examples, compute=FAST)
    want, _ = losses_and_grads(plain, chunk)
    got, _ = losses_and_grads(fast, chunk)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert set(fast.engine.ref_cache) == set(chunk["forget"]["keys"]) | set(chunk["retain"]["keys"])


def test_fused_optimizer_updates_as_torch_default(policy_and_chunks):
    """compute.fused_optimizer: AdamW's fused kernel gives the adapter the default AdamW's weights, steps apart."""
    policy, tokenizer, dm, chunks = policy_and_chunks
    start = {n: p.detach().clone() for n, p in policy.named_parameters() if p.requires_grad}
    weights = {}
    for fused in (False, True):
        with torch.no_grad():
            for name, param in policy.named_parameters():
                if name in start:
                    param.copy_(start[name])
        module = BiasUnlearnModule(
            policy,
            tokenizer,
            LossConfig(),
            OptimConfig(lr=5e-2, weight_decay=0.01, warmup_steps=0, total_steps=5),
            dm.dev_examples,
            compute=ComputeConfig(fused_optimizer=fused),
        )
        optimizer = module.configure_optimizers()["optimizer"]
        assert bool(optimizer.param_groups[0]["fused"]) is fused
        module.eval()  # no dropout: both runs see the same function
        for chunk in chunks:
            optimizer.zero_grad()
            module.compute_losses(chunk)["total"].backward()
            optimizer.step()
        weights[fused] = {n: p.detach().clone() for n, p in policy.named_parameters() if n in start}
    for name, value in weights[False].items():
        assert not torch.equal(value, start[name]), name  # the steps moved every adapter weight
        assert torch.allclose(weights[True][name], value, rtol=1e-4, atol=1e-6), name
