"""Stop a diverging run before a NaN or inf reaches the adapter.

After every backward pass (before the optimizer step) the loss terms of the step and the adapter's gradients are
checked. At the first non-finite value the step's gradients are dropped (AdamW skips parameters without a gradient,
so the adapter keeps its last finite weights), the run stops, and ``diverged`` names the step and the term; the
training job then delivers an adapter from the dev checkpoints written before, says in the report that the run
diverged, and exits with an error. Ranks agree on the decision, so they stop together.
"""

from __future__ import annotations

import logging

import lightning as L
import torch

from bias_unlearn.models.distributed import any_rank

log = logging.getLogger(__name__)


def first_non_finite(terms: dict, parameters) -> str | None:
    """The first loss term (``forget``, ``retain``, ``kl``, ``total``) or gradient (``grad:<name>``) that is NaN or
    inf, or None when all are finite."""
    for name, value in terms.items():
        if not torch.isfinite(torch.as_tensor(value)).all():
            return name
    for name, param in parameters:
        if param.grad is not None and not torch.isfinite(param.grad).all():
            return f"grad:{name}"
    return None


class NonFiniteGuard(L.Callback):
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.diverged: dict | None = None  # {"step", "term"} of the first non-finite value

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.enabled or self.diverged is not None:
            return
        trainable = [(n, p) for n, p in pl_module.named_parameters() if p.requires_grad]
        term = first_non_finite(getattr(pl_module, "last_terms", {}), trainable)
        if not any_rank(term is not None, pl_module.device):
            return
        for _, param in trainable:  # no update from this step
            param.grad = None
        self.diverged = {"step": int(trainer.global_step), "term": term or "on another rank"}
        trainer.should_stop = True
        log.error(
            "step %d: non-finite %s; stopping (the adapter keeps its last finite weights)",
            trainer.global_step,
            self.diverged["term"],
        )

    def state_dict(self) -> dict:
        return {"diverged": self.diverged}

    def load_state_dict(self, state: dict) -> None:
        self.diverged = state.get("diverged")
