"""Build a decoding-time method around a model from its config (``method.decoding``, config/settings.py)."""

from __future__ import annotations

from bias_unlearn.decoding.cafie import CAFIE
from bias_unlearn.decoding.self_debias import SelfDebias
from bias_unlearn.decoding.wrapper import DecodingTimeLM


def wrap_decoding(model, tokenizer, decoding) -> DecodingTimeLM:
    """``decoding``: a DecodingConfig (or its node). The model is wrapped, not copied: its plain forward stays."""
    types = list(decoding.bias_types)
    if decoding.kind == "self_debias":
        return SelfDebias(model, tokenizer, types, decoding.decay, decoding.epsilon, decoding.micro_batch)
    if decoding.kind == "cafie":
        return CAFIE(model, tokenizer, types, decoding.decay, decoding.alpha, decoding.gamma, decoding.micro_batch)
    raise ValueError(f"unknown decoding-time method {decoding.kind!r}")
