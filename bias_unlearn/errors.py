"""Errors that mean "the user's settings are wrong" (as opposed to bugs): the entry points print them plainly."""
from dataclasses import fields


class ConfigError(ValueError):
    """An invalid setting; the message names the config key."""


def from_node(cls, node, name: str):
    """The dataclass ``cls`` from a config node; unknown keys are refused (a typo must not fall back to a default)."""
    values = dict(node or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {name} option(s) {unknown}; expected {sorted(known)}")
    return cls(**values)


class TrainingDiverged(RuntimeError):
    """A loss term or gradient became NaN or inf; the run stopped and its report says where."""
