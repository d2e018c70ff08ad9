"""Groups of requests that share their first tokens (a BBQ context and its answers), scored through a decoding-time
method that can run shared tokens once (``shares_context``; decoding/self_debias.py). The method returns its
debiased log-probs at the shared positions that predict a scored token and at every option position; here they
are summed per request exactly as eval/batching.py sums a plain model's. A method without the hook (CAFIE: its
weights read the whole text) is scored text by text instead (eval/scorer.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from bias_unlearn.eval.batching import Request, Score, score_requests, shared_prefix_length
from bias_unlearn.models.reference import evaluation_mode


def score_group(model, group: Sequence[Request], pad_id: int) -> list[Score]:
    seqs = [r.context + r.continuation for r in group]
    for r, seq in zip(group, seqs):
        if len(seq) < 2 or not r.continuation:
            raise ValueError(
                f"a request with nothing to score ({len(r.context)} context, {len(r.continuation)} continuation tokens)"
            )
    firsts = [max(len(r.context), 1) for r in group]  # the first scored token of each request
    length = shared_prefix_length(seqs) if len(seqs) > 1 else len(seqs[0]) - 1
    if length < 1:  # nothing shared (the legacy start mode scores sentences without the start token)
        return score_requests(model, list(group), len(group), pad_id, pack_rows=False)
    keep = max(length - min(firsts) + 1, 1)  # shared positions that predict a scored token
    device = model.device
    suffixes = [seq[length:] for seq in seqs]
    suffix = torch.full((len(seqs), max(map(len, suffixes))), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros_like(suffix)
    for i, s in enumerate(suffixes):
        suffix[i, : len(s)], mask[i, : len(s)] = torch.tensor(s, device=device), 1
    shared, continued = model.shared_logprobs(torch.tensor([seqs[0][:length]], device=device), keep, suffix, mask)
    scores = []
    for i, (seq, first) in enumerate(zip(seqs, firsts)):
        # the token at t is predicted at position t - 1: a shared position, or one of the option's own
        total = sum(
            float(shared[t - 1 - (length - keep), seq[t]] if t - 1 < length else continued[i, t - 1 - length, seq[t]])
            for t in range(first, len(seq))
        )
        scores.append(Score(total, len(seq) - first))
    return scores


def score_shared_groups(
    model, groups: Sequence[Sequence[Request]], pad_id: int = 0, progress: bool = False, desc: str = "scoring"
) -> list[list[Score]]:
    """Every group through ``model.shared_logprobs``, one group at a time (a group is its own batch)."""
    for g, group in enumerate(groups):
        if not group:
            raise ValueError(f"group {g} is empty")
    with evaluation_mode(model):
        return [score_group(model, g, pad_id) for g in tqdm(groups, desc=desc, disable=not progress, leave=False)]
