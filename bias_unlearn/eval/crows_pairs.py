"""CrowS-Pairs scoring: both sentences of each pair scored once; mean and sum modes come from the same pass."""
from __future__ import annotations

from typing import Sequence

from bias_unlearn.data.records import CrowsPair
from bias_unlearn.eval.metrics import CrowsPairsMetric
from bias_unlearn.eval.scorer import SentenceScorer


def evaluate_crows_pairs(scorer: SentenceScorer, pairs: Sequence[CrowsPair]) -> dict:
    scores = scorer.sentences([(p.sent_more, p.sent_less) for p in pairs], desc="CrowS-Pairs")
    bias_types = sorted({p.bias_type for p in pairs})
    metric = CrowsPairsMetric(bias_types)
    more, less = [s[0] for s in scores], [s[1] for s in scores]
    metric.update([bias_types.index(p.bias_type) for p in pairs], [s.logprob for s in more],
                  [s.n_tokens for s in more], [s.logprob for s in less], [s.n_tokens for s in less])
    return metric.compute()
