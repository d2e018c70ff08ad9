"""BiasEdit's losses (Xu et al. 2025) as pure functions of token log-probabilities.

Shapes: ``token_logp`` and ``mask`` (B, T-1) in the shifted frame; every token of a sentence but its first carries
the loss (BiasEdit labels the whole sentence). Per sentence: ``p`` = the mean token probability and ``logp`` = the
mean token log-probability (not the log of the mean).
"""

from __future__ import annotations

import torch


def sentence_means(token_logp: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean token probability, mean token log-probability) per sentence, shape (B,) each."""
    mask = mask.to(token_logp.dtype)
    n = mask.sum(-1).clamp(min=1)
    return (token_logp.exp() * mask).sum(-1) / n, (token_logp * mask).sum(-1) / n


def debias_loss(stereo: tuple[torch.Tensor, torch.Tensor], anti: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The symmetric term that pulls each stereotype / anti-stereotype pair together, as BiasEdit's code computes it:
    mean over pairs of s * (log s - logp_a) + a * (log a - logp_s), with (s, logp_s) and (a, logp_a) each sentence's
    (mean probability, mean log-probability). 0 when both sentences' tokens are equally likely."""
    (s, s_log), (a, a_log) = stereo, anti
    return (s * (s.log() - a_log) + a * (a.log() - s_log)).mean()


def retention_loss(before: torch.Tensor, after_log: torch.Tensor) -> torch.Tensor:
    """How far the edit moved unrelated sentences: mean over sentences of p_before * (log p_before - logp_after)
    (p_before: mean token probability before the edit, logp_after: mean token log-probability after)."""
    return (before * (before.log() - after_log)).mean()
