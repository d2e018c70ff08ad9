"""Benchmark datasets from the Hugging Face hub, read the way ``datasets`` >= 4 can read them.

``datasets`` 4 refuses dataset loading scripts ("Dataset scripts are no longer supported"). A dataset the hub still
serves as a script (``nyu-mll/crows_pairs``) is read from its parquet conversion (revision ``refs/convert/parquet``,
whose subset is the script's config; where the caller names none, the conversion's only subset); a dataset with a
maintained parquet copy is read from that copy (PIQA: ``baber/piqa``, as lm-evaluation-harness does). A load that
fails says why: the hub unreachable (then: use the offline copy), or the hub's own answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from bias_unlearn.config.errors import DataError
from bias_unlearn.models.loading import hub_reachable

PARQUET_REVISION = "refs/convert/parquet"


@dataclass(frozen=True)
class HubSource:
    name: str
    config: str | None = None
    split: str = "test"
    script_only: bool = False  # the hub serves it as a loading script: read its parquet conversion


def load_rows(source: HubSource, offline_key: str):
    """The rows of one split; ``offline_key`` is the setting that switches to the offline copy (named in the
    error where the hub cannot be reached)."""
    import datasets  # heavy import, only for the hub path

    where = f"hub dataset {source.name}" + (f" ({source.config})" if source.config else "")
    if not hub_reachable():
        raise DataError(
            where,
            f"the Hugging Face hub is unreachable from here; use {offline_key}=offline (the "
            "pinned offline copy) or a local file",
        )
    revision = PARQUET_REVISION if source.script_only else None
    try:
        config = source.config
        if source.script_only and config is None:
            names = datasets.get_dataset_config_names(source.name, revision=revision)
            if len(names) != 1:
                raise ValueError(f"its parquet conversion has subsets {names}: name one")
            config = names[0]
        return datasets.load_dataset(source.name, config, split=source.split, revision=revision)
    except DataError:
        raise
    except Exception as err:  # network, auth, name or layout errors from the hub
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(where, f"could not be loaded: {first}") from err
