"""CAFIE (Banerjee et al. 2024), as a decoding-time method: the text's counterfactuals (every listed group word swapped
for its counterpart in another group: data/word_lists.py) are run beside it, and at every position the original
next-token distribution p is reweighted by its differences to each counterfactual's, aligned position by position:

    s_k = p - p_k;   w_k = gamma * tanh(-lambda * s_k) + 1;   d_k = exp(||s_k||_2)   (the norm over the whole text)
    fair = sum_k (d_k / sum_j d_j) * w_k * p;   out = alpha * fair + (1 - alpha) * p

(the released code's constants: lambda 1000 for StereoSet, gamma 1, alpha 0.99, threshold 0). Tokens more likely
under the original group than under the others are cut, tokens more likely under the others raised; before the first
swapped word and in texts with no listed word nothing changes. Deviations from the released code (docs/baselines.md):
``out`` is renormalised (the released scorer reads the unnormalised values; every benchmark here reads log-softmax
of the logits, and perplexity needs a distribution); positions are aligned from character offsets instead of a
reversed token walk; every other group of a row gives a counterfactual (the released code computes a second one and
discards it); the word lists are this project's (data/word_lists/README.md).
"""

from __future__ import annotations

import torch

from bias_unlearn.data.word_lists import LIST_TYPES, Counterfactuals, map_offset
from bias_unlearn.decoding.wrapper import DecodingTimeLM
from bias_unlearn.models.tokens import start_token_id


def cafie_logprobs(
    plain: torch.Tensor,
    counterfactual: list[torch.Tensor],
    decay: float = 1000.0,
    alpha: float = 0.99,
    gamma: float = 1.0,
) -> torch.Tensor:
    """One text's debiased log-probs (T, V) from its own (T, V) and each counterfactual's, already aligned (a
    position with no counterpart carries the original's own, so s = 0 there)."""
    p = plain.float().exp()
    if not counterfactual:
        return plain.float()
    diffs = [p - q.float().exp() for q in counterfactual]
    d = torch.stack([torch.linalg.vector_norm(s).exp() for s in diffs])
    weights = d / d.sum()
    fair = sum(wk * (gamma * torch.tanh(-decay * s) + 1) * p for wk, s in zip(weights, diffs))
    out = alpha * fair + (1 - alpha) * p
    return (out / out.sum(-1, keepdim=True)).log()


class CAFIE(DecodingTimeLM):
    method = "cafie"

    def __init__(
        self,
        model,
        tokenizer,
        bias_types=LIST_TYPES,
        decay: float = 1000.0,
        alpha: float = 0.99,
        gamma: float = 1.0,
        micro_batch: int = 8,
    ):
        super().__init__(model, tokenizer, micro_batch)
        self.counterfactuals = Counterfactuals(tuple(bias_types))
        self.decay, self.alpha, self.gamma = float(decay), float(alpha), float(gamma)
        self.start_id = start_token_id(tokenizer)
        self.texts = {"seen": 0, "swapped": 0, "not_round_trip": 0}  # how many texts CAFIE could change

    @property
    def passes(self) -> int:
        """Up to one more pass per other group (texts without a listed word take one)."""
        return max(len(wl.groups) for wl in self.counterfactuals.lists)

    def text_of(self, ids: list[int]) -> tuple[str, list[int], int] | None:
        """(text, character end of each token, tokens before the text) when the ids re-encode to themselves."""
        lead = 1 if ids and ids[0] == self.start_id else 0
        body = ids[lead:]
        text = self.tokenizer.decode(body)
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if list(enc["input_ids"]) != body:
            return None
        return text, [end for _, end in enc["offset_mapping"]], lead

    def alignment(self, ids: list[int]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Per counterfactual: its ids and the (original position, counterfactual position) pairs that predict the
        same next text: the start token's, and every token boundary outside a swapped word."""
        self.texts["seen"] += 1
        found = self.text_of(ids)
        if found is None:
            self.texts["not_round_trip"] += 1
            return []
        text, ends, lead = found
        out = []
        for cf_text, swaps in self.counterfactuals.variants(text):
            enc = self.tokenizer(cf_text, add_special_tokens=False, return_offsets_mapping=True)
            cf_ids = ids[:lead] + list(enc["input_ids"])
            cf_end = {end: j for j, (_, end) in enumerate(enc["offset_mapping"])}
            pairs = [(lead - 1, lead - 1)] if lead else []
            for i, end in enumerate(ends):
                mapped = map_offset(end, swaps)
                if mapped is not None and mapped in cf_end:
                    pairs.append((lead + i, lead + cf_end[mapped]))
            out.append((cf_ids, pairs))
        self.texts["swapped"] += bool(out)
        return out

    def debiased_logprobs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        plain = self.plain_logprobs(input_ids, attention_mask)
        lengths = attention_mask.sum(-1).tolist()
        per_row = [self.alignment(input_ids[b, :n].tolist()) for b, n in enumerate(lengths)]
        cf_seqs = [cf for row in per_row for cf, _ in row]
        if not cf_seqs:
            return plain
        width = max(len(s) for s in cf_seqs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.start_id
        ids = torch.full((len(cf_seqs), width), pad, dtype=torch.long, device=input_ids.device)
        mask = torch.zeros_like(ids)
        for k, s in enumerate(cf_seqs):
            ids[k, : len(s)], mask[k, : len(s)] = torch.tensor(s, device=ids.device), 1
        cf_logprobs = self.plain_logprobs(ids, mask)
        out, k = plain.clone(), 0
        for b, row in enumerate(per_row):
            if not row:
                continue
            n = lengths[b]
            aligned = []
            for _, pairs in row:
                q = plain[b, :n].clone()  # unpaired positions: the original's own distribution (s = 0)
                if pairs:
                    mine, theirs = zip(*pairs)
                    q[list(mine)] = cf_logprobs[k, list(theirs)]
                aligned.append(q)
                k += 1
            out[b, :n] = cafie_logprobs(plain[b, :n], aligned, self.decay, self.alpha, self.gamma)
        return out
