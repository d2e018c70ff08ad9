"""BiasEdit (editing/): its losses and ridge solve against direct computations, the editor's shapes and identity
start, the hooks' keys and value gradients against autograd's weight gradient, and one meta-update."""

import math

import pytest
import torch

from bias_unlearn.editing.editor import Editor, ridge_shift
from bias_unlearn.editing.hooks import apply_shifts, capture, edited_modules, module_shape, shifted
from bias_unlearn.editing.losses import debias_loss, retention_loss, sentence_means
from bias_unlearn.editing.training import build_batches, global_shifts, make_editor, meta_step
from tests.helpers import make_model, make_stereoset_rows, make_tokenizer


def test_losses_follow_biasedits_formulas():
    logp = torch.log(torch.tensor([[0.5, 0.2, 0.0], [0.1, 0.4, 0.3]]).clamp(min=1e-30))
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    p, lp = sentence_means(logp, mask)
    assert p.tolist() == pytest.approx([0.35, 0.8 / 3])
    assert lp[0].item() == pytest.approx((math.log(0.5) + math.log(0.2)) / 2)
    s, a = (p[:1], lp[:1]), (p[1:], lp[1:])
    expected = p[0] * (math.log(p[0]) - lp[1]) + p[1] * (math.log(p[1]) - lp[0])
    assert debias_loss(s, a).item() == pytest.approx(float(expected))
    one = torch.log(torch.tensor([[0.3]]))  # one token each, equally likely: nothing to pull together
    same = sentence_means(one, torch.ones(1, 1))
    assert debias_loss(same, same).item() == pytest.approx(0.0, abs=1e-7)
    before, after = torch.tensor([0.4]), torch.tensor([math.log(0.2)])
    assert retention_loss(before, after).item() == pytest.approx(0.4 * (math.log(0.4) - math.log(0.2)))


def test_the_ridge_solve_and_summed_batches():
    torch.manual_seed(0)
    u1, u2, d1, d2 = torch.randn(7, 4), torch.randn(5, 4), torch.randn(7, 3), torch.randn(5, 3)
    lam = torch.tensor(0.3)
    direct = torch.linalg.inv(u1.T @ u1 + math.exp(0.3) * torch.eye(4)) @ u1.T @ d1
    torch.testing.assert_close(ridge_shift(u1.T @ u1, u1.T @ d1, lam), direct, atol=1e-5, rtol=1e-5)
    u, d = torch.cat([u1, u2]), torch.cat([d1, d2])
    joint = ridge_shift(u1.T @ u1 + u2.T @ u2, u1.T @ d1 + u2.T @ d2, lam)
    torch.testing.assert_close(joint, ridge_shift(u.T @ u, u.T @ d, lam), atol=1e-5, rtol=1e-5)


def test_the_editor_starts_as_the_identity_and_its_value_change_follows_the_formula():
    torch.manual_seed(0)
    editor = Editor(6, 4, n_modules=2, rank=3, n_blocks=2, lr=0.5)
    keys, grads = torch.randn(9, 6), torch.randn(9, 4)
    editor.set_normaliser(torch.cat([keys, grads], -1))
    pk, pg = editor.pseudo(keys, grads, 1)
    assert pk.shape == (9, 6) and pg.shape == (9, 4)
    torch.testing.assert_close(pk, (keys - editor.mean[:6]) / editor.std[:6])
    diffs = editor.value_diffs(keys, grads, 1)
    torch.testing.assert_close(diffs, -0.5 * (keys * pk).sum(-1, keepdim=True) * pg)
    assert editor.shift(keys, grads, 0).shape == (6, 4)


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_keys_and_value_gradients_give_the_weight_gradient(style):
    """For y = x W (+ b), dL/dW = sum_t x_t^T g_t: the captured keys and gradients are the right ones."""
    tok = make_tokenizer(style)
    model = make_model(style, len(tok))
    (name, module), *_ = edited_modules(model, 1)
    model.requires_grad_(False)
    module.weight.requires_grad_(True)
    ids = torch.tensor([[1, 5, 9, 12, 7]])
    with capture([module]) as store:
        loss = model(ids).logits.float().log_softmax(-1)[0, :, 3].sum()
        loss.backward()
    key, grad = store[0]["key"][0], store[0]["probe"].grad[0]
    expected = key.T @ grad  # (in, out)
    actual = module.weight.grad.T if isinstance(module, torch.nn.Linear) else module.weight.grad
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)
    assert module_shape(module) == tuple(expected.shape)


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_a_shift_by_hook_equals_the_shift_in_the_weights(style):
    tok = make_tokenizer(style)
    model = make_model(style, len(tok))
    modules = [m for _, m in edited_modules(model, 2)]
    shifts = [torch.randn(*module_shape(m)) * 0.05 for m in modules]
    ids = torch.tensor([[1, 5, 9, 12, 7]])
    with torch.no_grad(), shifted(modules, shifts):
        hooked = model(ids).logits
    apply_shifts(modules, shifts)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, hooked, atol=1e-5, rtol=1e-4)


def test_one_meta_update_lowers_the_meta_loss_on_its_batch(stereoset_jsonl):
    from bias_unlearn.data.splits import split_by_target
    from bias_unlearn.data.stereoset import load_stereoset

    tok = make_tokenizer("llama")
    model = make_model("llama", len(tok)).requires_grad_(False)
    split = split_by_target(load_stereoset("local", str(stereoset_jsonl)), seed=0, fractions=(0.6, 0.2, 0.2))
    train = [ex for ex in split.train if ex.kind == "intrasentence"]
    modules = [m for _, m in edited_modules(model, 2)]
    batches = build_batches(model, modules, tok, train, 4, 0, tok.pad_token_id)
    assert batches and batches[0].keys[0].shape[1] == module_shape(modules[0])[0]
    assert len(batches[0].keys[0]) == int(batches[0].pairs["loss_mask"].sum())  # one row per token with a loss
    torch.manual_seed(0)
    editor = make_editor(modules, batches, rank=4, n_blocks=2, lr=1e-2)
    optimiser = torch.optim.SGD(editor.parameters(), lr=1e-3)
    first = meta_step(model, modules, editor, batches[0], loc_coef=1.0)
    grads = {n: p.grad for n, p in editor.named_parameters()}
    assert grads["lr"].abs().sum() > 0 and grads["blocks.1.up"].abs().sum() > 0  # the update reaches the editor
    optimiser.step()
    optimiser.zero_grad()
    assert meta_step(model, modules, editor, batches[0], loc_coef=1.0)["loss"] < first["loss"]
    shifts = global_shifts(editor, batches)
    assert [s.shape for s in shifts] == [module_shape(m) for m in modules]
    assert make_stereoset_rows  # the fixture rows the split came from
