"""Sweep reports: read every run of a multirun directory and compare them in one table (markdown + CSV + JSON).

A run is a sub-directory written by ``train.py`` (Hydra multirun). A run without a readable ``report.json`` (it
crashed, was interrupted or is still running) stays in the table with its status, never silently dropped.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from omegaconf import OmegaConf

from bias_unlearn.balance import balance_chi2
from bias_unlearn.data.records import BIAS_TYPES
from bias_unlearn.io import write_json, write_text
from bias_unlearn.methods import Objective, method_name
from bias_unlearn.run_report import ReportError, RunReport
from bias_unlearn.seeds import (BASE, across_seeds, seeds_markdown, side_effects_markdown, side_effects_over_seeds,
                                variant_labels)

KIND = "intrasentence"
DEV_ONLY = "dev only (eval.after=false)"


@dataclass
class Run:
    name: str
    path: Path
    status: str  # ok | failed: <why> | no after-evaluation | DEV_ONLY
    report: RunReport | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def method(self) -> str:
        """From the report, else derived from the run's saved config (a crashed run still names its method)."""
        if self.report is not None:
            return self.report.summary.method
        for config in (self.path / "config.yaml", self.path / ".hydra" / "config.yaml"):
            try:
                return method_name(Objective.from_config(OmegaConf.load(config)))
            except Exception:  # missing or unreadable config: the method stays unknown
                continue
        return "?"

    @cached_property
    def config(self) -> dict:
        """The run's saved (resolved) config, read once; empty when missing or unreadable."""
        try:
            return OmegaConf.to_container(OmegaConf.load(self.path / "config.yaml")) or {}
        except Exception:  # noqa: BLE001 - no readable config: nothing is known of the run's settings
            return {}

    @property
    def training_config(self) -> dict:
        """What the run trained with apart from its seed, flattened (``train.forget_batch`` -> 4): the model, data
        stream, objective, optimiser and step budget. Two runs of one method that differ here are different variants
        of it (a preset sweep's candidates), not seeds of one."""
        cfg = self.config
        trained = {key: cfg.get(key) for key in TRAINING_KEYS if cfg.get(key) is not None}
        trained["trainer.max_steps"] = (cfg.get("trainer") or {}).get("max_steps")
        flat = _flatten(trained)
        # the seed itself, how dev is batched, and optim.lr (it follows model.lr)
        for key in ("train.seed", "train.dev_batch", "optim.lr"):
            flat.pop(key, None)
        return flat if cfg else {}

    @property
    def seed(self) -> int | None:
        """The split seed (the table, the figures and the seeds summary all group by it); None without a config."""
        seed = self.config.get("seed")
        return int(seed) if isinstance(seed, int) else None

    @property
    def dev_only(self) -> bool:
        """The run was told not to score test (a preset sweep's candidate): its dev columns are its result."""
        return (self.config.get("eval") or {}).get("after") is False


TRAINING_KEYS = ("model", "train", "loss", "optim")


def _flatten(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(".") and any(
        (path / name).exists() for name in (".hydra", "config.yaml", "report.json"))


def read_run(path: Path) -> Run:
    report_path = path / "report.json"
    if not report_path.exists():
        error = path / "error.txt"  # bias_unlearn/cli.py: a job that failed with a known error says why
        if error.exists():
            return Run(path.name, path, f"failed: {error.read_text(encoding='utf-8').strip()}")
        return Run(path.name, path, "failed: no report.json (crashed, interrupted or still running)")
    try:
        report = RunReport.load(report_path)
    except ReportError as exc:
        return Run(path.name, path, f"failed: {exc}")
    if report.summary.diverged:
        where = report.summary.diverged
        return Run(path.name, path, f"failed: diverged at step {where['step']} ({where['term']})", report)
    overall = ((report.after or {}).get(KIND) or {}).get("overall") or {}
    if overall and overall.get("ss") is None:  # NaN scores are written as null: a model with undefined scores
        return Run(path.name, path, "failed: undefined scores after training (NaN)", report)
    if not (report.after or {}).get(KIND):
        run = Run(path.name, path, "no after-evaluation", report)
        run.status = DEV_ONLY if run.dev_only else run.status
        return run
    return Run(path.name, path, "ok", report)


def collect_runs(sweep_dir: str | Path) -> list[Run]:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep directory {sweep_dir} does not exist")
    runs = [read_run(p) for p in sorted(sweep_dir.iterdir(), key=_run_order) if is_run_dir(p)]
    if not runs:
        raise FileNotFoundError(f"{sweep_dir} holds no run directories (expected train.py multirun outputs)")
    return runs


def _run_order(path: Path):
    head = path.name.split("_", 1)[0]
    return (int(head), path.name) if head.isdigit() else (math.inf, path.name)


# Columns: (key, header, best rule). Rules: "balance" = closest to 50, "max" = largest.
COLUMNS: list[tuple[str, str, str | None]] = [
    ("ss_overall", "SS overall", "balance"), ("ss_ci95", "SS 95% CI", None),
    *[(f"ss_{bt}", f"SS {bt}", "balance") for bt in BIAS_TYPES],
    ("lms", "LMS", "max"), ("delta_lms", "delta LMS", "max"), ("icat", "ICAT", "max"),
    ("crows", "CrowS % stereo", "balance"), ("bbq_acc_ambig", "BBQ acc ambig", "max"),
    ("bbq_acc_disambig", "BBQ acc disambig", "max"), ("perplexity", "perplexity", None), ("mc_acc", "MC acc %", "max"),
    ("n", "N (targets)", None), ("steps", "steps", None),
    ("dev_objective", "dev max \\|SS - 50\\|", "min_feasible"), ("dev_chi2", "dev chi2", None),
    ("dev_delta_lms", "dev delta LMS", None)]
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
        return {"dev_objective": max(abs(entry[bt] - 50) for bt in BIAS_TYPES if entry.get(bt) is not None),
                **chi2, "dev_delta_lms": entry["lms"] - summary.dev_history[0]["lms"]}
    except (OSError, ValueError, KeyError, TypeError, IndexError):  # no delivered adapter or dev evaluation
        return {}


def stereoset_row(result: dict) -> dict:
    domains = result[KIND]
    overall = domains["overall"]
    row = {"ss_overall": overall["ss"], "ss_ci95": overall.get("ss_ci95"), "lms": overall["lms"],
           "icat": overall["icat"], "n": f"{overall['n']} ({overall['n_targets']})"}
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
    return {"perplexity": (general.get("wiki") or {}).get("perplexity"),
            "mc_acc": sum(accuracies) / len(accuracies) if accuracies else None}


def base_rows(runs: list[Run]) -> list[dict]:
    """The base model's test scores (each run's before-scores). One row per split seed, since every seed has its
    own test split; a sweep over one seed keeps the single row "base model"."""
    scored = [r for r in runs if r.report is not None and (r.report.before or {}).get(KIND)]
    by_seed: dict = {}
    for run in scored:
        by_seed.setdefault(run.seed, run)  # the first run of a seed that scored its base model
    rows = []
    for seed, run in sorted(by_seed.items(), key=lambda item: (item[0] is None, item[0] or 0)):
        name = BASE if len(by_seed) == 1 else f"{BASE} (seed {seed})" if seed is not None else f"{BASE} (no seed)"
        rows.append({"run": name, "method": "none", "status": "ok", "base": True,
                     **stereoset_row(run.report.before), "crows": crows_overall(run.report.crows_pairs.get("before")),
                     "steps": 0, **bbq_columns(run.report.bbq.get("before")),
                     **general_columns(run.report.general.get("before"))})
    return rows


def comparison_rows(runs: list[Run]) -> list[dict]:
    """The base model's rows (one per split seed) and one row per run."""
    rows = base_rows(runs)
    for run in runs:
        row = {"run": run.name, "method": run.method, "status": run.status, "seed": run.seed}
        if run.report is not None:
            row.update(dev_columns(run))
        if run.ok:
            row.update(stereoset_row(run.report.after), steps=run.report.summary.steps,
                       crows=crows_overall(run.report.crows_pairs.get("after")),
                       **bbq_columns(run.report.bbq.get("after")), **general_columns(run.report.general.get("after")))
            before = (run.report.before or {}).get(KIND)
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
            feasible = [r for r in rows if not r.get("base") and r.get("dev_delta_lms") is not None
                        and r["dev_delta_lms"] >= -DEV_LMS_BAR]
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
    per_seed = "; ".join(f"seed {seed}: " + ", ".join(r["run"] for r in chosen if r.get("seed") == seed)
                         for seed in seeds)
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
    lines = ["| run | method | status | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(COLUMNS)]
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
    writer.writerow(["run", "method", "status", *[k for k, _, _ in COLUMNS if k != "ss_ci95"], "ss_ci95_low",
                     "ss_ci95_high", "best_in"])
    for row in rows:
        ci = row.get("ss_ci95") or [None, None]
        values = [row.get(k) for k, _, _ in COLUMNS if k != "ss_ci95"]
        writer.writerow([row["run"], row["method"], row["status"], *["" if v is None else v for v in values],
                         "" if ci[0] is None else ci[0], "" if ci[1] is None else ci[1], " ".join(row["best"])])
    return buffer.getvalue()


def loss_curves(run: Run) -> dict[str, list[tuple[int, float]]]:
    """Loss terms over steps from the run's CSV log (logs/metrics.csv): {term: [(step, value)]}."""
    path = run.path / "logs" / "metrics.csv"
    curves: dict[str, list[tuple[int, float]]] = {}
    if not path.exists():
        return curves
    with path.open() as handle:
        for record in csv.DictReader(handle):
            for key, value in record.items():
                if key and key.startswith("train/") and value not in ("", None):
                    curves.setdefault(key[len("train/"):], []).append((int(record["step"]), float(value)))
    return curves


def sweep_figures(runs: list[Run], rows: list[dict], out_dir: Path,
                  seeds: dict | None = None) -> dict[str, Path | None]:
    """The sweep's figures in ``out_dir``: dev SS over steps (by method and seed, swaps marked), loss terms, test
    SS before / after, and (given ``across_seeds``' summary) the paired differences to the reference method."""
    from bias_unlearn.plots import plot_before_after, plot_loss_terms, plot_paired_differences, plot_sweep_dev_curves

    trained = [r for r in runs if r.ok or r.status == DEV_ONLY]  # a dev-only run's curves are its result
    labels = variant_labels(trained)  # colour by method, or by a method's variant where settings differ
    return {
        "dev_ss": plot_sweep_dev_curves({r.name: r.report.summary.dev_history for r in trained},
                                        Path(out_dir) / "sweep_dev_ss.png",
                                        groups={r.name: (labels[r.name], r.seed) for r in trained},
                                        swaps={r.name: r.report.summary.swap_events for r in trained}),
        "loss_terms": plot_loss_terms({r.name: loss_curves(r) for r in trained},
                                      Path(out_dir) / "sweep_loss_terms.png"),
        "before_after": plot_before_after(rows, Path(out_dir) / "sweep_before_after.png"),
        "paired": plot_paired_differences(seeds or {}, Path(out_dir) / "sweep_paired.png"),
    }


def write_sweep_report(sweep_dir: str | Path, out_dir: str | Path | None = None,
                       reference: str = "bias_unlearn") -> dict:
    """comparison.{md,csv,json} and the figures in ``out_dir`` (default: the sweep directory); paired differences
    are taken against the runs labelled ``reference`` (a method, or a method's variant: seeds.variant_labels)."""
    runs = collect_runs(sweep_dir)
    out_dir = Path(out_dir or sweep_dir)
    rows = comparison_rows(runs)
    ok = [r for r in runs if r.ok]
    seeds = across_seeds(runs, reference)
    side = side_effects_over_seeds(runs)
    figures = sweep_figures(runs, rows, out_dir, seeds)
    failed = [r for r in runs if not r.ok and r.status != DEV_ONLY]
    dev_only = len(runs) - len(ok) - len(failed)
    chosen = chosen_on_dev(rows)
    markdown = "\n".join([
        f"# Sweep {Path(sweep_dir).name}", "",
        f"{len(ok)} of {len(runs)} runs scored on test"
        + (f"; {dev_only} trained and scored on dev only (eval.after=false)" if dev_only else "")
        + f". StereoSet {KIND} on the test split after training (the base "
        "model's rows, one per split seed: before). Best trained value per column in bold: SS and CrowS closest to "
        "50, LMS, delta LMS and ICAT highest. The dev columns are the delivered adapter's dev evaluation: the dev "
        "objective (the largest per-type \\|SS - 50\\|, lowest in bold among the runs of one split seed whose dev LMS "
        f"fell at most {DEV_LMS_BAR:g}) is what a sweep chooses by; the dev chi2 is what chose the adapter inside its "
        "run; test columns are reported, never used to choose.", "",
        markdown_table(rows), "",
        *([chosen, ""] if chosen else []),
        *(["## Runs without results", ""] + [f"- {r.name}: {r.status}" for r in failed] + [""] if failed else []),
        *(["## Across split seeds", "", f"StereoSet {KIND}, held-out test split of each seed: mean ± sd over seeds, "
           "and the pooled estimate over every seed's test examples.", "", seeds_markdown(seeds), ""]
          if any(len(e["seeds"]) > 1 or "vs_reference" in e for e in seeds.values()) else []),
        *(["## Side effects across split seeds", "", "Change after - before on the same items (CrowS-Pairs, BBQ and "
           "general ability do not depend on the split seed): mean ± sd over the seeds that scored it; perplexity as "
           "a % change. Untargeted CrowS categories (never trained on) whose % stereotyped changed by a resolved "
           "margin (the paired bootstrap 95% interval of the change excludes 0) and ended farther from 50, per seed.", "",
           side_effects_markdown(side), ""] if side else []),
        *[f"![{name}]({Path(p).name})" for name, p in figures.items() if p],
    ]) + "\n"
    write_text(out_dir / "comparison.md", markdown)
    write_text(out_dir / "comparison.csv", csv_text(rows))
    write_json(out_dir / "comparison.json", {"rows": rows, "across_seeds": seeds, "side_effects": side,
                                             "figures": {k: str(v) for k, v in figures.items() if v}})
    return {"rows": rows, "markdown": markdown, "figures": figures, "runs": runs, "across_seeds": seeds,
            "side_effects": side}
