"""The LightningModule's three configs: the objective (``LossConfig``), how a step is computed (``ComputeConfig``)
and the optimiser (``OptimConfig``), each validated where it is built."""
from __future__ import annotations

from dataclasses import dataclass

from bias_unlearn import losses
from bias_unlearn.errors import ConfigError

# The loss on the forget stream: BiasUnlearn's NPO, gradient ascent, plain cross-entropy (the SFT baseline learns
# the stereotype stream too) or DPO (rejected = forget batch, chosen = its paired retain batch).
FORGET_LOSSES = ("npo", "ga", "ce", "dpo")


MIN_BETA = 1e-3


@dataclass
class LossConfig:
    """The objective a1 * forget + a2 * retain + a3 * KL (METHOD.md)."""

    forget: str = "npo"  # npo | ga | ce | dpo
    forget_weight: float = 0.4
    retain_weight: float = 0.4
    kl_weight: float = 0.2
    beta: float = 0.1  # NPO / DPO temperature
    logp_reduction: str = "mean"  # sequence log-prob: mean or sum of token log-probs
    npo_reduction: str = "example"  # example (paper) | batch (authors' code)
    retain_reduction: str = "example"  # cross-entropy: example (paper eq. 2, authors' code) | token (pooled)

    def __post_init__(self):
        weights = {"forget_weight": self.forget_weight, "retain_weight": self.retain_weight,
                   "kl_weight": self.kl_weight}
        for key, weight in weights.items():
            if not weight >= 0:
                raise ConfigError(f"loss.{key} must be >= 0, got {weight}")
        if not any(w > 0 for w in weights.values()):
            raise ConfigError("loss weights are all zero: nothing to train")
        if self.forget not in FORGET_LOSSES:
            raise ConfigError(f"unknown forget loss {self.forget!r}; expected one of {FORGET_LOSSES}")
        if self.logp_reduction not in losses.LOGP_REDUCTIONS:
            raise ConfigError(f"unknown logp_reduction {self.logp_reduction!r}")
        if self.npo_reduction not in losses.NPO_REDUCTIONS:
            raise ConfigError(f"unknown npo_reduction {self.npo_reduction!r}")
        if self.retain_reduction not in losses.CE_REDUCTIONS:
            raise ConfigError(f"loss.retain_reduction must be one of {losses.CE_REDUCTIONS}, got "
                              f"{self.retain_reduction!r}")
        if not self.beta >= MIN_BETA:
            raise ConfigError(f"loss.beta must be at least {MIN_BETA} (NPO and DPO scale by 1 / beta: a smaller beta "
                              f"makes the forget loss explode), got {self.beta}")


@dataclass
class ComputeConfig:
    """How a step is computed. Each switch changes the cost, not the losses (tests/test_step_compute.py)."""

    sparse_head: bool = True  # LM head + log-softmax only where a loss is (models/lm_head.py; exact architectures)
    cache_kl_reference: bool = True  # the reference's hidden states of each KL sequence computed once and kept
    pack_sequences: bool = True  # with sparse_head: the policy forward on packed rows, no padding (models/packing.py)
    fast_dropout: bool = True  # LoRA dropout masks from 16-bit draws on CPU (models/dropout.py): same distribution
    fused_lora: bool = True  # the LoRA branch's scale and add inside one addmm (models/fused_lora.py)
    fused_optimizer: bool = True  # AdamW's fused kernel: one call per parameter, not ~12 (same update, float rounding)

    @classmethod
    def plain(cls) -> "ComputeConfig":
        """Every switch off: the step as it was before the speed work (benchmarks compare against it)."""
        return cls(sparse_head=False, cache_kl_reference=False, pack_sequences=False, fast_dropout=False,
                   fused_lora=False, fused_optimizer=False)


@dataclass
class OptimConfig:
    lr: float = 5e-5
    weight_decay: float = 0.0
    warmup_steps: int = 10
    total_steps: int = 1000  # the linear schedule decays to zero here
