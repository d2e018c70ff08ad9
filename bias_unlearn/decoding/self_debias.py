"""Self-Debias (Schick et al. 2021), as a decoding-time method: at every position the model's plain next-token
distribution p and its distributions after self-diagnosis prefixes ("The following text discriminates against
people because of their <attribute>:"); tokens the prefixes make more likely are decayed:

    alpha = max(0, max_k p_k - p);   p' = p * max(exp(-lambda * alpha), epsilon);   renormalised

(probability space, fp32; lambda 50 and epsilon 0.01 in the original and in bias-bench). docs/baselines.md names every
deviation from bias-bench's implementation; the main ones: prefix lengths come from the tokenizer, the prefix and
the text are joined at the token level (the text's own tokens never change), one pass uses the prefixes of every
bias type at once (Schick et al.'s multi-prefix form; bias-bench runs one type's prefix per run and has none for
profession), and each prefix ends in a newline, so the text starts a line as it does after the start token.
"""

from __future__ import annotations

import copy

import torch

from bias_unlearn.decoding.wrapper import DecodingTimeLM
from bias_unlearn.models.tokens import start_token_id

# The attribute each bias type's prefix names. bias-bench's wording for gender, race ("race/color") and religion;
# profession: StereoSet's profession examples stereotype people by their occupation (the chemist, the nurse), so
# the prefix names the occupation (bias-bench's closest prefix, "socioeconomic status/occupation", was never used
# for StereoSet and adds a class attribute the examples do not carry). CrowS-Pairs' other categories for reference.
ATTRIBUTES = {
    "gender": "gender",
    "profession": "occupation",
    "race": "race/color",
    "religion": "religion",
    "nationality": "nationality",
    "age": "age",
    "disability": "disability",
    "physical-appearance": "physical appearance",
    "sexual-orientation": "sexual orientation",
    "socioeconomic": "socioeconomic status/occupation",
}


def prefix_text(bias_type: str) -> str:
    return f"The following text discriminates against people because of their {ATTRIBUTES[bias_type]}:\n"


def self_debias_logprobs(
    plain: torch.Tensor, prefixed: list[torch.Tensor], decay: float = 50.0, epsilon: float = 0.01
) -> torch.Tensor:
    """Debiased log-probabilities from the plain log-probs (..., V) and each prefix's, aligned position by position."""
    p = plain.float().exp()
    biased = torch.stack([q.float() for q in prefixed]).exp().amax(0)
    alpha = (biased - p).clamp(min=0)
    kept = p * torch.exp(-decay * alpha).clamp(min=epsilon)
    return (kept / kept.sum(-1, keepdim=True)).log()


class SelfDebias(DecodingTimeLM):
    method = "self_debias"
    shares_context = True  # shared_logprobs below: its formula reads one position at a time

    def __init__(
        self,
        model,
        tokenizer,
        bias_types=("gender", "profession", "race", "religion"),
        decay: float = 50.0,
        epsilon: float = 0.01,
        micro_batch: int = 8,
    ):
        super().__init__(model, tokenizer, micro_batch)
        unknown = [bt for bt in bias_types if bt not in ATTRIBUTES]
        if unknown or not bias_types:
            raise ValueError(f"Self-Debias prefixes exist for {sorted(ATTRIBUTES)}; got {list(bias_types)}")
        self.bias_types, self.decay, self.epsilon = list(bias_types), float(decay), float(epsilon)
        self.start_id = start_token_id(tokenizer)
        self.prefix_ids = [tokenizer(prefix_text(bt), add_special_tokens=False)["input_ids"] for bt in self.bias_types]
        self._leads: dict = {}  # prefix index -> (key/value cache, log-probs at its last position)

    @property
    def passes(self) -> int:
        return 1 + len(self.prefix_ids)

    def lead(self, index: int):
        """The start token and prefix ``index``, the same for every text: their keys / values and the log-probs at
        their last position, computed once per wrapper (the wrapped model is frozen) and reused by every batch."""
        if index not in self._leads:
            lead_ids = torch.tensor([[self.start_id, *self.prefix_ids[index]]], device=self.device)
            out = self.model(input_ids=lead_ids, use_cache=True)
            self._leads[index] = (out.past_key_values, torch.log_softmax(out.logits[:, -1].float(), dim=-1))
        return self._leads[index]

    def prefixed_logprobs(self, index: int, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log p(. | prefix, x_<=j) at each plain position j: the prefix goes after the start token when every row
        begins with it, else before the text with the start token first. The text continues from the lead's cache,
        so a prefix costs its own tokens once per wrapper, not once per text."""
        rows = len(ids)
        after_start = bool((ids[:, 0] == self.start_id).all())
        cache, last = self.lead(index)
        body, body_mask = (ids[:, 1:], mask[:, 1:]) if after_start else (ids, mask)
        parts = [last.expand(rows, 1, -1)] if after_start else []
        if body.shape[1]:
            parts.append(self.continue_from(copy.deepcopy(cache), body, body_mask))  # the forward extends a cache
        return torch.cat(parts, dim=1)[:, : ids.shape[1]]

    def debiased_logprobs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        plain = self.plain_logprobs(input_ids, attention_mask)
        prefixed = [self.prefixed_logprobs(k, input_ids, attention_mask) for k in range(len(self.prefix_ids))]
        return self_debias_logprobs(plain, prefixed, self.decay, self.epsilon)

    def shared_pass(self, index: int | None, ids: torch.Tensor, keep: int):
        """One pass (``index`` None: the plain model; else prefix ``index`` after its cached lead) over a group's
        shared tokens ``ids`` (1, L): the log-probs at their last ``keep`` positions and the cache after them."""
        if index is None:
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=keep)
            return torch.log_softmax(out.logits.float(), dim=-1), out.past_key_values
        lead_cache, last = self.lead(index)
        cache = copy.deepcopy(lead_cache)  # the forward extends the cache it is given
        after_start = int(ids[0, 0]) == self.start_id
        body = ids[:, 1:] if after_start else ids
        parts = []
        if body.shape[1]:
            mask = torch.ones((1, cache.get_seq_length() + body.shape[1]), dtype=torch.long, device=ids.device)
            out = self.model(
                input_ids=body,
                attention_mask=mask,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=min(keep, body.shape[1]),
            )
            parts.append(torch.log_softmax(out.logits.float(), dim=-1))
            cache = out.past_key_values
        if after_start and keep > body.shape[1]:  # the start token's prediction is the lead's last position
            parts.insert(0, last[:, None])
        return torch.cat(parts, dim=1), cache

    def continue_from(self, cache, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Log-probs of every row of right-padded ``ids`` continuing from a one-row ``cache`` (a lead, or a group's
        shared tokens); the cache is extended in place."""
        rows = len(ids)
        cache.reorder_cache(torch.zeros(rows, dtype=torch.long, device=ids.device))  # one row -> every row
        cached_mask = torch.ones((rows, cache.get_seq_length()), dtype=mask.dtype, device=mask.device)
        logits = self.model(
            input_ids=ids,
            attention_mask=torch.cat([cached_mask, mask], dim=1),
            past_key_values=cache,
            use_cache=False,
        ).logits
        return torch.log_softmax(logits.float(), dim=-1)

    @torch.no_grad()
    def shared_logprobs(self, shared_ids: torch.Tensor, keep: int, suffix: torch.Tensor, mask: torch.Tensor):
        """Debiased log-probs of a group of texts that begin with the same tokens ``shared_ids`` (1, L): at the last
        ``keep`` shared positions (keep, V), and at every position of each right-padded option ``suffix`` (n, S)
        continuing from them (n, S, V; None when S is 1: an option's last token predicts nothing scored). The
        shared tokens run once in each pass (plain and every prefix) instead of once per option and pass; the
        formula reads one position at a time, so the result is the whole texts' (eval/shared_groups.py)."""
        shared, continued = [], []
        for index in [None, *range(len(self.prefix_ids))]:
            logprobs, cache = self.shared_pass(index, shared_ids, keep)
            shared.append(logprobs)
            if suffix.shape[1] > 1:
                continued.append(self.continue_from(cache, suffix, mask))
        shared = self_debias_logprobs(shared[0], shared[1:], self.decay, self.epsilon)[0]
        if not continued:
            return shared, None
        return shared, self_debias_logprobs(continued[0], continued[1:], self.decay, self.epsilon)
