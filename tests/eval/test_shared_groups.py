"""Groups scored through a decoding-time method's shared tokens (eval/shared_groups.py) equal the same texts scored
whole, and the shared tokens run once per pass."""

import pytest

from bias_unlearn.config.settings import ScoringConfig
from bias_unlearn.decoding.cafie import CAFIE
from bias_unlearn.decoding.self_debias import SelfDebias
from bias_unlearn.eval.scorer import SentenceScorer, make_scorer
from tests.helpers import make_model, make_tokenizer

CONTEXTS = [
    (
        "The nurse was caring and the doctor was kind .\nQuestion: Who was caring ?\nAnswer:",
        ["nurse", "doctor", "The mother"],
    ),
    ("The Muslim was .", ["kind", "caring ."]),
    ("mother", ["father"]),  # a group of one
]
SENTENCES = [["The nurse was caring .", "The nurse was kind .", "The doctor ."], ["mother", "father"]]


def scorers(style, start="prepend"):
    tok = make_tokenizer(style)
    method = SelfDebias(make_model(style, len(tok)), tok, bias_types=["gender", "religion"])
    whole = SentenceScorer(method, tok, batch_size=4, start=start, share_prefix=False, pack_rows=False)
    shared = SentenceScorer(method, tok, batch_size=4, start=start, share_prefix=True, pack_rows=False)
    return method, whole, shared


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_shared_tokens_score_as_the_whole_texts(style):
    _, whole, shared = scorers(style)
    for kind, groups in (("continuations", CONTEXTS), ("sentences", SENTENCES)):
        a, b = getattr(whole, kind)(groups), getattr(shared, kind)(groups)
        for ga, gb in zip(a, b):
            for sa, sb in zip(ga, gb):
                assert sa.n_tokens == sb.n_tokens
                assert sb.logprob == pytest.approx(sa.logprob, abs=1e-4)


def test_the_legacy_start_mode_without_a_shared_token_scores_each_text_whole():
    _, whole, shared = scorers("llama", start="legacy")
    groups = [["nurse was caring .", "The doctor ."]]  # no common first token once the start token is not prepended
    a, b = whole.sentences(groups), shared.sentences(groups)
    assert [s.logprob for s in b[0]] == pytest.approx([s.logprob for s in a[0]], abs=1e-4)


def test_a_context_runs_once_per_pass_not_once_per_option_and_pass():
    method, _, _ = scorers("llama")
    tok = method.tokenizer
    scorer = make_scorer(method, tok, ScoringConfig(batch_size=8, share_prefix=True, n_bootstrap=0))
    context, options = CONTEXTS[0]
    n_context = 1 + len(tok(context, add_special_tokens=False)["input_ids"])
    widths = []
    hook = method.model.register_forward_hook(
        lambda module, args, kwargs, out: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    scorer.continuations([(context, options)])
    hook.remove()
    # the plain pass over [start] + context, and each prefix's pass over the context after its cached lead
    assert sorted(w for w in widths if w >= n_context - 1) == [n_context - 1, n_context - 1, n_context]
    assert all(w < n_context - 1 for w in widths if w not in (n_context - 1, n_context))


def test_a_method_that_reads_the_whole_text_is_never_shared():
    tok = make_tokenizer("llama")
    cafie = CAFIE(make_model("llama", len(tok)), tok, bias_types=["gender"])
    scorer = make_scorer(cafie, tok, ScoringConfig(batch_size=8, share_prefix=True, n_bootstrap=0))
    assert scorer.share_prefix is False and not scorer.pack_rows
