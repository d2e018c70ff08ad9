"""Every error that means "the user's input is wrong" (as opposed to a bug), in one place. The entry points print
each as one line and exit with status 2 (``TrainingDiverged``: 3); anything else is a bug and keeps its traceback."""

from __future__ import annotations

from dataclasses import fields


class ConfigError(ValueError):
    """An invalid setting; the message names the config key."""


class DataError(ValueError):
    """Bad benchmark input; the message names the file, the row and the field."""

    def __init__(self, source: str, message: str, row: int | None = None, field: str | None = None):
        where = source
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")


class ModelLoadError(RuntimeError):
    """A model, tokenizer or adapter could not be loaded; the message says which and what to do."""


class OfflineAssetError(RuntimeError):
    """An offline wheel could not be fetched, verified or read."""


class ReportError(ValueError):
    """A report.json that cannot be read as a run report (unreadable, or another layout)."""


class TrainingDiverged(RuntimeError):
    """A loss term or gradient became NaN or inf; the run stopped and its report says where."""


# What the entry points report as the user's mistake (exit status 2).
USER_ERRORS = (ConfigError, DataError, ModelLoadError, OfflineAssetError, ReportError)


def from_node(cls, node, name: str):
    """The dataclass ``cls`` from a config node; unknown keys are refused (a typo must not fall back to a default)."""
    values = dict(node or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {name} option(s) {unknown}; expected {sorted(known)}")
    return cls(**values)
