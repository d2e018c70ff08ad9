"""A decoding-time debiasing method as a causal LM: it wraps a model and returns, at every position, the log of the
method's debiased next-token distribution as its logits. Whatever reads logits then scores under the method: the
project's scorer (StereoSet, CrowS-Pairs, BBQ), lm-evaluation-harness (perplexity, multiple choice: it applies
log-softmax, which leaves log-probabilities as they are) and the report's greedy completions (``generate``).

Every call runs the forwards the method needs over the whole text (``passes`` per scored token; a text's own
tokens are never cached across calls), so the scorer packs no rows for it (eval/scorer.py). What every text shares
(Self-Debias's prefixes) a method may cache once; a method whose formula reads one position at a time may also run
a group's shared tokens (BBQ's context) once per pass, through ``shared_logprobs`` (eval/shared_groups.py).
"""

from __future__ import annotations

import torch
from transformers.modeling_outputs import CausalLMOutput


class DecodingTimeLM(torch.nn.Module):
    """Subclasses implement ``debiased_logprobs(input_ids, attention_mask) -> (B, T, V)`` fp32 log-probabilities.

    ``micro_batch``: sequences per group of forwards (a method's passes multiply the memory of one batch's logits).
    """

    method = "decoding"
    decoding_time = True  # read by eval/scorer.py: no packed rows
    shares_context = False  # whether it has shared_logprobs (eval/shared_groups.py)

    def __init__(self, model, tokenizer, micro_batch: int = 8):
        super().__init__()
        self.model, self.tokenizer, self.micro_batch = model, tokenizer, micro_batch
        # The wrapper itself in eval mode too: a scorer restores the mode it found, and a new module is in train
        # mode, which would switch the wrapped model's dropout on for whatever reads it next (GPT-2's is 0.1).
        self.eval()

    @property
    def config(self):
        return self.model.config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def passes(self) -> int:
        """Forward passes per scored token (1 for the plain model)."""
        raise NotImplementedError

    def tie_weights(self) -> None:  # lm-evaluation-harness calls it on the model it is given
        pass

    def plain_logprobs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        return torch.log_softmax(logits.float(), dim=-1)

    def debiased_logprobs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_) -> CausalLMOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        parts = [
            self.debiased_logprobs(input_ids[i : i + self.micro_batch], attention_mask[i : i + self.micro_batch])
            for i in range(0, len(input_ids), self.micro_batch)
        ]
        return CausalLMOutput(logits=torch.cat(parts))

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 20,
        do_sample: bool = False,
        pad_token_id: int | None = None,
        **_,
    ) -> torch.Tensor:
        """Greedy decoding under the method (one unpadded prompt at a time, as the report's completions are)."""
        if do_sample or len(input_ids) != 1:
            raise ValueError("decoding-time methods generate greedily, one prompt at a time")
        ids = input_ids
        eos = self.tokenizer.eos_token_id
        for _ in range(max_new_tokens):
            logprobs = self.debiased_logprobs(ids, torch.ones_like(ids))[:, -1]
            token = logprobs.argmax(-1, keepdim=True)
            ids = torch.cat([ids, token], dim=1)
            if eos is not None and int(token) == eos:
                break
        return ids
