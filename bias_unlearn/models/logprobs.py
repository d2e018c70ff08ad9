"""Token log-probabilities: the one computation that training (losses) and evaluation (scoring) share.

It sits below both ``data/`` and ``eval/`` so that neither imports the other.
"""

from __future__ import annotations

import torch


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor, rows_per_chunk: int = 512) -> torch.Tensor:
    """log softmax(logits)[index] in fp32 over the last dim. For bf16/fp16 logits the positions are taken a chunk at a
    time, so no full fp32 copy of the logits is made (as TRL's ``selective_log_softmax``); fp32 logits take the
    direct route."""
    if logits.dtype == torch.float32:
        return logits.gather(-1, index.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    flat, flat_index = logits.reshape(-1, logits.shape[-1]), index.reshape(-1)
    parts = [flat.new_zeros(0, dtype=torch.float32)]  # no positions: an empty result
    for chunk, chunk_index in zip(flat.split(rows_per_chunk), flat_index.split(rows_per_chunk)):
        chunk = chunk.float()
        parts.append(chunk.gather(-1, chunk_index.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(chunk, dim=-1))
    return torch.cat(parts).reshape(index.shape)


def selective_log_softmax_(logits: torch.Tensor, index: torch.Tensor, rows_per_chunk: int = 32) -> torch.Tensor:
    """``selective_log_softmax`` for logits no one needs afterwards (scoring, under no_grad): fp32 logits are
    overwritten in place, a few rows at a time, so no logits-sized tensor is allocated (on CPU, filling a fresh
    150 MB tensor costs more than the arithmetic) and each chunk's passes stay in cache."""
    if logits.dtype != torch.float32 or logits.requires_grad:
        return selective_log_softmax(logits, index)
    flat, flat_index = logits.reshape(-1, logits.shape[-1]), index.reshape(-1)
    picked = flat.gather(-1, flat_index.unsqueeze(-1)).squeeze(-1)
    lse = torch.empty_like(picked)
    for start in range(0, len(flat), rows_per_chunk):
        chunk = flat[start : start + rows_per_chunk]
        top = chunk.amax(-1, keepdim=True)
        lse[start : start + rows_per_chunk] = chunk.sub_(top).exp_().sum(-1).log_() + top.squeeze(-1)
    return (picked - lse).reshape(index.shape)


@torch.no_grad()
def head_log_softmax(
    hidden: torch.Tensor, head: torch.nn.Linear, index: torch.Tensor, vocab_chunk: int = 4096
) -> torch.Tensor:
    """log softmax(head(hidden))[index] in fp32 for hidden states (N, H) and targets (N,), with the head run a
    slice of the vocabulary at a time into one reused buffer and the log-sum-exp kept running across slices, so the
    (N, V) logits never exist (scoring, under no_grad). On CPU a fresh logits-sized tensor costs a page fault per
    4 KiB, and the head's matmul into it runs about a fifth slower than into a buffer already mapped; the picked
    logits are read from the same slices, so every number is the full head's up to the order of the sum."""
    weight, bias = head.weight, head.bias
    n, vocab = len(hidden), weight.shape[0]
    top = torch.full((n,), float("-inf"), dtype=torch.float32, device=hidden.device)
    total = torch.zeros(n, dtype=torch.float32, device=hidden.device)
    picked = torch.empty(n, dtype=torch.float32, device=hidden.device)
    buffer = hidden.new_empty(n, min(vocab_chunk, vocab))
    for start in range(0, vocab, vocab_chunk):
        width = min(vocab_chunk, vocab - start)
        logits = buffer if width == buffer.shape[1] else hidden.new_empty(n, width)
        if bias is None:
            torch.mm(hidden, weight[start : start + width].t(), out=logits)
        else:  # as nn.Linear does: the bias inside the product, rounded once
            torch.addmm(bias[start : start + width], hidden, weight[start : start + width].t(), out=logits)
        logits = logits.float()  # a no-op for fp32; one slice at a time for bf16 / fp16
        here = (index >= start) & (index < start + width)
        picked[here] = logits[here, index[here] - start]
        new_top = torch.maximum(top, logits.amax(-1))
        total = total * (top - new_top).exp() + logits.sub_(new_top.unsqueeze(-1)).exp_().sum(-1)
        top = new_top
    return picked - top - total.log()


def token_logprobs_from_logits(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """log p(input_ids[:, t] | ...) for t >= 1 from logits of shape (B, T, V), in fp32; shape (B, T-1)."""
    return selective_log_softmax(logits[:, :-1], input_ids[:, 1:])


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """log p(input_ids[:, t] | input_ids[:, :t]) for t >= 1, shape (B, T-1), in fp32."""
    return token_logprobs_from_logits(model(input_ids=input_ids, attention_mask=attention_mask).logits, input_ids)
