"""A sweep in the layouts of the paper's comparison tables (Liu et al., Table 1: StereoSet SS per bias type, overall
SS, the change in LMS and ICAT; Table 2: CrowS-Pairs % stereotyped for gender, race and religion), one row per method
(or variant), each value the mean over the split seeds that scored it. The base model's row is the mean of its
before-scores over the same seeds. The across-seeds section beside it gives intervals; these tables are for reading
a sweep against the paper's, not for deciding.
"""

from __future__ import annotations

from collections import defaultdict
from statistics import mean

from bias_unlearn.reports.run_report import KIND
from bias_unlearn.reports.seeds import variant_labels

BASE = "base model"
TYPES = ("gender", "profession", "race", "religion")
CROWS = {"gender": "gender", "race": "race-color", "religion": "religion"}  # the paper's column -> CrowS category


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return mean(values) if values else None


def _table1_row(scores: list[dict], base: list[dict] | None) -> dict:
    row = {t: _mean([s.get(t, {}).get("ss") for s in scores]) for t in TYPES}
    row["ss"] = _mean([s["overall"]["ss"] for s in scores])
    row["icat"] = _mean([s["overall"]["icat"] for s in scores])
    row["delta_lms"] = (
        _mean([s["overall"]["lms"] - b["overall"]["lms"] for s, b in zip(scores, base)]) if base is not None else None
    )
    return row


def _table2_row(crows: list[dict]) -> dict:
    return {col: _mean([c.get(cat, {}).get("pct_stereotype_mean") for c in crows]) for col, cat in CROWS.items()}


def paper_tables(runs) -> dict:
    """{"table1": [...], "table2": [...]}: per label, its seeds and the mean scores (``None`` where nothing scored)."""
    ok = [r for r in runs if r.ok and r.report is not None]
    labels = variant_labels(ok)
    after, before, base_by_seed = defaultdict(dict), defaultdict(dict), {}
    for run in ok:
        stereo, crows = run.report.stereoset, run.report.crows_pairs
        if (stereo.after or {}).get(KIND):
            after[labels[run.name]].setdefault(run.seed, (stereo.after[KIND], crows.after))
            before[labels[run.name]].setdefault(run.seed, (stereo.before or {}).get(KIND))
        if (stereo.before or {}).get(KIND):
            base_by_seed.setdefault(run.seed, (stereo.before[KIND], crows.before))
    table1, table2 = [], []
    for label, by_seed in [(BASE, base_by_seed), *after.items()]:
        seeds = sorted(by_seed, key=lambda s: (s is None, s or 0))
        scores = [by_seed[s][0] for s in seeds]
        own_base = label != BASE and all(before[label].get(s) for s in seeds)
        base = [before[label][s] for s in seeds] if own_base else None
        table1.append({"method": label, "seeds": seeds, **_table1_row(scores, base)})
        crows_seeds = [s for s in seeds if by_seed[s][1]]
        if crows_seeds:
            table2.append({"method": label, "seeds": crows_seeds, **_table2_row([by_seed[s][1] for s in crows_seeds])})
    return {"table1": table1, "table2": table2}


def _f(value, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _seeds(seeds: list) -> str:
    return ", ".join("-" if s is None else str(s) for s in seeds)


def paper_markdown(tables: dict) -> str:
    lines = [
        "Table 1 layout: StereoSet intrasentence SS per bias type and overall (ideal 50), ΔLMS (after - before, same "
        "seeds) and ICAT, means over the seeds listed.",
        "",
        "| method | seeds | gender | profession | race | religion | SS | ΔLMS | ICAT |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in tables["table1"]:
        cells = [_f(row[t]) for t in TYPES] + [_f(row["ss"]), _f(row["delta_lms"], True), _f(row["icat"])]
        lines.append(f"| {row['method']} | {_seeds(row['seeds'])} | " + " | ".join(cells) + " |")
    if tables["table2"]:
        lines += [
            "",
            "Table 2 layout: CrowS-Pairs % of pairs where the more stereotypical sentence scores higher (ideal 50).",
            "",
            "| method | seeds | gender | race | religion |",
            "|---|---|---|---|---|",
        ]
        for row in tables["table2"]:
            cells = [_f(row[c]) for c in CROWS]
            lines.append(f"| {row['method']} | {_seeds(row['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
