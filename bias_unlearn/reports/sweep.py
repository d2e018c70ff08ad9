"""Sweep reports: every run of a multirun directory (reports/runs.py reads them) compared in one table (markdown,
CSV, JSON) with the figures. A run without a readable ``report.json`` (it crashed, was interrupted or is still
running) stays in the table with its status, never silently dropped.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from bias_unlearn.data.records import BIAS_TYPES
from bias_unlearn.io import write_json, write_text
from bias_unlearn.reports.plots import sweep_figures
from bias_unlearn.reports.run_report import KIND
from bias_unlearn.reports.runs import DEV_ONLY, Run, find_runs
from bias_unlearn.reports.seeds import (
    BASE,
    across_seeds,
    seeds_markdown,
    side_effects_markdown,
    side_effects_over_seeds,
)
from bias_unlearn.unlearning.balance import balance_chi2

# Columns: (key, header, best rule). Rules: "balance" = closest to 50, "max" = largest.
COLUMNS: list[tuple[str, str, str | None]] = [
    ("ss_overall", "SS overall", "balance"),
    ("ss_ci95", "SS 95% CI", None),
    *[(f"ss_{bt}", f"SS {bt}", "balance") for bt in BIAS_TYPES],
    ("lms", "LMS", "max"),
    ("delta_lms", "delta LMS", "max"),
    ("icat", "ICAT", "max"),
    ("crows", "CrowS % stereo", "balance"),
    ("bbq_acc_ambig", "BBQ acc ambig", "max"),
    ("bbq_acc_disambig", "BBQ acc disambig", "max"),
    ("perplexity", "perplexity", None),
    ("mc_acc", "MC acc %", "max"),
    ("n", "N (targets)", None),
    ("steps", "steps", None),
    ("dev_objective", "dev max \\|SS - 50\\|", "min_feasible"),
    ("dev_chi2", "dev chi2", None),
    ("dev_delta_lms", "dev delta LMS", None),
]
DEV_LMS_BAR = 1.0  # the dev objective's constraint: dev LMS may fall at most this far (conf/experiment/preset_sweep)


def dev_columns(run: Run) -> dict:
    """The dev objective of the delivered adapter: the largest per-type |dev SS - 50| at its dev evaluation, and
    its dev LMS change from the base (the step-0 entry). What a preset is chosen by; test scores never are. Beside
    it the dev chi2 that chose the adapter inside its run (balance.py; runs that recorded the dev standard errors):
    the presets were chosen by the largest |dev SS - 50| before the delivery rule weighed types by them."""
    try:
        entry = json.loads((run.path / "adapter" / "state.json").read_text(encoding="utf-8"))["dev"]
        summary = run.report.summary
        se = {bt: d["se"] for bt, d in summary.dev_split.items() if "se" in d}
        chi2 = {"dev_chi2": balance_chi2(entry, se)} if se and all(bt in se for bt in BIAS_TYPES if bt in entry) else {}
        return {
            "dev_objective": max(abs(entry[bt] - 50) for bt in BIAS_TYPES if entry.get(bt) is not None),
            **chi2,
            "dev_delta_lms": entry["lms"] - summary.dev_history[0]["lms"],
        }
    except (OSError, ValueError, KeyError, TypeError, IndexError):  # no delivered adapter or dev evaluation
        return {}


def stereoset_row(result: dict) -> dict:
    domains = result[KIND]
    overall = domains["overall"]
    row = {
        "ss_overall": overall["ss"],
        "ss_ci95": overall.get("ss_ci95"),
        "lms": overall["lms"],
        "icat": overall["icat"],
        "n": f"{overall['n']} ({overall['n_targets']})",
    }
    row.update({f"ss_{bt}": domains[bt]["ss"] for bt in BIAS_TYPES if bt in domains})
    return row


def crows_overall(crows: dict | None) -> float | None:
    if not crows:
        return None
    overall = crows.get("overall") or {}
    return overall.get("pct_stereotype_mean")


def bbq_columns(bbq: dict | None) -> dict:
    """BBQ accuracy over all categories, ambiguous and disambiguated contexts (when BBQ ran)."""
    overall = (bbq or {}).get("overall")
    return {"bbq_acc_ambig": overall["acc_ambig"], "bbq_acc_disambig": overall["acc_disambig"]} if overall else {}


def general_columns(general: dict | None) -> dict:
    """Perplexity on held-out text and the mean multiple-choice accuracy over tasks (when general ability ran)."""
    if not general:
        return {}
    accuracies = [v["acc"] for v in general.values() if "acc" in v]
    return {
        "perplexity": (general.get("wiki") or {}).get("perplexity"),
        "mc_acc": sum(accuracies) / len(accuracies) if accuracies else None,
    }


def base_rows(runs: list[Run]) -> list[dict]:
    """The base model's test scores (each run's before-scores). One row per split seed, since every seed has its
    own test split; a sweep over one seed keeps the single row "base model"."""
    scored = [r for r in runs if r.report is not None and (r.report.stereoset.before or {}).get(KIND)]
    by_seed: dict = {}
    for run in scored:
        by_seed.setdefault(run.seed, run)  # the first run of a seed that scored its base model
    rows = []
    for seed, run in sorted(by_seed.items(), key=lambda item: (item[0] is None, item[0] or 0)):
        name = BASE if len(by_seed) == 1 else f"{BASE} (seed {seed})" if seed is not None else f"{BASE} (no seed)"
        rows.append(
            {
                "run": name,
                "method": "none",
                "status": "ok",
                "base": True,
                **stereoset_row(run.report.stereoset.before),
                "crows": crows_overall(run.report.crows_pairs.before),
                "steps": 0,
                **bbq_columns(run.report.bbq.before),
                **general_columns(run.report.general.before),
            }
        )
    return rows


def comparison_rows(runs: list[Run]) -> list[dict]:
    """The base model's rows (one per split seed) and one row per run."""
    rows = base_rows(runs)
    for run in runs:
        row = {"run": run.name, "method": run.method, "status": run.status, "seed": run.seed}
        if run.report is not None:
            row.update(dev_columns(run))
        if run.ok:
            row.update(
                stereoset_row(run.report.stereoset.after),
                steps=run.report.summary.steps,
                crows=crows_overall(run.report.crows_pairs.after),
                **bbq_columns(run.report.bbq.after),
                **general_columns(run.report.general.after),
            )
            before = (run.report.stereoset.before or {}).get(KIND)
            if before:
                row["delta_lms"] = row["lms"] - before["overall"]["lms"]
        rows.append(row)
    mark_best(rows)
    return rows


def mark_best(rows: list[dict]) -> None:
    """rows[i]["best"] = the columns in which run i is best among the trained runs (ties all marked). The dev
    objective is compared only among runs of one split seed: another seed is another dev split, and a run would
    otherwise be chosen for an easier dev set."""
    for row in rows:
        row["best"] = []
    trained = [r for r in rows if r["status"] == "ok" and not r.get("base")]
    for key, _, rule in COLUMNS:
        if not rule:
            continue
        groups = [trained]
        if rule == "min_feasible":  # the dev objective: runs trained without a test evaluation count too
            feasible = [
                r
                for r in rows
                if not r.get("base") and r.get("dev_delta_lms") is not None and r["dev_delta_lms"] >= -DEV_LMS_BAR
            ]
            seeds = dict.fromkeys(r.get("seed") for r in feasible)
            groups = [[r for r in feasible if r.get("seed") == seed] for seed in seeds]
        score = {"balance": lambda v: -abs(v - 50), "min_feasible": lambda v: -v}.get(rule, lambda v: v)
        for group in groups:
            values = [(r, r.get(key)) for r in group if isinstance(r.get(key), (int, float))]
            values = [(r, v) for r, v in values if not math.isnan(v)]
            if not values:
                continue
            top = max(score(v) for _, v in values)
            for r, v in values:
                if math.isclose(score(v), top, abs_tol=1e-9):
                    r["best"].append(key)


def chosen_on_dev(rows: list[dict]) -> str | None:
    """The report's line naming the run the dev objective chooses: one per split seed when the sweep has several."""
    chosen = [r for r in rows if "dev_objective" in r["best"]]
    if not chosen:
        return None
    seeds = list(dict.fromkeys(r.get("seed") for r in chosen))
    if len(seeds) == 1:
        return f"Chosen on dev: {', '.join(r['run'] for r in chosen)}"
    per_seed = "; ".join(
        f"seed {seed}: " + ", ".join(r["run"] for r in chosen if r.get("seed") == seed) for seed in seeds
    )
    return f"Chosen on dev, among the runs of each split seed (each seed has its own dev split): {per_seed}"


def _fmt(key: str, value) -> str:
    if value is None:
        return "n/a"
    if key == "ss_ci95":
        finite = value and all(isinstance(v, (int, float)) and not math.isnan(v) for v in value)
        return f"[{value[0]:.2f}, {value[1]:.2f}]" if finite else "n/a"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:+.2f}" if "delta_lms" in key else f"{value:.2f}"
    return str(value)


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| run | method | status | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for row in rows:
        cells = []
        for key, _, _ in COLUMNS:
            shown = row["status"] == "ok" or (key.startswith("dev_") and key in row)  # dev: also untested runs
            text = _fmt(key, row.get(key)) if shown else ""
            cells.append(f"**{text}**" if key in row["best"] else text)
        lines.append(f"| {row['run']} | {row['method']} | {row['status']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "run",
            "method",
            "status",
            *[k for k, _, _ in COLUMNS if k != "ss_ci95"],
            "ss_ci95_low",
            "ss_ci95_high",
            "best_in",
        ]
    )
    for row in rows:
        ci = row.get("ss_ci95") or [None, None]
        values = [row.get(k) for k, _, _ in COLUMNS if k != "ss_ci95"]
        writer.writerow(
            [
                row["run"],
                row["method"],
                row["status"],
                *["" if v is None else v for v in values],
                "" if ci[0] is None else ci[0],
                "" if ci[1] is None else ci[1],
                " ".join(row["best"]),
            ]
        )
    return buffer.getvalue()


TABLE_NOTE = (
    "StereoSet {kind} on the test split after training (the base model's rows, one per split seed: before). Best "
    "trained value per column in bold: SS and CrowS closest to 50, LMS, delta LMS and ICAT highest. The dev columns "
    "are the delivered adapter's dev evaluation: the dev objective (the largest per-type \\|SS - 50\\|, lowest in "
    "bold among the runs of one split seed whose dev LMS fell at most {bar:g}) is what a sweep chooses by; the dev "
    "chi2 is what chose the adapter inside its run; test columns are reported, never used to choose."
)
SEEDS_NOTE = (
    "StereoSet {kind}, held-out test split of each seed: mean ± sd over seeds, and the pooled estimate over every "
    "seed's test examples."
)
SIDE_NOTE = (
    "Change after - before on the same items (CrowS-Pairs, BBQ and general ability do not depend on the split seed): "
    "mean ± sd over the seeds that scored it; perplexity as a % change. Untargeted CrowS categories (never trained "
    "on) whose % stereotyped changed by a resolved margin (the paired bootstrap 95% interval of the change excludes "
    "0) and ended farther from 50, per seed."
)


def section(title: str, *paragraphs: str) -> list[str]:
    return [f"## {title}", ""] + [line for paragraph in paragraphs for line in (paragraph, "")]


def sweep_markdown(name: str, runs: list[Run], rows: list[dict], seeds: dict, side: dict, figures: dict) -> str:
    ok = [r for r in runs if r.ok]
    failed = [r for r in runs if not r.ok and r.status != DEV_ONLY]
    dev_only = len(runs) - len(ok) - len(failed)
    scored = f"{len(ok)} of {len(runs)} runs scored on test" + (
        f"; {dev_only} trained and scored on dev only (eval.after=false)" if dev_only else ""
    )
    chosen = chosen_on_dev(rows)
    lines = [f"# Sweep {name}", "", f"{scored}. " + TABLE_NOTE.format(kind=KIND, bar=DEV_LMS_BAR), ""]
    lines += [markdown_table(rows), ""] + ([chosen, ""] if chosen else [])
    if failed:
        lines += section("Runs without results", "\n".join(f"- {r.name}: {r.status}" for r in failed))
    if any(len(e["seeds"]) > 1 or "vs_reference" in e for e in seeds.values()):
        lines += section("Across split seeds", SEEDS_NOTE.format(kind=KIND), seeds_markdown(seeds))
    if side:
        lines += section("Side effects across split seeds", SIDE_NOTE, side_effects_markdown(side))
    lines += [f"![{key}]({Path(path).name})" for key, path in figures.items() if path]
    return "\n".join(lines) + "\n"


def write_sweep_report(
    sweep_dir: str | Path, out_dir: str | Path | None = None, reference: str = "bias_unlearn"
) -> dict:
    """comparison.{md,csv,json} and the figures in ``out_dir`` (default: the sweep directory); paired differences
    are taken against the runs labelled ``reference`` (a method, or a method's variant: seeds.variant_labels)."""
    runs = find_runs(sweep_dir)
    out_dir = Path(out_dir or sweep_dir)
    rows = comparison_rows(runs)
    seeds = across_seeds(runs, reference)
    side = side_effects_over_seeds(runs)
    figures = sweep_figures(runs, rows, out_dir, seeds)
    markdown = sweep_markdown(Path(sweep_dir).name, runs, rows, seeds, side, figures)
    write_text(out_dir / "comparison.md", markdown)
    write_text(out_dir / "comparison.csv", csv_text(rows))
    figure_paths = {key: str(path) for key, path in figures.items() if path}
    write_json(
        out_dir / "comparison.json",
        {"rows": rows, "across_seeds": seeds, "side_effects": side, "figures": figure_paths},
    )
    return {
        "rows": rows,
        "markdown": markdown,
        "figures": figures,
        "runs": runs,
        "across_seeds": seeds,
        "side_effects": side,
    }
