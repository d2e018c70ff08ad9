"""FSDP for a LoRA policy: decoder layers and the trainable LoRA leaves are wrapped apart (as PEFT's
``fsdp_auto_wrap_policy`` does), so no FSDP unit mixes frozen and trainable parameters."""
from __future__ import annotations

import functools

from lightning.pytorch.strategies import FSDPStrategy

LAYER_SUFFIXES = ("DecoderLayer", "Block")  # LlamaDecoderLayer, MistralDecoderLayer, GPT2Block, ...


def wraps_apart(module) -> bool:
    """A trainable leaf (a LoRA A/B matrix) or a transformer layer."""
    weight = getattr(module, "weight", None)
    if not list(module.children()) and weight is not None and weight.requires_grad:
        return True
    return type(module).__name__.endswith(LAYER_SUFFIXES)


def lora_fsdp_strategy(**kwargs) -> FSDPStrategy:
    from torch.distributed.fsdp.wrap import lambda_auto_wrap_policy

    policy = functools.partial(lambda_auto_wrap_policy, lambda_fn=wraps_apart)
    return FSDPStrategy(auto_wrap_policy=policy, use_orig_params=True, **kwargs)
