"""A LoRA forward with one fused add: ``base(x) + s * B(A(drop(x)))`` as a single ``addmm``.

PEFT computes the LoRA branch as ``result + lora_B(lora_A(dropout(x))) * scaling``: the (rows, out) product is
scaled in one pass and added in another, each a new tensor, and on CPU these two elementwise passes over every
adapted layer's output cost about as much as the rank-r matmuls themselves. ``addmm_(h, B^T, alpha=s)`` on the base
layer's (rows, out) output does the scale and the add inside the matmul, in place: nn.Linear's output is a fresh
matrix its backward never reads, so not even a copy of it is made (Conv1D's output is a view: it gets an
out-of-place ``addmm``, since autograd would copy a view changed in place). With ``FastDropout`` the dropout's
1 / (1 - p) moves into ``alpha`` too (B(A(m * x)) / (1 - p) is the same linear map), which saves one more pass over
the input.
The same function up to float rounding (tests/models/test_fused_lora.py). Whether it pays depends on the machine
(measured 4% faster per step than PEFT's on an AVX-512 Xeon, 10% slower on an AMD Zen 4), so ``compute.fused_lora:
auto`` decides by a one-off micro-benchmark of one adapted layer, forward and backward, kept per machine
(``fused_pays``). Anything but plain LoRA (merged or disabled
adapters, mixed batches, DoRA and other variants, a LoRA bias, mixed dtypes, LoRA leaves wrapped by FSDP) takes PEFT's
own forward.
"""

from __future__ import annotations

import json
import time

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


def _layer_seconds(dtype: torch.dtype, rows: int = 192, repeats: int = 2, rounds: int = 40) -> dict[bool, float]:
    """PEFT's and the fused forward, each forward + backward of one LoRA layer of the offline model's MLP shape
    (576 -> 1536, r 8, dropout 0.1) in training mode: the best of ``rounds`` short timings of ``repeats`` passes, the
    two timed in turn, after a warm-up of each. Many short rounds: on a busy machine some of them run undisturbed, and
    the best of each is what the layer costs (a few long rounds measured another job's load: 1.9 against 0.8 s)."""
    from peft import LoraConfig, get_peft_model

    from bias_unlearn.models.dropout import use_fast_dropout

    torch.manual_seed(0)
    models, x = {}, torch.randn(rows, 576, dtype=dtype)
    for fused in (False, True):
        model = get_peft_model(
            torch.nn.Sequential(torch.nn.Linear(576, 1536)).to(dtype),
            LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["0"]),
        )
        use_fast_dropout(model)
        set_fused_lora(model, fused)
        models[fused] = model.train()

    def passes(model, n):
        for _ in range(n):
            model(x).float().square().mean().backward()

    best = {False: float("inf"), True: float("inf")}
    for model in models.values():
        passes(model, 3)
    for _ in range(rounds):
        for fused, model in models.items():
            start = time.perf_counter()
            passes(model, repeats)
            best[fused] = min(best[fused], time.perf_counter() - start)
    return best


def fused_pays(dtype: torch.dtype = torch.float32, key: str | None = None) -> bool:
    """Whether the fused forward beats PEFT's on this machine (by at least 3%), measured once per machine and dtype
    and kept with the machine's other measurements (models/precision.py)."""
    from bias_unlearn.io import write_json
    from bias_unlearn.models.precision import machine_key
    from bias_unlearn.offline import cache_dir

    path = cache_dir() / "machine" / f"{key or machine_key()}-fused-lora-{str(dtype).removeprefix('torch.')}.json"
    try:
        return bool(json.loads(path.read_text())["fused_pays"])
    except (OSError, ValueError, KeyError):
        pass
    seconds = _layer_seconds(dtype)
    pays = seconds[True] <= 0.97 * seconds[False]
    write_json(path, {"fused_pays": pays, "fused_s": seconds[True], "peft_s": seconds[False]})
    return pays


def resolve_fused(setting, dtype: torch.dtype = torch.float32) -> bool:
    """``compute.fused_lora``: true / false as given, ``auto`` as this machine measures it."""
    return fused_pays(dtype) if setting == "auto" else bool(setting)
