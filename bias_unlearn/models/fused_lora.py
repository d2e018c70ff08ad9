"""A LoRA forward with one fused add: ``base(x) + s * B(A(drop(x)))`` as a single ``addmm``.

PEFT computes the LoRA branch as ``result + lora_B(lora_A(dropout(x))) * scaling``: the (rows, out) product is
scaled in one pass and added in another, each a new tensor, and on CPU these two elementwise passes over every
adapted layer's output cost about as much as the rank-r matmuls themselves. ``addmm_(h, B^T, alpha=s)`` on the base
layer's (rows, out) output does the scale and the add inside the matmul, in place: nn.Linear's output is a fresh
matrix its backward never reads, so not even a copy of it is made (Conv1D's output is a view: it gets an
out-of-place ``addmm``, since autograd would copy a view changed in place). With ``FastDropout`` the dropout's
1 / (1 - p) moves into ``alpha`` too (B(A(m * x)) / (1 - p) is the same linear map), which saves one more pass over
the input.
The same function up to float rounding (tests/test_step_compute.py); anything but plain LoRA (merged or disabled
adapters, mixed batches, DoRA and other variants, a LoRA bias, mixed dtypes, LoRA leaves wrapped by FSDP) takes PEFT's
own forward.
"""

from __future__ import annotations

import torch
from peft.tuners.lora.layer import Linear as LoraLinear

from bias_unlearn.models.dropout import FastDropout
from bias_unlearn.models.lm_head import is_sharded


class FusedLoraLinear(LoraLinear):
    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if args or kwargs or self.disable_adapters or self.merged or self.lora_variant:
            return super().forward(x, *args, **kwargs)
        flat = x.reshape(-1, x.shape[-1])  # 2-D, so that the base output is a plain matrix, not a view
        result = self.base_layer(flat)
        for name in self.active_adapters:
            if name not in self.lora_A:
                continue
            lora_a, lora_b = self.lora_A[name], self.lora_B[name]
            if is_sharded(lora_a) or is_sharded(lora_b):  # FSDP-wrapped leaves: their weights are flat shards
                return super().forward(x)  # outside their own forward; PEFT calls them as modules (they gather)
            if lora_b.bias is not None or lora_a.weight.dtype != result.dtype or x.dtype != result.dtype:
                return super().forward(x)  # nothing computed here is kept: PEFT's forward starts afresh
            dropout, alpha = self.lora_dropout[name], self.scaling[name]
            if isinstance(dropout, FastDropout):
                dropped, keep_scale = dropout.masked(flat)
                alpha *= keep_scale
            else:
                dropped = dropout(flat)
            hidden = lora_a(dropped)
            if result._is_view():  # e.g. Conv1D's output: in place on a view would make autograd copy it back
                result = torch.addmm(result, hidden, lora_b.weight.t(), alpha=alpha)
            else:  # in place: no copy of the base output (nn.Linear's backward never reads it)
                result.addmm_(hidden, lora_b.weight.t(), alpha=alpha)
        return result.view(*x.shape[:-1], result.shape[-1])


def set_fused_lora(model, fused: bool = True) -> int:
    """Give every plain LoRA linear layer of ``model`` the fused forward (or PEFT's back); returns how many.
    Only the forward changes: parameters, state dict names and PEFT's adapter API are untouched."""
    changed = 0
    for module in model.modules():
        if fused and type(module) is LoraLinear:
            module.__class__ = FusedLoraLinear
            changed += 1
        elif not fused and type(module) is FusedLoraLinear:
            module.__class__ = LoraLinear
            changed += 1
    return changed
