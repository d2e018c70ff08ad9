"""BiasEdit's editor (MALMEN-style hypernetwork, Xu et al. 2025; Tan et al. 2024): from each edited module's input
(key u) and the gradient of the debiasing loss at its output (value gradient g), per token, it predicts a
pseudo-key and pseudo-gradient; their product gives each token's value change, and a ridge least-squares solve over
all tokens of an edit gives the module's weight shift:

    d_i = -lr_m * (u_i . u~_i) * g~_i;      dW = (U^T U + exp(lambda_m) I)^-1 U^T D      (in x out)

One editor per weight shape (the edited modules share it and are told apart by per-module scales and shifts); it
starts as the identity (its second factors are zero). lr_m and lambda_m are learned per module.
"""

from __future__ import annotations

import torch
from torch import nn


class EditorBlock(nn.Module):
    def __init__(self, width: int, rank: int, n_modules: int):
        super().__init__()
        self.down = nn.Parameter(torch.randn(width, rank) / width**0.5)
        self.up = nn.Parameter(torch.zeros(rank, width))  # zero: the block starts as the identity
        self.bias = nn.Parameter(torch.zeros(width))
        self.scale = nn.Parameter(torch.ones(n_modules, width))
        self.shift = nn.Parameter(torch.zeros(n_modules, width))

    def forward(self, x: torch.Tensor, module: int) -> torch.Tensor:
        # clamp, not relu: at the identity start every pre-activation is exactly 0, where clamp's gradient passes
        # (relu's is 0 there and the block would never leave the identity)
        return x + self.scale[module] * (x @ self.down @ self.up + self.bias).clamp(min=0) + self.shift[module]


class Editor(nn.Module):
    """The editor of ``n_modules`` modules of one shape (key size ``in_features``, value size ``out_features``).
    ``mean`` / ``std``: the normaliser of its input (concatenated key and value gradient), fixed from the training
    cache (MALMEN keeps a running one)."""

    def __init__(self, in_features: int, out_features: int, n_modules: int, rank: int, n_blocks: int, lr: float):
        super().__init__()
        width = in_features + out_features
        self.in_features, self.out_features = in_features, out_features
        self.blocks = nn.ModuleList(EditorBlock(width, rank, n_modules) for _ in range(n_blocks))
        self.lr = nn.Parameter(torch.full((n_modules,), float(lr)))
        self.log_lambda = nn.Parameter(torch.zeros(n_modules))
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))

    def set_normaliser(self, rows: torch.Tensor) -> None:
        self.mean.copy_(rows.mean(0))
        self.std.copy_(rows.std(0).clamp(min=1e-6))

    def pseudo(self, keys: torch.Tensor, grads: torch.Tensor, module: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = (torch.cat([keys, grads], -1) - self.mean) / self.std
        for block in self.blocks:
            x = block(x, module)
        return x.split([self.in_features, self.out_features], -1)

    def value_diffs(self, keys: torch.Tensor, grads: torch.Tensor, module: int) -> torch.Tensor:
        pseudo_keys, pseudo_grads = self.pseudo(keys, grads, module)
        return -self.lr[module] * (keys * pseudo_keys).sum(-1, keepdim=True) * pseudo_grads

    def shift(self, keys: torch.Tensor, grads: torch.Tensor, module: int) -> torch.Tensor:
        """The weight shift (in x out) of one module from its tokens' keys (N, in) and value gradients (N, out)."""
        return ridge_shift(keys.T @ keys, keys.T @ self.value_diffs(keys, grads, module), self.log_lambda[module])


def ridge_shift(gram: torch.Tensor, cross: torch.Tensor, log_lambda: torch.Tensor) -> torch.Tensor:
    """(U^T U + exp(log_lambda) I)^-1 U^T D from its two sums: several edits' sums add up to one joint solve."""
    eye = torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram + log_lambda.exp() * eye, cross)
