import math

import pytest
import torch

from bias_unlearn.unlearning import losses


def test_npo_at_initialisation_is_2_over_beta_ln2():
    logp = torch.tensor([-3.0, -1.5, -7.2])
    for beta in (0.1, 0.5, 2.0):
        for reduction in ("example", "batch"):
            assert losses.npo_loss(logp, logp.clone(), beta, reduction).item() == pytest.approx(2 / beta * math.log(2))


def test_npo_reductions_differ_off_initialisation_and_decrease_as_policy_forgets():
    ref = torch.tensor([-2.0, -2.0])
    policy = torch.tensor([-1.0, -5.0])
    assert losses.npo_loss(policy, ref, 1.0, "example") != pytest.approx(losses.npo_loss(policy, ref, 1.0, "batch"))
    assert losses.npo_loss(ref - 1.0, ref, 0.1) < losses.npo_loss(ref, ref, 0.1) < losses.npo_loss(ref + 1.0, ref, 0.1)
    with pytest.raises(ValueError):
        losses.npo_loss(policy, ref, 0.0)


def test_sequence_logp_mean_and_sum_over_mask():
    token_logp = torch.tensor([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]])
    mask = torch.tensor([[0, 1, 1], [1, 0, 0]])
    assert losses.sequence_logp(token_logp, mask, "sum").tolist() == [-5.0, -4.0]
    assert losses.sequence_logp(token_logp, mask, "mean").tolist() == [-2.5, -4.0]


def test_cross_entropy_per_example_by_default_pooled_as_an_option():
    """The paper's eq. 2 (and the authors' code) average per example: a one-token continuation weighs as much as a
    two-token one. The old default pooled over tokens ((1 + 2 + 4) / 3 here)."""
    token_logp = torch.tensor([[-1.0, -2.0, -9.0], [-4.0, -9.0, -9.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert losses.cross_entropy_loss(token_logp, mask).item() == pytest.approx(((1 + 2) / 2 + 4) / 2)
    assert losses.cross_entropy_loss(token_logp, mask, "token").item() == pytest.approx((1 + 2 + 4) / 3)
    with pytest.raises(ValueError, match="reduction"):
        losses.cross_entropy_loss(token_logp, mask, "sentence")
    assert losses.gradient_ascent_loss(torch.tensor([-1.0, -3.0])).item() == -2.0


def test_forward_kl_is_zero_at_initialisation_and_ignores_padding():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 11, generator=g)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    assert losses.forward_kl_loss(logits, logits.clone(), mask).item() == pytest.approx(0.0, abs=1e-7)
    other = logits.clone()
    other[0, 3] += 100 * torch.randn(11, generator=g)  # a padded position: must not count
    assert losses.forward_kl_loss(logits, other, mask).item() == pytest.approx(0.0, abs=1e-7)
    other[1, 1] += torch.randn(11, generator=g)
    kl = losses.forward_kl_loss(logits, other, mask).item()
    p, q = torch.log_softmax(logits[1, 1], -1), torch.log_softmax(other[1, 1], -1)
    assert kl == pytest.approx(float((p.exp() * (p - q)).sum()) / 5, rel=1e-5)  # KL(ref || policy), 5 real slots


def test_dpo_at_initialisation_is_ln2():
    c, r = torch.tensor([-2.0, -3.0]), torch.tensor([-1.0, -4.0])
    assert losses.dpo_loss(c, r, c.clone(), r.clone(), beta=0.1).item() == pytest.approx(math.log(2))
