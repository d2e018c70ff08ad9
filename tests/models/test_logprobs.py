"""models/logprobs.py: token log-probabilities in fp32, chunked, in place and streamed over the vocabulary."""

import pytest
import torch

from bias_unlearn.models.logprobs import selective_log_softmax


def test_selective_log_softmax_in_chunks_matches_fp32():
    logits = torch.randn(5, 9, 50)
    index = torch.randint(0, 50, (5, 9))
    want = torch.log_softmax(logits, -1).gather(-1, index[..., None])[..., 0]
    got = selective_log_softmax(logits.to(torch.bfloat16), index, rows_per_chunk=4)
    bf16_exact = torch.log_softmax(logits.to(torch.bfloat16).float(), -1).gather(-1, index[..., None])[..., 0]
    assert got.dtype == torch.float32 and got.shape == index.shape
    assert torch.allclose(got, bf16_exact, atol=1e-5) and torch.allclose(got, want, atol=0.1)
    assert selective_log_softmax(logits[:0].to(torch.bfloat16), index[:0]).shape == (0, 9)


def test_in_place_selective_log_softmax_matches_and_spares_tensors_that_need_grad():
    from bias_unlearn.models.logprobs import selective_log_softmax_

    torch.manual_seed(0)
    logits, index = 8 * torch.randn(3, 23, 50), torch.randint(0, 50, (3, 23))
    expected = torch.log_softmax(logits.double(), -1).gather(-1, index.unsqueeze(-1)).squeeze(-1)
    consumed = logits.clone()
    got = selective_log_softmax_(consumed, index, rows_per_chunk=5)  # 69 rows: the last chunk is partial
    assert torch.allclose(got.double(), expected, atol=1e-5) and not torch.equal(consumed, logits)  # overwritten
    trained = logits.clone().requires_grad_()
    assert torch.allclose(selective_log_softmax_(trained, index).double(), expected, atol=1e-5)
    assert torch.equal(trained.detach(), logits)  # a tensor autograd needs is left as it was
    assert torch.allclose(selective_log_softmax_(logits.to(torch.bfloat16), index).double(), expected, atol=0.1)


@pytest.mark.parametrize("bias", [False, True])
def test_head_log_softmax_streams_the_vocabulary_and_matches_the_full_head(bias):
    """Scoring's head: a vocabulary slice at a time with a running log-sum-exp equals log_softmax(head(h))[index],
    whichever slice holds each target, with a partial last slice, a bias, and bf16 weights."""
    from bias_unlearn.models.logprobs import head_log_softmax

    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=bias)
    torch.nn.init.normal_(head.weight, std=2.0)
    hidden, index = torch.randn(37, 16), torch.randint(0, 50, (37,))
    index[:3] = torch.tensor([0, 49, 12])  # the first and last token, and a slice boundary
    expected = torch.log_softmax(head(hidden).double(), -1).gather(-1, index.unsqueeze(-1)).squeeze(-1)
    for chunk in (12, 50, 64):  # 5 slices (the last of 2), one slice, one wider than the vocabulary
        got = head_log_softmax(hidden, head, index, vocab_chunk=chunk)
        assert got.dtype == torch.float32 and torch.allclose(got.double(), expected, atol=1e-5), chunk
    half = head.to(torch.bfloat16)
    expected_bf16 = torch.log_softmax(half(hidden.bfloat16()).double(), -1).gather(-1, index.unsqueeze(-1))
    got = head_log_softmax(hidden.bfloat16(), half, index, vocab_chunk=12)
    assert got.dtype == torch.float32 and torch.allclose(got.double(), expected_bf16.squeeze(-1), atol=0.05)
