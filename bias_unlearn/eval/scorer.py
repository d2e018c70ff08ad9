"""The sentence scorer every benchmark and the dev evaluation use, built from one scoring config.

``ScoringConfig`` (config/settings.py) is the typed form of ``conf/scoring/``: evaluate.py, the training job's test
split, its step-0 dev score and every later dev evaluation build their scorer with ``make_scorer`` from the same
config, so that swapping, stopping and the report compare one measure.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.config.settings import START_MODES, ScoringConfig
from bias_unlearn.eval.batching import Request, Score, score_groups, score_requests, shared_prefix_length
from bias_unlearn.eval.shared_groups import score_shared_groups
from bias_unlearn.models.reference import evaluation_mode
from bias_unlearn.models.tokens import continuation_ids, start_token_id

AUTO_SHARE_SAVING = 0.5  # share_prefix=auto shares when that skips this share of the tokens (bench_scoring.py)


def make_scorer(model, tokenizer, scoring: ScoringConfig, progress: bool = False) -> SentenceScorer:
    """The one way to build a scorer from a scoring config. A decoding-time method (decoding/wrapper.py) is scored
    through its own forward: no packed rows, and shared prefixes only through its ``shared_logprobs``."""
    pack_rows = not getattr(model, "decoding_time", False)
    return SentenceScorer(
        model, tokenizer, scoring.batch_size, scoring.start, scoring.share_prefix, progress, pack_rows=pack_rows
    )


def first_token_logprobs(model, start_id: int) -> torch.Tensor:
    """log p(. | [start]) over the vocabulary: the legacy mode's score of every sentence's first token (in eval
    mode: after training the policy is in train mode, and dropout would make this score noisy)."""
    device = next(model.parameters()).device
    ids = torch.tensor([[start_id]], device=device)
    with evaluation_mode(model):
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1].float()
    return torch.log_softmax(logits, dim=-1).cpu()


class SentenceScorer:
    """Scores groups of sentences or continuations with one model and tokenizer, per the options in docs/scoring.md.

    ``share_prefix`` runs each group's common prefix once (true), scores every sequence whole in length-sorted
    right-padded batches (false), or chooses per call from how many tokens sharing would skip (auto, the default).
    A decoding-time method shares prefixes only where it says it can (``shares_context``): a method whose weights
    read the whole text (CAFIE) is scored text by text whatever ``share_prefix`` says.
    """

    def __init__(
        self,
        model,
        tokenizer,
        batch_size: int = 32,
        start: str = "prepend",
        share_prefix: bool | str = "auto",
        progress: bool = False,
        pack_rows: bool = True,
    ):
        if start not in START_MODES:
            raise ConfigError(f"unknown start mode {start!r}; expected one of {START_MODES}")
        self.model, self.tokenizer = model, tokenizer
        self.decoding_time = getattr(model, "decoding_time", False)
        if self.decoding_time and not getattr(model, "shares_context", False):
            share_prefix = False
        self.batch_size, self.start, self.share_prefix, self.progress = batch_size, start, share_prefix, progress
        self.pack_rows = pack_rows  # packed rows and the head at scored positions only (eval/scoring.py)
        self.start_id = start_token_id(tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.start_id  # masked out, so any id works
        self._first_token: torch.Tensor | None = None

    def encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def shares_prefix(self, groups: Sequence[Sequence[Request]]) -> bool:
        """Whether to run shared prefixes once: as configured, or (auto) when that saves at least
        ``AUTO_SHARE_SAVING`` of the tokens. A prefix pass and a cached continuation pass cost more per token than
        one whole pass, so short shared prefixes (intrasentence) lose and long contexts (BBQ) win."""
        if self.share_prefix != "auto":
            return bool(self.share_prefix)
        seqs = [[r.context + r.continuation for r in group] for group in groups]
        total = sum(len(s) for group in seqs for s in group)
        saved = sum((len(group) - 1) * shared_prefix_length(group) for group in seqs if len(group) > 1)
        return total > 0 and saved / total >= AUTO_SHARE_SAVING

    def score(self, groups: Sequence[Sequence[Request]], desc: str = "scoring") -> list[list[Score]]:
        if self.shares_prefix(groups):
            if self.decoding_time:
                return score_shared_groups(self.model, groups, self.pad_id, self.progress, desc)
            return score_groups(self.model, groups, self.batch_size, self.pad_id, self.progress, desc)
        flat = score_requests(
            self.model,
            [r for g in groups for r in g],
            self.batch_size,
            self.pad_id,
            self.progress,
            desc,
            self.pack_rows,
        )
        out, k = [], 0
        for group in groups:
            out.append(flat[k : k + len(group)])
            k += len(group)
        return out

    def sentences(self, groups: Sequence[Sequence[str]], desc: str = "sentences") -> list[list[Score]]:
        """Scores of whole sentences from their first token (start token prepended, or the legacy two passes)."""
        encoded = [[self.encode(t) for t in group] for group in groups]
        for group, ids_group in zip(groups, encoded):
            for text, ids in zip(group, ids_group):
                if not ids:
                    raise ValueError(f"sentence {text!r} encodes to no tokens")
        if self.start == "prepend":
            return self.score([[Request((self.start_id,), ids) for ids in g] for g in encoded], desc)
        # legacy: the first token scored from a pass on [start] alone, the rest from a pass without it
        if self._first_token is None:
            self._first_token = first_token_logprobs(self.model, self.start_id)
        singles = [len(ids) == 1 for g in encoded for ids in g]
        if any(singles):
            raise ConfigError("legacy start mode cannot score one-token sentences; use start=prepend")
        rest = self.score([[Request((), ids) for ids in g] for g in encoded], desc)
        return [
            [Score(float(self._first_token[ids[0]]) + s.logprob, s.n_tokens + 1) for ids, s in zip(g, r)]
            for g, r in zip(encoded, rest)
        ]

    def continuations(
        self, groups: Sequence[tuple[str, Sequence[str]]], desc: str = "continuations"
    ) -> list[list[Score]]:
        """Scores of each ``" " + option`` given ``[start] + context`` (the option carries its leading space)."""
        requests = []
        for context, options in groups:
            ctx = (self.start_id, *self.encode(context))
            requests.append([Request(ctx, tuple(continuation_ids(self.tokenizer, option))) for option in options])
        return self.score(requests, desc)
