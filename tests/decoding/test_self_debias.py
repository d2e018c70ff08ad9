"""Self-Debias (decoding/self_debias.py) against a direct, slow computation of its formula on a tiny model."""

import math

import pytest
import torch

from bias_unlearn.decoding.self_debias import SelfDebias, prefix_text, self_debias_logprobs
from bias_unlearn.eval.scorer import SentenceScorer
from tests.helpers import make_model, make_tokenizer


def test_the_formula_decays_what_the_prefixes_raise_and_renormalises():
    plain = torch.log_softmax(torch.tensor([2.0, 1.0, 0.5, -1.0]), -1)
    raised = torch.log_softmax(torch.tensor([1.0, 3.0, 0.5, -1.0]), -1)  # the prefix makes token 1 likelier
    lowered = torch.log_softmax(torch.tensor([3.0, 0.0, 0.5, -1.0]), -1)
    out = self_debias_logprobs(plain, [raised, lowered], decay=50.0, epsilon=0.01)
    p, q = plain.exp().tolist(), [max(a, b) for a, b in zip(raised.exp().tolist(), lowered.exp().tolist())]
    kept = [pi * max(math.exp(-50 * max(qi - pi, 0.0)), 0.01) for pi, qi in zip(p, q)]
    expected = [math.log(k / sum(kept)) for k in kept]
    assert out.tolist() == pytest.approx(expected, abs=1e-6)
    assert out.exp().sum().item() == pytest.approx(1.0, abs=1e-6)
    assert out[1] < plain[1]  # the raised token loses mass (its decay hits the 0.01 floor)


def test_prefix_texts_name_each_types_attribute():
    assert prefix_text("profession").endswith("because of their occupation:\n")
    assert "race/color" in prefix_text("race")
    with pytest.raises(ValueError, match="prefixes exist for"):
        SelfDebias(make_model("llama", 10), make_tokenizer("llama"), bias_types=["height"])


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_the_wrapper_equals_the_formula_position_by_position(style):
    tok = make_tokenizer(style)
    model = make_model(style, len(tok))
    debiased = SelfDebias(model, tok, bias_types=["gender", "religion"], micro_batch=2)
    start = tok.bos_token_id if style == "llama" else tok.eos_token_id
    texts = ["The nurse was caring .", "The Muslim was .", "mother"]
    rows = [[start, *tok(t, add_special_tokens=False)["input_ids"]] for t in texts]
    width = max(map(len, rows))
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    out = debiased(input_ids=ids, attention_mask=mask).logits
    prefixes = [tok(prefix_text(bt), add_special_tokens=False)["input_ids"] for bt in ("gender", "religion")]
    with torch.no_grad():
        for b, row in enumerate(rows):
            for j in range(len(row)):
                seen = row[: j + 1]
                plain = torch.log_softmax(model(torch.tensor([seen])).logits[0, -1], -1)
                prefixed = [
                    torch.log_softmax(model(torch.tensor([[start, *q, *seen[1:]]])).logits[0, -1], -1) for q in prefixes
                ]
                expected = self_debias_logprobs(plain, prefixed)
                torch.testing.assert_close(out[b, j], expected, atol=2e-5, rtol=1e-4)
    assert debiased.passes == 3


def test_rows_that_do_not_start_with_the_start_token_get_it_before_the_prefix():
    tok = make_tokenizer("llama")
    model = make_model("llama", len(tok))
    debiased = SelfDebias(model, tok, bias_types=["gender"])
    text = tok("The nurse was", add_special_tokens=False)["input_ids"]
    out = debiased(input_ids=torch.tensor([text])).logits[0]
    prefix = tok(prefix_text("gender"), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        plain = torch.log_softmax(model(torch.tensor([text])).logits[0, -1], -1)
        pref = torch.log_softmax(model(torch.tensor([[tok.bos_token_id, *prefix, *text]])).logits[0, -1], -1)
    torch.testing.assert_close(out[-1], self_debias_logprobs(plain, [pref]), atol=2e-5, rtol=1e-4)


def test_greedy_generation_follows_the_debiased_distribution():
    tok = make_tokenizer("llama")
    model = make_model("llama", len(tok))
    debiased = SelfDebias(model, tok, bias_types=["gender"])
    prompt = torch.tensor([[tok.bos_token_id, *tok("The nurse", add_special_tokens=False)["input_ids"]]])
    out = debiased.generate(prompt, max_new_tokens=3)
    ids = prompt
    for _ in range(3):
        ids = torch.cat([ids, debiased(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert out.tolist() == ids.tolist()


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_each_prefix_runs_once_per_wrapper_and_texts_continue_from_its_cache(style):
    tok = make_tokenizer(style)
    model = make_model(style, len(tok))
    debiased = SelfDebias(model, tok, bias_types=["gender", "race"])
    start = tok.bos_token_id if style == "llama" else tok.eos_token_id
    prefixes = [tok(prefix_text(bt), add_special_tokens=False)["input_ids"] for bt in ("gender", "race")]
    text = [start, *tok("The nurse", add_special_tokens=False)["input_ids"]]
    lengths = []
    hook = model.register_forward_hook(
        lambda module, args, kwargs, out: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    outs = [debiased(input_ids=torch.tensor([ids])).logits[0] for ids in (text, text[:1], text)]
    hook.remove()
    leads = [1 + len(q) for q in prefixes]
    assert min(leads) > len(text)
    assert sorted(n for n in lengths if n > len(text)) == sorted(leads)  # each prefix ran once, then its cache
    with torch.no_grad():  # the start token alone is scored from the lead's last position
        for ids, out in zip((text, text[:1]), outs):
            plain = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1], -1)
            prefixed = [
                torch.log_softmax(model(torch.tensor([[start, *q, *ids[1:]]])).logits[0, -1], -1) for q in prefixes
            ]
            torch.testing.assert_close(out[-1], self_debias_logprobs(plain, prefixed), atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(outs[0], outs[2])


def test_scoring_leaves_the_wrapped_model_without_dropout():
    tok = make_tokenizer("gpt2")
    model = make_model("gpt2", len(tok))  # GPT-2's dropout is 0.1
    debiased = SelfDebias(model, tok, bias_types=["gender"])
    SentenceScorer(debiased, tok, batch_size=4, share_prefix=False, pack_rows=False).sentences([["The nurse ."]])
    assert not model.training and not debiased.training
