"""models/fused_lora.py: the fused LoRA forward computes what PEFT computes."""

import pytest
import torch

from bias_unlearn.models.fused_lora import FusedLoraLinear, set_fused_lora


@pytest.mark.parametrize("arch, targets", [("gpt2", ["c_attn", "c_fc"]), ("llama", ["q_proj", "down_proj"])])
def test_fused_lora_computes_what_peft_computes_with_dropout_on(arch, targets):
    """The fused forward (one addmm, dropout's 1 / (1 - p) folded into it) against PEFT's, in training mode with the
    same dropout masks (same RNG state): outputs and every adapter gradient agree; a disabled adapter (the
    reference) gives the base model in both."""
    from peft import LoraConfig, get_peft_model

    from bias_unlearn.models.dropout import use_fast_dropout
    from tests.helpers import make_model

    model = get_peft_model(
        make_model(arch, 60), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.3, target_modules=targets)
    )
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


class FullyShardedDataParallel(torch.nn.Module):
    """Stands in for FSDP1 wrapping a LoRA leaf (``wraps_apart`` wraps each LoRA A/B apart): its ``weight`` outside
    the forward is the flat local shard (1-D), and only its own forward gathers the whole matrix."""

    def __init__(self, inner: torch.nn.Linear):
        super().__init__()
        self.inner = inner

    @property
    def weight(self):
        return self.inner.weight.detach().reshape(-1)[: self.inner.weight.numel() // 2]  # half of the flat shard

    @property
    def bias(self):
        return self.inner.bias

    def forward(self, x):
        return self.inner(x)


def test_fsdp_wrapped_lora_leaves_take_pefts_forward():
    """trainer=gpu strategy=fsdp trainer.precision=32-true: the fused path read lora_B.weight directly and failed on
    its shape under FSDP; with the leaves wrapped it takes PEFT's forward, which calls them as modules."""
    from peft import LoraConfig, get_peft_model

    from tests.helpers import make_model

    model = get_peft_model(make_model("llama", 60), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"]))
    model.eval()
    ids = torch.randint(0, 60, (2, 7))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
        expected = model(input_ids=ids).logits
        set_fused_lora(model, True)
        for module in model.modules():
            if isinstance(module, FusedLoraLinear):
                for name in ("lora_A", "lora_B"):
                    getattr(module, name)["default"] = FullyShardedDataParallel(getattr(module, name)["default"])
        assert torch.allclose(model(input_ids=ids).logits, expected, atol=1e-6)
