import pytest
import torch

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.data.stereoset import load_stereoset
from bias_unlearn.eval.batching import Request, score_groups, score_requests
from bias_unlearn.eval.scorer import SentenceScorer
from bias_unlearn.eval.stereoset import evaluate_stereoset, stereoset_sentence_scores
from bias_unlearn.models.tokens import start_token_id
from tests.helpers import make_tokenizer

SENTENCES = [
    ["The nurse was caring today .", "The nurse was cruel today .", "The nurse was blue today ."],
    ["The monk was poor today .", "The chemist was poor today ."],
    ["They were very smart .", "The fox is far away ."],
]


def manual_sentence_logprob(model, ids: list[int], start: int) -> float:
    """One unbatched pass over [start] + ids, log_softmax, sum of the tokens' log-probs."""
    with torch.no_grad():
        logits = model(torch.tensor([[start, *ids]])).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    return float(sum(logp[t, tok] for t, tok in enumerate(ids)))


def test_start_token_is_bos_or_eos():
    assert start_token_id(make_tokenizer("llama")) == make_tokenizer("llama").bos_token_id
    gpt2 = make_tokenizer("gpt2")
    assert gpt2.bos_token_id is None and start_token_id(gpt2) == gpt2.eos_token_id


def test_prepend_scores_match_manual_computation(tiny):
    model, tokenizer = tiny
    scorer = SentenceScorer(model, tokenizer, batch_size=4)
    scores = scorer.sentences(SENTENCES)
    for group, group_scores in zip(SENTENCES, scores):
        for text, score in zip(group, group_scores):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert score.n_tokens == len(ids)
            assert score.logprob == pytest.approx(manual_sentence_logprob(model, ids, scorer.start_id), abs=1e-4)


def test_legacy_mode_is_two_passes(tiny):
    model, tokenizer = tiny
    scorer = SentenceScorer(model, tokenizer, start="legacy")
    (score,) = scorer.sentences([["The nurse was caring today ."]])[0]
    ids = tokenizer("The nurse was caring today .", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        first = torch.log_softmax(model(torch.tensor([[scorer.start_id]])).logits[0, -1].double(), -1)[ids[0]]
        rest = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    expected = float(first) + float(sum(rest[t, ids[t + 1]] for t in range(len(ids) - 1)))
    assert score.logprob == pytest.approx(expected, abs=1e-4) and score.n_tokens == len(ids)


@pytest.mark.parametrize("share_prefix", [True, False])
def test_batching_does_not_change_scores(tiny, share_prefix, stereoset_jsonl):
    model, tokenizer = tiny
    examples = load_stereoset("local", str(stereoset_jsonl))
    reference = stereoset_sentence_scores(
        SentenceScorer(model, tokenizer, batch_size=1, share_prefix=False), examples, "sum"
    )
    for batch_size in (3, 64):
        scorer = SentenceScorer(model, tokenizer, batch_size=batch_size, share_prefix=share_prefix)
        got = stereoset_sentence_scores(scorer, examples, "sum")
        diff = max(abs(a - b) for x, y in zip(got, reference) for a, b in zip(x, y))
        assert diff < 1e-4, (batch_size, diff)


def test_grouped_scoring_handles_groups_without_shared_prefix(tiny):
    model, _ = tiny
    groups = [
        [Request((), (5, 6, 7)), Request((), (8, 6))],  # no shared first token (legacy-style requests)
        [Request((2, 9), (10,)), Request((2, 9), (11, 12, 13))],
        [Request((2,), (14, 15)), Request((2,), (14, 15, 16))],
    ]
    grouped = [s for g in score_groups(model, groups, batch_size=2) for s in g]
    flat = score_requests(model, [r for g in groups for r in g], batch_size=1)
    assert [s.n_tokens for s in grouped] == [2, 1, 1, 3, 2, 3]
    assert max(abs(a.logprob - b.logprob) for a, b in zip(grouped, flat)) < 1e-4


def test_continuation_carries_leading_space_and_context_is_not_scored(tiny):
    model, tokenizer = tiny
    scorer = SentenceScorer(model, tokenizer)
    ((score,),) = scorer.continuations([("I met the nurse yesterday .", ["They were very smart ."])])
    assert score.n_tokens == len(tokenizer(" They were very smart .", add_special_tokens=False)["input_ids"])


def test_empty_requests_are_rejected(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="nothing to score"):
        score_requests(model, [Request((), (5,))])
    with pytest.raises(ValueError, match="nothing to score"):
        score_groups(model, [[Request((2,), ())]])


def test_evaluate_stereoset_reports_both_kinds(tiny, stereoset_jsonl):
    model, tokenizer = tiny
    examples = load_stereoset("local", str(stereoset_jsonl))
    out = evaluate_stereoset(SentenceScorer(model, tokenizer), examples, n_bootstrap=20)
    assert set(out) == {"intrasentence", "intersentence"}
    assert out["intrasentence"]["overall"]["n"] == 48 and out["intrasentence"]["overall"]["n_targets"] == 16
    assert 0 <= out["intrasentence"]["overall"]["ss"] <= 100


def test_auto_prefix_sharing_follows_the_tokens_it_would_skip(tiny):
    from bias_unlearn.eval.scorer import ScoringConfig

    model, tokenizer = tiny
    scorer = SentenceScorer(model, tokenizer, share_prefix="auto")
    short = [[Request((1, 2), (3, 4, 5, 6)), Request((1, 2), (7, 8, 9)), Request((1, 2), (4, 4, 4))]]
    long = [
        [
            Request(tuple(range(1, 40)), (41,)),
            Request(tuple(range(1, 40)), (42, 43)),
            Request(tuple(range(1, 40)), (44,)),
        ]
    ]  # a BBQ-like context and three short options
    assert not scorer.shares_prefix(short) and scorer.shares_prefix(long)
    assert SentenceScorer(model, tokenizer, share_prefix=True).shares_prefix(short)
    assert not SentenceScorer(model, tokenizer, share_prefix=False).shares_prefix(long)
    with pytest.raises(ConfigError, match="share_prefix"):
        ScoringConfig(share_prefix="maybe")


def test_legacy_first_token_pass_runs_in_eval_mode():
    """After training the policy is in train mode: the legacy first-token scores must not carry dropout noise."""
    from bias_unlearn.eval.scorer import first_token_logprobs
    from tests.helpers import make_model

    model = make_model("gpt2", 64)
    model.config.resid_pdrop = model.config.embd_pdrop = 0.5
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    clean = first_token_logprobs(model, 1)  # built in eval mode
    model.train()
    assert torch.equal(first_token_logprobs(model, 1), clean) and model.training  # the mode is given back
    with torch.no_grad():  # the check can fail: in train mode the same pass is noisy
        noisy = torch.log_softmax(model(input_ids=torch.tensor([[1]])).logits[0, -1], -1)
    assert not torch.allclose(noisy, clean)


def test_packed_scoring_matches_the_padded_full_forward(tiny, monkeypatch):
    """The packed path (sequences end to end, the head only at scored positions) scores what right-padded
    batches through the whole model score, with and without context, for PEFT-wrapped models too."""
    import bias_unlearn.eval.batching as scoring
    from bias_unlearn.models.lora import wrap_lora

    model, _ = tiny
    requests = [
        Request((), (5, 6, 7, 8, 9)),
        Request((2, 9), (10,)),
        Request((2,), (14, 15, 16, 17, 18, 19, 20)),
        Request((3, 4, 5, 6), (7, 8)),
        Request((), (11, 12)),
        Request((2,), (13,)),
    ]
    wrapped = wrap_lora(model, {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"})
    torch.manual_seed(0)
    for name, param in wrapped.named_parameters():
        if "lora_B" in name:  # a fresh adapter is the identity: give it weights
            param.data.normal_(std=0.5)
    for candidate in (wrapped.get_base_model(), wrapped):
        assert scoring.split_lm(candidate) is not None  # both tiny architectures take the packed path
        packed = score_requests(candidate, requests, batch_size=4)
        with monkeypatch.context() as patch:
            patch.setattr(scoring, "split_lm", lambda m: None)  # the padded full forward
            padded = score_requests(candidate, requests, batch_size=4)
        assert [s.n_tokens for s in packed] == [s.n_tokens for s in padded] == [4, 1, 7, 2, 1, 1]
        assert max(abs(a.logprob - b.logprob) for a, b in zip(packed, padded)) < 1e-4
