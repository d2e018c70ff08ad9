"""The frozen reference: the LoRA policy with its adapter disabled (no second copy of the weights, as TRL does),
in eval mode (no dropout) and without gradients. Training's NPO/DPO/KL terms and the generation check's "base
model" both come from here, so they are one and the same model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def evaluation_mode(model) -> Iterator:
    """Eval mode and no gradients for the block; the model's previous mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def reference_mode(policy) -> Iterator:
    """The reference model: ``policy`` (a PEFT model) with its adapter disabled, in eval mode, without gradients."""
    with evaluation_mode(policy), policy.disable_adapter():
        yield policy
