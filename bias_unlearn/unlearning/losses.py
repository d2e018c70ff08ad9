"""Training losses as pure functions of token log-probabilities and logits.

Shapes: ``token_logp`` and ``mask`` are (B, T-1) in the shifted frame (position t scores token t+1); ``mask`` marks
the tokens that carry the loss (the continuation, never padding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOGP_REDUCTIONS = ("mean", "sum")
NPO_REDUCTIONS = ("example", "batch")
CE_REDUCTIONS = ("example", "token")


def sequence_logp(token_logp: torch.Tensor, mask: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Per-sequence log-probability of the masked tokens: their mean (default) or sum. Shape (B,)."""
    mask = mask.to(token_logp.dtype)
    total = (token_logp * mask).sum(-1)
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / mask.sum(-1).clamp(min=1)
    raise ValueError(f"unknown log-prob reduction {reduction!r}; expected one of {LOGP_REDUCTIONS}")


def npo_loss(
    policy_logp: torch.Tensor, ref_logp: torch.Tensor, beta: float = 0.1, reduction: str = "example"
) -> torch.Tensor:
    """NPO: -(2/beta) * E[log sigmoid(-beta * (logp_theta - logp_ref))].

    ``example``: the sigmoid per sequence, then the mean (the paper's expectation). ``batch``: the sigmoid once on
    the batch-mean log-ratio (the authors' code). Equals (2/beta) ln 2 when policy == reference.
    """
    if beta <= 0:
        raise ValueError(f"NPO beta must be positive, got {beta}")
    ratio = policy_logp - ref_logp
    if reduction == "example":
        return -(2.0 / beta) * F.logsigmoid(-beta * ratio).mean()
    if reduction == "batch":
        return -(2.0 / beta) * F.logsigmoid(-beta * ratio.mean())
    raise ValueError(f"unknown NPO reduction {reduction!r}; expected one of {NPO_REDUCTIONS}")


def gradient_ascent_loss(policy_logp: torch.Tensor) -> torch.Tensor:
    """Gradient ascent on the forget set: minimising the log-likelihood raises the NLL without bound."""
    return policy_logp.mean()


def cross_entropy_loss(token_logp: torch.Tensor, mask: torch.Tensor, reduction: str = "example") -> torch.Tensor:
    """Cross-entropy (negative log-likelihood) of the masked tokens.

    ``example``: the mean token loss of each sequence, then the mean over sequences (the paper's eq. 2 and the
    authors' code: a short, decisive continuation weighs as much as a long one). ``token``: pooled over every
    masked token of the batch.
    """
    mask = mask.to(token_logp.dtype)
    if reduction == "example":
        return -((token_logp * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    if reduction == "token":
        return -(token_logp * mask).sum() / mask.sum().clamp(min=1)
    raise ValueError(f"unknown cross-entropy reduction {reduction!r}; expected one of {CE_REDUCTIONS}")


def forward_kl_loss(ref_logits: torch.Tensor, policy_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(p_ref || p_theta) of the next-token distributions, averaged over real (masked) positions only.

    Logits are (B, T, V) at the positions that predict a real token; computed in fp32.
    """
    ref = F.log_softmax(ref_logits.float(), dim=-1)
    pol = F.log_softmax(policy_logits.float(), dim=-1)
    per_position = (ref.exp() * (ref - pol)).sum(-1)
    mask = mask.to(per_position.dtype)
    return (per_position * mask).sum() / mask.sum().clamp(min=1)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """DPO: -E[log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))]; ln 2 when policy == reference."""
    if beta <= 0:
        raise ValueError(f"DPO beta must be positive, got {beta}")
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin).mean()
