"""The fast step computes what the plain step computes: the LM head only at loss positions and the cached KL
reference give the same loss terms and the same gradients (GPT-2 and Llama shapes)."""
import pytest
import torch
from omegaconf import OmegaConf

from bias_unlearn.data.datamodule import UnlearningDataModule
from bias_unlearn.data.splits import split_by_target
from bias_unlearn.data.stereoset import load_stereoset
from bias_unlearn.models.logprobs import selective_log_softmax, token_logprobs_from_logits
from bias_unlearn.models.fused_lora import FusedLoraLinear, set_fused_lora
from bias_unlearn.models.lm_head import loss_rows, split_lm, token_logprobs_at_rows
from bias_unlearn.models.lora import wrap_lora
from bias_unlearn.unlearning.module import BiasUnlearnModule
from bias_unlearn.config.settings import ComputeConfig, LossConfig, OptimConfig
from tests.helpers import train_steps

PLAIN = ComputeConfig.plain()
FAST = ComputeConfig()  # the default: every switch on (dropout 0 here: the two ways see the same function)


@pytest.fixture
def policy_and_chunks(tiny, stereoset_jsonl):
    model, tokenizer = tiny
    split = split_by_target(load_stereoset("local", str(stereoset_jsonl)), fractions=(0.5, 0.25, 0.25))
    dm = UnlearningDataModule(split, tokenizer, forget_batch=2, retain_batch=4, kl_batch=3,
                              kinds=["intrasentence", "intersentence"])
    targets = ["c_attn", "c_proj"] if "GPT2" in type(model).__name__ else ["q_proj", "v_proj", "down_proj"]
    policy = wrap_lora(model, OmegaConf.create({"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": targets}))
    stream = iter(dm.train_dataloader())
    chunks = [next(stream) for _ in range(3)]
    module = BiasUnlearnModule(policy, tokenizer, LossConfig(), OptimConfig(lr=5e-2, warmup_steps=0, total_steps=5),
                               dm.dev_examples, compute=PLAIN)
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


@pytest.mark.parametrize("loss, compute", [
    (LossConfig(), FAST),
    (LossConfig(forget="ga", kl_weight=0.5), FAST),
    (LossConfig(retain_reduction="token"), FAST),
    (LossConfig(), ComputeConfig(pack_sequences=False)),
    (LossConfig(), ComputeConfig(cache_kl_reference=False)),
    (LossConfig(), ComputeConfig(fused_lora=False)),
], ids=["npo", "ga", "token-ce", "unpacked", "uncached", "unfused"])
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
    hook = body.register_forward_hook(lambda m, args, kwargs, out: reference_rows.append(
        len(kwargs["input_ids"])) if not torch.is_grad_enabled() else None, with_kwargs=True)
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
    plain = BiasUnlearnModule(policy, tokenizer, LossConfig(), OptimConfig(), dm.dev_examples,
                              compute=ComputeConfig(pack_sequences=False))
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
    dm = UnlearningDataModule(split, tokenizer, forget_batch=2, retain_batch=2, kl_batch=2,
                              kinds=["intrasentence", "intersentence"], paired=True, adversarial_fraction=0.0)
    policy = wrap_lora(model, OmegaConf.create({"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["c_attn"]
                                                if "GPT2" in type(model).__name__ else ["q_proj", "v_proj"]}))
    chunk = next(iter(dm.train_dataloader()))
    loss = LossConfig(forget="dpo", retain_weight=0.0, kl_weight=0.0)
    plain = BiasUnlearnModule(policy, tokenizer, loss, OptimConfig(), dm.dev_examples, compute=PLAIN)
    fast = BiasUnlearnModule(policy, tokenizer, loss, OptimConfig(), dm.dev_examples, compute=FAST)
    want, _ = losses_and_grads(plain, chunk)
    got, _ = losses_and_grads(fast, chunk)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert set(fast.engine.ref_cache) == set(chunk["forget"]["keys"]) | set(chunk["retain"]["keys"])


def test_token_logprobs_at_rows_match_the_full_head(tiny):
    model, _ = tiny
    split = split_lm(model)
    ids = torch.randint(0, model.config.vocab_size, (3, 7))
    mask = torch.zeros(3, 6, dtype=torch.long)
    mask[0, 2:] = 1
    mask[2, :4] = 1  # row 1 carries no loss
    with torch.no_grad():
        hidden = split.hidden(ids, torch.ones_like(ids))
        full = token_logprobs_from_logits(model(input_ids=ids).logits, ids)
        sparse = token_logprobs_at_rows(split.head(loss_rows(hidden, mask)), ids, mask)
    assert torch.allclose(sparse[mask.bool()], full[mask.bool()], atol=1e-5)
    assert (sparse[~mask.bool()] == 0).all()


def test_selective_log_softmax_in_chunks_matches_fp32():
    logits = torch.randn(5, 9, 50)
    index = torch.randint(0, 50, (5, 9))
    want = torch.log_softmax(logits, -1).gather(-1, index[..., None])[..., 0]
    got = selective_log_softmax(logits.to(torch.bfloat16), index, rows_per_chunk=4)
    bf16_exact = torch.log_softmax(logits.to(torch.bfloat16).float(), -1).gather(-1, index[..., None])[..., 0]
    assert got.dtype == torch.float32 and got.shape == index.shape
    assert torch.allclose(got, bf16_exact, atol=1e-5) and torch.allclose(got, want, atol=0.1)
    assert selective_log_softmax(logits[:0].to(torch.bfloat16), index[:0]).shape == (0, 9)


def test_unknown_architectures_take_the_full_forward():
    class Other(torch.nn.Module):
        config = type("Config", (), {"model_type": "gemma2"})()  # soft-capped logits: not head(hidden)

    assert split_lm(Other()) is None


def test_packing_fills_rows_and_keeps_each_sequence_apart():
    from bias_unlearn.models.packing import first_fit_decreasing, pack

    assert first_fit_decreasing([5, 3, 4, 2], 7) == [[0, 3], [2, 1]]
    a = {"input_ids": torch.tensor([[7, 8, 9, 0], [5, 6, 0, 0]]), "attention_mask": torch.tensor([[1, 1, 1, 0],
                                                                                               [1, 1, 0, 0]])}
    b = {"input_ids": torch.tensor([[4, 3, 2, 1]]), "attention_mask": torch.tensor([[1, 1, 1, 1]])}
    packed = pack([a, b], pad_id=0, widths=(6,))
    assert packed.input_ids.tolist() == [[4, 3, 2, 1, 5, 6], [7, 8, 9, 0, 0, 0]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 0, 1], [0, 1, 2, 0, 0, 0]]
    mask = packed.attention_mask[0, 0]
    assert mask[5].tolist() == [False, False, False, False, True, True]  # 6 sees 5 and itself, not the other row
    assert mask[3].tolist() == [True, True, True, True, False, False]
    assert packed.gather[0].tolist() == [[6, 7, 8, 12], [4, 5, 12, 12]] and packed.gather[1].tolist() == [[0, 1, 2, 3]]


def test_fast_dropout_keeps_each_element_with_probability_1_minus_p():
    from bias_unlearn.models.dropout import FastDropout, use_fast_dropout

    torch.manual_seed(0)
    drop = FastDropout(0.1)
    x = torch.ones(400, 500)
    y = drop(x)
    kept = (y != 0).float()
    assert abs(kept.mean().item() - 0.9) < 0.003  # 200k Bernoulli(0.9) draws: sd 0.0007
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.9))
    assert abs(kept[:, :250].mean() - kept[:, 250:].mean()) < 0.005 and not torch.equal(drop(x), y)
    assert torch.equal(drop.eval()(x), x)
    x = torch.randn(30, 7, requires_grad=True)
    out = FastDropout(0.5).train()(x)
    out.sum().backward()
    assert torch.equal(x.grad, (out != 0).float() * 2)

    from peft import LoraConfig, get_peft_model

    from tests.helpers import make_model
    model = get_peft_model(make_model("llama", 60), LoraConfig(r=2, lora_dropout=0.1, target_modules=["q_proj"]))
    assert use_fast_dropout(model) == 2  # one per layer
    assert all(isinstance(m.lora_dropout["default"], FastDropout) for m in model.modules() if hasattr(m, "lora_A"))


@pytest.mark.parametrize("arch, targets", [("gpt2", ["c_attn", "c_fc"]), ("llama", ["q_proj", "down_proj"])])
def test_fused_lora_computes_what_peft_computes_with_dropout_on(arch, targets):
    """The fused forward (one addmm, dropout's 1 / (1 - p) folded into it) against PEFT's, in training mode with the
    same dropout masks (same RNG state): outputs and every adapter gradient agree; a disabled adapter (the
    reference) gives the base model in both."""
    from peft import LoraConfig, get_peft_model

    from bias_unlearn.models.dropout import use_fast_dropout
    from tests.helpers import make_model

    model = get_peft_model(make_model(arch, 60), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.3,
                                                            target_modules=targets))
    use_fast_dropout(model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # B starts at zero: make the branch matter
    ids = torch.randint(0, 60, (3, 9))
    model.train()

    def run(fused: bool):
        set_fused_lora(model, fused)
        assert sum(isinstance(m, FusedLoraLinear) for m in model.modules()) == (4 if fused else 0)  # 2 targets x 2
        model.zero_grad()
        torch.manual_seed(7)  # the same dropout masks both ways
        logits = model(input_ids=ids).logits
        logits.square().mean().backward()
        return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    (want, want_grads), (got, got_grads) = run(False), run(True)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
    for name, grad in want_grads.items():
        assert grad.abs().sum() > 0 and torch.allclose(got_grads[name], grad, rtol=1e-4, atol=1e-6), name
    model.eval()
    with torch.no_grad(), model.disable_adapter():
        reference = model(input_ids=ids).logits
    set_fused_lora(model, False)
    with torch.no_grad(), model.disable_adapter():
        assert torch.equal(model(input_ids=ids).logits, reference)


def test_packing_chooses_the_width_with_the_least_padding():
    from bias_unlearn.models.packing import pack

    lengths = [10, 10, 10, 5, 5, 5, 5]  # width 10: 5 rows (50 cells); width 20: 3 rows (60); width 30: 2 rows (60)
    batch = {"input_ids": torch.ones(len(lengths), 10, dtype=torch.long),
             "attention_mask": torch.tensor([[1] * n + [0] * (10 - n) for n in lengths])}
    packed = pack([batch], pad_id=0)
    assert packed.input_ids.shape == (5, 10)
    lengths = [8, 8, 2]  # no multiple of 8 fits them without padding; width 18 holds all three in one row
    batch = {"input_ids": torch.ones(3, 8, dtype=torch.long),
             "attention_mask": torch.tensor([[1] * n + [0] * (8 - n) for n in lengths])}
    assert pack([batch], pad_id=0).input_ids.shape == (1, 18)
    assert pack([batch], pad_id=0, max_width=12).input_ids.shape == (2, 10)  # 8 + 2 | 8: rows capped at 12
    assert pack([batch], pad_id=0, max_width=4).input_ids.shape == (3, 8)  # never narrower than the longest


def test_in_place_selective_log_softmax_matches_and_spares_tensors_that_need_grad():
    from bias_unlearn.models.logprobs import selective_log_softmax_

    torch.manual_seed(0)
    logits, index = 8 * torch.randn(3, 23, 50), torch.randint(0, 50, (3, 23))
    expected = torch.log_softmax(logits.double(), -1).gather(-1, index.unsqueeze(-1)).squeeze(-1)
    consumed = logits.clone()
    got = selective_log_softmax_(consumed, index, rows_per_chunk=5)  # 69 rows: the last chunk is partial
    assert torch.allclose(got.double(), expected, atol=1e-5) and not torch.equal(consumed, logits)  # overwritten
    trained = logits.clone().requires_grad_()
    assert torch.allclose(selective_log_softmax_(trained, index).double(), expected, atol=1e-5)
    assert torch.equal(trained.detach(), logits)  # a tensor autograd needs is left as it was
    assert torch.allclose(selective_log_softmax_(logits.to(torch.bfloat16), index).double(), expected, atol=0.1)


@pytest.mark.parametrize("bias", [False, True])
def test_head_log_softmax_streams_the_vocabulary_and_matches_the_full_head(bias):
    """Scoring's head: a vocabulary slice at a time with a running log-sum-exp equals log_softmax(head(h))[index],
    whichever slice holds each target, with a partial last slice, a bias, and bf16 weights."""
    from bias_unlearn.models.logprobs import head_log_softmax

    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=bias)
    torch.nn.init.normal_(head.weight, std=2.0)
    hidden, index = torch.randn(37, 16), torch.randint(0, 50, (37,))
    index[:3] = torch.tensor([0, 49, 12])  # the first and last token, and a slice boundary
    expected = torch.log_softmax(head(hidden).double(), -1).gather(-1, index.unsqueeze(-1)).squeeze(-1)
    for chunk in (12, 50, 64):  # 5 slices (the last of 2), one slice, one wider than the vocabulary
        got = head_log_softmax(hidden, head, index, vocab_chunk=chunk)
        assert got.dtype == torch.float32 and torch.allclose(got.double(), expected, atol=1e-5), chunk
    half = head.to(torch.bfloat16)
    expected_bf16 = torch.log_softmax(half(hidden.bfloat16()).double(), -1).gather(-1, index.unsqueeze(-1))
    got = head_log_softmax(hidden.bfloat16(), half, index, vocab_chunk=12)
    assert got.dtype == torch.float32 and torch.allclose(got.double(), expected_bf16.squeeze(-1), atol=0.05)


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
        module = BiasUnlearnModule(policy, tokenizer, LossConfig(), OptimConfig(lr=5e-2, weight_decay=0.01,
                                                                                warmup_steps=0, total_steps=5),
                                   dm.dev_examples, compute=ComputeConfig(fused_optimizer=fused))
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
