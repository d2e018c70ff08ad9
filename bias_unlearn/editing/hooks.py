"""Which modules BiasEdit edits, and hooks that read their keys and value gradients or add a weight shift to their
output without touching the weights (y + x dW, differentiable in dW)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from bias_unlearn.config.errors import ConfigError

MLP_OUTPUTS = ("mlp.down_proj", "mlp.c_proj")  # Llama / Mistral / Qwen, GPT-2


def edited_modules(model, last: int = 3) -> list[tuple[str, nn.Module]]:
    """The last ``last`` MLP output projections (BiasEdit's "last123" for GPT-2, Llama 3 and Mistral)."""
    found = [(name, m) for name, m in model.named_modules() if name.endswith(MLP_OUTPUTS)]
    if len(found) < last:
        raise ConfigError(
            f"method.editing.layers={last}: the model has {len(found)} MLP output projections ({'/'.join(MLP_OUTPUTS)})"
        )
    return found[-last:]


def module_shape(module: nn.Module) -> tuple[int, int]:
    """(in, out) of a Linear (weight out x in) or a GPT-2 Conv1D (weight in x out)."""
    weight = module.weight
    return (weight.shape[1], weight.shape[0]) if isinstance(module, nn.Linear) else tuple(weight.shape)


@contextlib.contextmanager
def capture(modules: list[nn.Module]) -> Iterator[list[dict]]:
    """Per module {"key": its input, "probe": a zero leaf on its output whose ``.grad`` after backward is the
    gradient at the output}."""
    store: list[dict] = [{} for _ in modules]

    def hook(i):
        def fn(_module, inputs, output):
            # A zero leaf added to the output: its .grad is the output's gradient, and the graph stays whole (the
            # gradient at one module still flows through the later modules' own paths).
            probe = torch.zeros_like(output, requires_grad=True)
            store[i]["key"], store[i]["probe"] = inputs[0].detach(), probe
            return output + probe

        return fn

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(modules)]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def shifted(modules: list[nn.Module], shifts: list[torch.Tensor]) -> Iterator[None]:
    """Each module's output plus its input times its shift (in x out): the edited model, differentiable in the
    shifts."""

    def hook(shift):
        return lambda _m, inputs, output: output + inputs[0] @ shift.to(output.dtype)

    handles = [m.register_forward_hook(hook(s)) for m, s in zip(modules, shifts)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def apply_shifts(modules: list[nn.Module], shifts: list[torch.Tensor]) -> None:
    """Add the shifts to the weights for good (the delivered edited model)."""
    for m, s in zip(modules, shifts):
        m.weight.add_(s.T.to(m.weight.dtype) if isinstance(m, nn.Linear) else s.to(m.weight.dtype))
