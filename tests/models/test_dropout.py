"""models/dropout.py: the cheaper LoRA dropout keeps each element with probability 1 - p."""

import torch


def test_fast_dropout_keeps_each_element_with_probability_1_minus_p():
    from bias_unlearn.models.dropout import FastDropout, use_fast_dropout

    torch.manual_seed(0)
    drop = FastDropout(0.1)
    x = torch.ones(400, 500)
    y = drop(x)
    kept = (y != 0).float()
    assert abs(kept.mean().item() - 0.9) < 0.003  # 200k Bernoulli(0.9) draws: sd 0.0007
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.9))
    assert abs(kept[:, :250].mean() - kept[:, 250:].mean()) < 0.005 and not torch.equal(drop(x), y)
    assert torch.equal(drop.eval()(x), x)
    x = torch.randn(30, 7, requires_grad=True)
    out = FastDropout(0.5).train()(x)
    out.sum().backward()
    assert torch.equal(x.grad, (out != 0).float() * 2)

    from peft import LoraConfig, get_peft_model

    from tests.helpers import make_model

    model = get_peft_model(make_model("llama", 60), LoraConfig(r=2, lora_dropout=0.1, target_modules=["q_proj"]))
    assert use_fast_dropout(model) == 2  # one per layer
    assert all(isinstance(m.lora_dropout["default"], FastDropout) for m in model.modules() if hasattr(m, "lora_A"))
