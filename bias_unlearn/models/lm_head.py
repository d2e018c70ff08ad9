"""The decoder body and the LM head apart, so that a training step runs the head only where a loss is.

A causal LM's logits are ``head(body(ids).last_hidden_state)``. A step needs log-probs only at the positions whose
next token carries a loss (an intrasentence continuation is a few tokens of its sentence; padding carries none), so
running the body on the whole batch and the head and its log-softmax on those rows computes the same numbers for
less: the head of a small model is a large share of its FLOPs (SmolLM2-135M: 28M of 135M parameters, a 49k-wide
vocabulary) and its (B, T, V) fp32 log-softmax is the largest tensor of the step. Only architectures whose logits
are exactly that are split (no logit soft-capping or scaling), and only unsharded models (``is_sharded``); any other
model takes the full forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bias_unlearn.models.logprobs import selective_log_softmax

SPLIT_ARCHITECTURES = frozenset({"gpt2", "llama", "mistral", "mixtral", "qwen2", "qwen3", "phi3"})


@dataclass(frozen=True)
class SplitLM:
    body: torch.nn.Module  # the decoder stack, final norm included (LoRA layers inside stay live)
    head: torch.nn.Module  # the output embedding

    def hidden(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Final hidden states (B, T, H); ``attention_mask`` (B, T), or (B, 1, T, T) with ``position_ids`` for
        packed rows (models/packing.py)."""
        return self.body(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state


def split_lm(model) -> SplitLM | None:
    """The body and head of ``model`` (a PEFT model or a plain causal LM), or None where its logits are not
    exactly ``head(hidden)``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(getattr(base, "config", None), "model_type", None) not in SPLIT_ARCHITECTURES:
        return None
    body, head = getattr(base, base.base_model_prefix, None), base.get_output_embeddings()
    return SplitLM(body, head) if body is not None and head is not None else None


def is_sharded(model) -> bool:
    """Whether FSDP wraps ``model`` itself (FSDP1's ``FullyShardedDataParallel``, FSDP2's ``FSDP<Class>``): the
    root's weights (embeddings, head, final norm) are then shards gathered only by the root's own forward, which
    calling the body and the head apart would bypass. Wrapped inner layers gather in their own forwards."""
    return type(model).__name__.startswith(("FSDP", "FullyShardedDataParallel"))


def loss_rows(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The hidden states (N, H) at the positions whose next token carries a loss (``mask``: (B, T-1)), row-major."""
    rows, cols = mask.nonzero(as_tuple=True)
    return hidden[rows, cols]


def token_logprobs_at_rows(row_logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log p(input_ids[:, t+1] | ...) where ``mask[:, t]`` is set, zero elsewhere: shape (B, T-1), fp32, from the
    logits (N, V) at the masked positions in row-major order (``head(loss_rows(hidden, mask))``). Equal to
    ``token_logprobs_from_logits(head(hidden), input_ids)`` on the masked positions."""
    rows, cols = mask.nonzero(as_tuple=True)
    logp = selective_log_softmax(row_logits, input_ids[rows, cols + 1])
    return torch.zeros(mask.shape, dtype=logp.dtype, device=logp.device).index_put((rows, cols), logp)
