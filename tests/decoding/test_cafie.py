"""CAFIE (decoding/cafie.py) against a direct computation of its formula on a tiny model."""

import math

import pytest
import torch

from bias_unlearn.decoding.cafie import CAFIE, cafie_logprobs
from tests.helpers import make_model

WORDS = "the boy girl man woman his her he she was kind strong . church mosque synagogue temple went to".split()


def word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<pad>", "<s>", "</s>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def test_the_formula_element_by_element():
    torch.manual_seed(0)
    plain = torch.log_softmax(torch.randn(3, 5), -1)
    cfs = [torch.log_softmax(torch.randn(3, 5), -1) for _ in range(2)]
    out = cafie_logprobs(plain, cfs, decay=7.0, alpha=0.9, gamma=0.5)
    p = plain.exp().tolist()
    qs = [q.exp().tolist() for q in cfs]
    d = [math.exp(math.sqrt(sum((p[t][v] - q[t][v]) ** 2 for t in range(3) for v in range(5)))) for q in qs]
    for t in range(3):
        row = []
        for v in range(5):
            fair = sum(
                dk / sum(d) * (0.5 * math.tanh(-7.0 * (p[t][v] - q[t][v])) + 1) * p[t][v] for dk, q in zip(d, qs)
            )
            row.append(0.9 * fair + 0.1 * p[t][v])
        assert out[t].tolist() == pytest.approx([math.log(x / sum(row)) for x in row], abs=1e-5)


def test_no_counterfactual_leaves_the_distribution_unchanged():
    plain = torch.log_softmax(torch.randn(4, 6), -1)
    torch.testing.assert_close(cafie_logprobs(plain, []), plain)
    torch.testing.assert_close(cafie_logprobs(plain, [plain.clone()]), plain, atol=1e-6, rtol=1e-5)  # s = 0


def test_the_wrapper_aligns_the_counterfactual_and_applies_the_formula():
    tok = word_tokenizer()
    model = make_model("llama", len(tok))
    cafie = CAFIE(model, tok, bias_types=["gender"], micro_batch=4)
    original = [tok.bos_token_id, *tok("the boy was kind .", add_special_tokens=False)["input_ids"]]
    counter = [tok.bos_token_id, *tok("the girl was kind .", add_special_tokens=False)["input_ids"]]
    plain_row = [tok.bos_token_id, *tok("the church was kind .", add_special_tokens=False)["input_ids"]]
    ids = torch.tensor([original, plain_row])
    out = cafie(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    with torch.no_grad():
        p = torch.log_softmax(model(torch.tensor([original])).logits[0], -1)
        q = torch.log_softmax(model(torch.tensor([counter])).logits[0], -1)
        church = torch.log_softmax(model(torch.tensor([plain_row])).logits[0], -1)
    torch.testing.assert_close(out[0], cafie_logprobs(p, [q]), atol=2e-5, rtol=1e-4)  # one word each: all aligned
    torch.testing.assert_close(out[1], church, atol=2e-5, rtol=1e-4)  # no gender word: unchanged
    torch.testing.assert_close(out[0, 1], p[1], atol=2e-5, rtol=1e-4)  # before "boy" is read: s = 0, w = 1
    assert not torch.allclose(out[0, 2], p[2], atol=1e-3)  # after it: reweighted
    assert cafie.texts == {"seen": 2, "swapped": 1, "not_round_trip": 0}


def test_a_text_that_does_not_reencode_to_its_ids_is_left_as_it_is(monkeypatch):
    tok = word_tokenizer()
    model = make_model("llama", len(tok))
    cafie = CAFIE(model, tok, bias_types=["gender"])
    ids = torch.tensor([[tok.bos_token_id, *tok("the boy was", add_special_tokens=False)["input_ids"]]])
    monkeypatch.setattr(tok, "decode", lambda ids, **_: "the boy  was kind")  # a tokenizer whose decode is lossy
    out = cafie(input_ids=ids).logits
    with torch.no_grad():
        plain = torch.log_softmax(model(ids).logits, -1)
    torch.testing.assert_close(out, plain)
    assert cafie.texts["not_round_trip"] == 1


def test_unaligned_positions_carry_no_difference():
    tok = word_tokenizer()
    cafie = CAFIE(make_model("llama", len(tok)), tok, bias_types=["religion"])
    ids = [tok.bos_token_id, *tok("he went to the mosque", add_special_tokens=False)["input_ids"]]
    variants = cafie.alignment(ids)
    assert [tok.decode(cf[1:]) for cf, _ in variants] == [
        "he went to the synagogue",
        "he went to the temple",
        "he went to the church",
    ]
    assert all(pairs == [(k, k) for k in range(len(ids))] for _, pairs in variants)
