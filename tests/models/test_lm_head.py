"""models/lm_head.py: the head at the loss rows gives the full head's log-probs; other architectures take the full
forward."""

import torch

from bias_unlearn.models.lm_head import loss_rows, split_lm, token_logprobs_at_rows
from bias_unlearn.models.logprobs import token_logprobs_from_logits


def test_token_logprobs_at_rows_match_the_full_head(tiny):
    model, _ = tiny
    split = split_lm(model)
    ids = torch.randint(0, model.config.vocab_size, (3, 7))
    mask = torch.zeros(3, 6, dtype=torch.long)
    mask[0, 2:] = 1
    mask[2, :4] = 1  # row 1 carries no loss
    with torch.no_grad():
        hidden = split.hidden(ids, torch.ones_like(ids))
        full = token_logprobs_from_logits(model(input_ids=ids).logits, ids)
        sparse = token_logprobs_at_rows(split.head(loss_rows(hidden, mask)), ids, mask)
    assert torch.allclose(sparse[mask.bool()], full[mask.bool()], atol=1e-5)
    assert (sparse[~mask.bool()] == 0).all()


def test_unknown_architectures_take_the_full_forward():
    class Other(torch.nn.Module):
        config = type("Config", (), {"model_type": "gemma2"})()  # soft-capped logits: not head(hidden)

    assert split_lm(Other()) is None
