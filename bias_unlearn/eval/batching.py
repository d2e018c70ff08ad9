"""Batched log-probability scoring of continuations under a causal LM.

Every benchmark reduces to one request type: score the tokens of ``continuation`` given ``context``. Requests are
sorted by length and scored in one forward pass per batch; the log-softmax is taken in fp32 whatever the model's
dtype. Where the model's logits are exactly ``head(hidden)`` (models/lm_head.py) a batch's sequences are packed end
to end (models/packing.py: no matmul on padding) and the LM head runs only at the scored positions; other models
take right-padded batches and the full forward. Each result carries both the summed log-probability and the token
count, so ``mean`` and ``sum`` sentence scores come from the same pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.config.settings import SCORE_MODES
from bias_unlearn.models.lm_head import is_sharded, split_lm
from bias_unlearn.models.logprobs import (
    head_log_softmax,
    selective_log_softmax_,
    token_logprobs,
    token_logprobs_from_logits,
)
from bias_unlearn.models.packing import pack, packed_loss_rows

PACK_WIDTH_CAP = 256  # the widest packed row made of sequences shorter than it (packed_scored_logprobs)


@dataclass(frozen=True)
class Request:
    context: tuple[int, ...]  # conditioning tokens (not scored); may be empty
    continuation: tuple[int, ...]  # scored tokens; with an empty context the first one has no prediction


@dataclass(frozen=True)
class Score:
    logprob: float  # summed natural-log probability of the scored tokens
    n_tokens: int

    def value(self, mode: str) -> float:
        if mode == "sum":
            return self.logprob
        if mode == "mean":
            return self.logprob / max(self.n_tokens, 1)
        raise ConfigError(f"unknown score mode {mode!r}; expected one of {SCORE_MODES}")


def collate(requests: Sequence[Request], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask, and the mask of scored positions in the shifted (T-1) frame."""
    seqs = [r.context + r.continuation for r in requests]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    scored = torch.zeros((len(seqs), max(width - 1, 1)), dtype=torch.bool)
    for i, (req, seq) in enumerate(zip(requests, seqs)):
        ids[i, : len(seq)] = torch.tensor(seq)
        attn[i, : len(seq)] = 1
        # token at position p is predicted at shifted index p-1; context tokens are not scored
        first = max(len(req.context), 1)
        scored[i, first - 1 : len(seq) - 1] = True
    return ids.to(device), attn.to(device), scored.to(device)


@torch.no_grad()
def score_requests(
    model,
    requests: Sequence[Request],
    batch_size: int = 32,
    pad_id: int = 0,
    progress: bool = False,
    desc: str = "scoring",
    pack_rows: bool = True,
) -> list[Score]:
    """Score every request; results come back in the order of ``requests``. ``pack_rows=False`` keeps padded
    batches and the full forward for every model (the benchmark's previous scorer)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    for i, req in enumerate(requests):
        if len(req.context) + len(req.continuation) < 2 or not req.continuation:
            raise ValueError(
                f"request {i} has nothing to score: context {len(req.context)} tokens, "
                f"continuation {len(req.continuation)} tokens"
            )
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    split = None if is_sharded(model) or not pack_rows else split_lm(model)
    order = sorted(range(len(requests)), key=lambda i: -(len(requests[i].context) + len(requests[i].continuation)))
    results: list[Score | None] = [None] * len(requests)
    try:
        for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False):
            batch = [requests[i] for i in order[start : start + batch_size]]
            ids, attn, scored = collate(batch, pad_id, device)
            if split is not None:
                sums = packed_scored_logprobs(split, ids, attn, scored, pad_id).tolist()
            else:
                sums = token_logprobs(model, ids, attn).masked_fill(~scored, 0.0).sum(-1).tolist()
            counts = scored.sum(-1).tolist()
            for j, i in enumerate(order[start : start + batch_size]):
                results[i] = Score(sums[j], counts[j])
    finally:
        model.train(was_training)
    return results  # type: ignore[return-value]


def packed_scored_logprobs(
    split, ids: torch.Tensor, attn: torch.Tensor, scored: torch.Tensor, pad_id: int
) -> torch.Tensor:
    """Per sequence of a right-padded batch, the summed fp32 log-prob of its scored tokens (``scored``: the
    (B, T-1) frame of next-token predictions): the sequences packed into rows, the head only on the scored rows."""
    # A packed row's attention costs its width per token: long texts (perplexity) stay one to a row rather than
    # quadruple their attention.
    packed = pack([{"input_ids": ids, "attention_mask": attn}], pad_id, max_width=PACK_WIDTH_CAP)
    hidden = split.hidden(packed.input_ids, packed.attention_mask, packed.position_ids)
    rows = packed_loss_rows(hidden, packed, [scored])[0]
    targets = ids[:, 1:][scored]
    if type(split.head) is torch.nn.Linear:  # a plain head: run a vocabulary slice at a time (no (N, V) logits)
        logprobs = head_log_softmax(rows, split.head, targets)
    else:
        logprobs = selective_log_softmax_(split.head(rows), targets)  # the logits are not kept
    owner = scored.nonzero(as_tuple=True)[0]  # the sequence of each scored row (row-major, as packed_loss_rows)
    return torch.zeros(len(ids), dtype=logprobs.dtype, device=logprobs.device).index_add_(0, owner, logprobs)


def shared_prefix_length(seqs: Sequence[tuple[int, ...]]) -> int:
    """Longest common token prefix of a group, leaving every sequence at least one token after it."""
    limit = min(len(seq) for seq in seqs) - 1
    n = 0
    while n < limit and all(seq[n] == seqs[0][n] for seq in seqs[1:]):
        n += 1
    return n


def _plan_batches(lengths: list[int], sizes: list[int], widths: list[int], batch_size: int) -> list[list[int]]:
    """At most ``batch_size`` sequences a batch; units sorted by prefix length, then suffix width, so that both
    passes pad little."""
    order = sorted(range(len(lengths)), key=lambda g: (lengths[g], widths[g]))
    batches: list[list[int]] = []
    for g in order:
        last = batches[-1] if batches else None
        if last and sum(sizes[k] for k in last) + sizes[g] <= batch_size:
            last.append(g)
        else:
            batches.append([g])
    return batches


@torch.no_grad()
def score_groups(
    model,
    groups: Sequence[Sequence[Request]],
    batch_size: int = 32,
    pad_id: int = 0,
    progress: bool = False,
    desc: str = "scoring",
) -> list[list[Score]]:
    """Score groups of requests that share a prefix (a context and its options, or three sentences that differ
    only after the BLANK): the shared tokens go through the model once, and every option's remaining tokens
    continue from the prefix's key/value cache. Results match ``score_requests`` up to float rounding."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    seqs = [[r.context + r.continuation for r in group] for group in groups]
    for g, group in enumerate(groups):
        if not group:
            raise ValueError(f"group {g} is empty")
        for r, seq in zip(group, seqs[g]):
            if len(seq) < 2 or not r.continuation:
                raise ValueError(
                    f"group {g} has a request with nothing to score ({len(r.context)} context, "
                    f"{len(r.continuation)} continuation tokens)"
                )
    # Units of work: a group with a shared prefix, or its members one by one where they share no first token.
    units: list[tuple[int, list[int]]] = []
    for g, group_seqs in enumerate(seqs):
        if shared_prefix_length(group_seqs) > 0:
            units.append((g, list(range(len(group_seqs)))))
        else:
            units += [(g, [k]) for k in range(len(group_seqs))]
    unit_seqs = [[seqs[g][k] for k in members] for g, members in units]
    unit_reqs = [[groups[g][k] for k in members] for g, members in units]
    lengths = [shared_prefix_length(s) for s in unit_seqs]
    widths = [max(len(x) for x in s) - lengths[u] for u, s in enumerate(unit_seqs)]
    batches = _plan_batches(lengths, [len(s) for s in unit_seqs], widths, batch_size)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    unit_results: list[list[Score]] = [[] for _ in units]
    try:
        for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
            _score_batch(model, batch, unit_reqs, unit_seqs, lengths, pad_id, device, unit_results)
    finally:
        model.train(was_training)
    results: list[list[Score | None]] = [[None] * len(group) for group in groups]
    for (g, members), scores in zip(units, unit_results):
        for k, score in zip(members, scores):
            results[g][k] = score
    return results  # type: ignore[return-value]


def _score_batch(model, batch, groups, seqs, lengths, pad_id, device, results) -> None:
    """Prefix pass (left-padded, positions counted from each row's first real token) with a key/value cache,
    then one suffix pass for every option continuing from its group's cached prefix."""
    lens = [lengths[u] for u in batch]
    width_p = max(lens)
    firsts = [[max(len(r.context), 1) for r in groups[u]] for u in batch]
    prefix = torch.full((len(batch), width_p), pad_id, dtype=torch.long)
    prefix_mask = torch.zeros((len(batch), width_p), dtype=torch.long)
    for b, u in enumerate(batch):
        prefix[b, width_p - lens[b] :] = torch.tensor(seqs[u][0][: lens[b]])
        prefix_mask[b, width_p - lens[b] :] = 1
    prefix, prefix_mask = prefix.to(device), prefix_mask.to(device)
    positions = (prefix_mask.cumsum(-1) - 1).clamp(min=0)
    # Logits only for the prefix positions some option scores (contexts condition, they are not scored).
    keep = max(max(lens[b] - min(min(f), lens[b]) + 1 for b, f in enumerate(firsts)), 1)
    out = model(
        input_ids=prefix, attention_mask=prefix_mask, position_ids=positions, use_cache=True, logits_to_keep=keep
    )
    logits = out.logits.float()  # (B, keep, V); kept index j predicts padded position width_p - keep + j + 1
    lse = torch.logsumexp(logits, dim=-1)
    rows = [b for b, u in enumerate(batch) for _ in groups[u]]
    suffixes = [seq[lens[b] :] for b, u in enumerate(batch) for seq in seqs[u]]
    first_ids = torch.tensor([[s[0]] for s in suffixes], device=device)
    next_lp = (logits[rows, -1].gather(-1, first_ids).squeeze(-1) - lse[rows, -1]).cpu()
    prefix_lp = None
    if keep > 1:
        targets = prefix[:, width_p - keep + 1 :].unsqueeze(-1)
        prefix_lp = (logits[:, :-1].gather(-1, targets).squeeze(-1) - lse[:, :-1]).cpu()
    suffix_lp = torch.zeros((len(rows), 0))
    width_s = max(len(s) for s in suffixes)
    if width_s > 1:
        row_index = torch.tensor(rows, device=device)
        cache = out.past_key_values
        cache.reorder_cache(row_index)
        ids = torch.full((len(rows), width_s), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width_s), dtype=torch.long)
        for n, s in enumerate(suffixes):
            ids[n, : len(s)] = torch.tensor(s)
            mask[n, : len(s)] = 1
        ids, mask = ids.to(device), mask.to(device)
        start = torch.tensor([lens[b] for b in rows], device=device).unsqueeze(-1)
        cont = model(
            input_ids=ids,
            attention_mask=torch.cat([prefix_mask[row_index], mask], dim=-1),
            position_ids=start + torch.arange(width_s, device=device),
            past_key_values=cache,
            use_cache=False,
        )
        suffix_lp = token_logprobs_from_logits(cont.logits, ids).cpu()
    n = 0
    for b, u in enumerate(batch):
        length = lens[b]
        for first, seq in zip(firsts[b], seqs[u]):
            total = 0.0
            if prefix_lp is not None and first < length:
                # real position p sits at kept index p - 1 - length + keep
                total += float(prefix_lp[b, first - 1 - length + keep :].sum())
            if first <= length:
                total += float(next_lp[n])
            tail = len(seq) - length - 1  # suffix tokens after the first, at positions length+1 ..
            lo = max(first - length - 1, 0)
            total += float(suffix_lp[n, lo:tail].sum()) if tail > lo else 0.0
            results[u].append(Score(total, len(seq) - first))
            n += 1
