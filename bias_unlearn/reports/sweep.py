"""Sweep reports: every run of a multirun directory (reports/runs.py reads them) compared in one table (markdown,
CSV, JSON) with the figures. A run without a readable ``report.json`` (it crashed, was interrupted or is still
running) stays in the table with its status, never silently dropped.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from bias_unlearn.io import write_json, write_text
from bias_unlearn.reports.columns import COLUMNS, DEV_LMS_BAR, chosen_on_dev, comparison_rows
from bias_unlearn.reports.paper_layout import paper_markdown, paper_tables
from bias_unlearn.reports.plots import sweep_figures
from bias_unlearn.reports.run_report import KIND
from bias_unlearn.reports.runs import DEV_ONLY, Run, find_runs
from bias_unlearn.reports.seeds import (
    across_seeds,
    seeds_markdown,
    side_effects_markdown,
    side_effects_over_seeds,
)


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


def sweep_markdown(
    name: str, runs: list[Run], rows: list[dict], seeds: dict, side: dict, figures: dict, paper: dict | None = None
) -> str:
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
    if paper and len(paper["table1"]) > 1:
        lines += section("In the paper's layouts", paper_markdown(paper))
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
    paper = paper_tables(runs)
    markdown = sweep_markdown(Path(sweep_dir).name, runs, rows, seeds, side, figures, paper)
    write_text(out_dir / "comparison.md", markdown)
    write_text(out_dir / "comparison.csv", csv_text(rows))
    figure_paths = {key: str(path) for key, path in figures.items() if path}
    write_json(
        out_dir / "comparison.json",
        {"rows": rows, "across_seeds": seeds, "side_effects": side, "paper_tables": paper, "figures": figure_paths},
    )
    return {
        "rows": rows,
        "markdown": markdown,
        "figures": figures,
        "runs": runs,
        "across_seeds": seeds,
        "side_effects": side,
        "paper_tables": paper,
    }
