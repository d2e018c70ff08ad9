"""FSDP for a LoRA policy: decoder layers and the trainable LoRA leaves are wrapped apart (as PEFT's
``fsdp_auto_wrap_policy`` does), so no FSDP unit mixes frozen and trainable parameters. That also keeps every
unit one dtype (FSDP flattens a unit into one tensor): with ``precision: bf16-mixed`` the frozen base is bf16 and
the LoRA leaves fp32 (PEFT upcasts adapters over a bf16 base), which only works when they are wrapped apart.

Chosen with ``strategy=fsdp`` (conf/strategy/fsdp.yaml) or ``trainer=fsdp`` (= trainer=gpu strategy=fsdp)."""

from __future__ import annotations

import functools

from lightning.pytorch.plugins.precision import FSDPPrecision
from lightning.pytorch.strategies import FSDPStrategy

LAYER_SUFFIXES = ("DecoderLayer", "Block")  # LlamaDecoderLayer, MistralDecoderLayer, GPT2Block, ...


def wraps_apart(module) -> bool:
    """A trainable leaf (a LoRA A/B matrix) or a transformer layer."""
    weight = getattr(module, "weight", None)
    if not list(module.children()) and weight is not None and weight.requires_grad:
        return True
    return type(module).__name__.endswith(LAYER_SUFFIXES)


class ShardedNormClipping(FSDPPrecision):
    """Lightning's FSDPPrecision refuses ``gradient_clip_val`` (clip by norm): ``torch.nn.utils.clip_grad_norm_``
    on one rank's shards would see only part of the gradient. ``FullyShardedDataParallel.clip_grad_norm_`` on the
    root module all-reduces the norm across ranks; ``root`` returns that module once the strategy has wrapped it."""

    def __init__(self, precision, root, scaler=None) -> None:
        super().__init__(precision, scaler)
        self._root = root

    def clip_grad_by_norm(self, optimizer, clip_val) -> None:
        root = self._root()
        if root is None or not hasattr(root, "clip_grad_norm_"):
            raise RuntimeError("gradient clipping under FSDP needs the wrapped root module; the strategy has none yet")
        root.clip_grad_norm_(clip_val)


class LoraFSDPStrategy(FSDPStrategy):
    """FSDPStrategy that clips gradients by norm across shards (trainer.gradient_clip_val works as on one GPU)."""

    @property
    def precision_plugin(self) -> FSDPPrecision:
        return FSDPStrategy.precision_plugin.fget(self)

    @precision_plugin.setter
    def precision_plugin(self, plugin) -> None:
        # The Trainer sets FSDPPrecision(trainer.precision); keep its precision, add the sharded clipping.
        if isinstance(plugin, FSDPPrecision) and not isinstance(plugin, ShardedNormClipping):
            plugin = ShardedNormClipping(plugin.precision, lambda: self.model, plugin.scaler)
        FSDPStrategy.precision_plugin.fset(self, plugin)

    def setup_environment(self) -> None:
        # Lightning checks this only for FSDPStrategy itself, not for subclasses; say it before any process group.
        from lightning.pytorch.accelerators import CUDAAccelerator

        if not isinstance(self.accelerator, CUDAAccelerator):
            raise ValueError(
                f"strategy=fsdp needs CUDA GPUs (trainer=gpu or trainer.accelerator=gpu); got "
                f"{type(self.accelerator).__name__}. On CPU use strategy=auto or strategy=ddp."
            )
        super().setup_environment()


def lora_fsdp_strategy(**kwargs) -> LoraFSDPStrategy:
    from torch.distributed.fsdp.wrap import lambda_auto_wrap_policy

    policy = functools.partial(lambda_auto_wrap_policy, lambda_fn=wraps_apart)
    # the original parameters stay visible: configure_optimizers picks the trainable ones, PEFT reads them by name
    kwargs.setdefault("use_orig_params", True)
    return LoraFSDPStrategy(auto_wrap_policy=policy, **kwargs)
