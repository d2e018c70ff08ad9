"""CrowS-Pairs scoring: both sentences of each pair scored once; mean and sum modes come from the same pass."""
from __future__ import annotations

from typing import Sequence

from bias_unlearn.data.records import CrowsPair
from bias_unlearn.eval.metrics import CrowsPairsMetric
from bias_unlearn.eval.scorer import SentenceScorer


def score_crows_pairs(scorer: SentenceScorer, pairs: Sequence[CrowsPair]) -> tuple[dict, list]:
    """(the metric's results, one row per pair: [id, bias_type, sent_more preferred in mean mode (1/0, -1 NaN)])."""
    scores = scorer.sentences([(p.sent_more, p.sent_less) for p in pairs], desc="CrowS-Pairs")
    bias_types = sorted({p.bias_type for p in pairs})
    metric = CrowsPairsMetric(bias_types, sync_on_compute=False)  # one process scored every pair
    more, less = [s[0] for s in scores], [s[1] for s in scores]
    metric.update([bias_types.index(p.bias_type) for p in pairs], [s.logprob for s in more],
                  [s.n_tokens for s in more], [s.logprob for s in less], [s.n_tokens for s in less])
    rows = []
    for pair, (more_s, less_s) in zip(pairs, scores):
        more, less = more_s.value("mean"), less_s.value("mean")
        rows.append([pair.id, pair.bias_type, -1 if more != more or less != less else int(more > less)])
    return metric.compute(), rows
