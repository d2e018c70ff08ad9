"""The sweep table's rows: one per run (and one base-model row per split seed), its columns read from the run's report
and delivered adapter, the best value of each column marked, and the run the dev objective chooses."""

from __future__ import annotations

import json
import math

from bias_unlearn.data.records import BIAS_TYPES
from bias_unlearn.reports.run_report import KIND
from bias_unlearn.reports.runs import Run
from bias_unlearn.reports.seeds import BASE
from bias_unlearn.unlearning.balance import balance_chi2

# Columns: (key, header, best rule). Rules: "balance" = closest to 50, "max" = largest.
COLUMNS: list[tuple[str, str, str | None]] = [
    ("ss_overall", "SS overall", "balance"),
    ("ss_ci95", "SS 95% CI", None),
    *[(f"ss_{bt}", f"SS {bt}", "balance") for bt in BIAS_TYPES],
    ("ss_imbalance", "type imbalance", "min"),
    ("lms", "LMS", "max"),
    ("delta_lms", "delta LMS", "max"),
    ("icat", "ICAT", "max"),
    ("crows", "CrowS % stereo", "balance"),
    ("crows_imbalance", "CrowS category imbalance", "min"),
    ("bbq_acc_ambig", "BBQ acc ambig", "max"),
    ("bbq_acc_disambig", "BBQ acc disambig", "max"),
    ("perplexity", "perplexity", None),
    ("mc_acc", "MC acc %", "max"),
    ("n", "N (targets)", None),
    ("steps", "steps", None),
    ("dev_objective", "dev max \\|SS - 50\\|", "min_feasible"),
    ("dev_chi2", "dev chi2", None),
    ("dev_imbalance", "dev type imbalance", None),
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
            "dev_imbalance": type_imbalance({bt: {"ss": entry[bt]} for bt in BIAS_TYPES if entry.get(bt) is not None}),
            "dev_delta_lms": entry["lms"] - summary.dev_history[0]["lms"],
        }
    except (OSError, ValueError, KeyError, TypeError, IndexError):  # no delivered adapter or dev evaluation
        return {}


def type_imbalance(domains: dict) -> float | None:
    """The mean over the bias types present of |SS_t - 50| (reports/evenness.py), from a result's per-type SS."""
    values = [abs(domains[bt]["ss"] - 50) for bt in BIAS_TYPES if (domains.get(bt) or {}).get("ss") is not None]
    return sum(values) / len(values) if values else None


def crows_imbalance(crows: dict | None) -> float | None:
    """The mean over CrowS-Pairs categories of |% stereotyped - 50|."""
    values = [
        abs(v["pct_stereotype_mean"] - 50)
        for name, v in (crows or {}).items()
        if name != "overall" and v.get("pct_stereotype_mean") is not None
    ]
    return sum(values) / len(values) if values else None


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
    row["ss_imbalance"] = type_imbalance(domains)
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
        "perplexity": next((v["perplexity"] for v in general.values() if v.get("perplexity") is not None), None),
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
                "crows_imbalance": crows_imbalance(run.report.crows_pairs.before),
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
                crows_imbalance=crows_imbalance(run.report.crows_pairs.after),
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
        score = {"balance": lambda v: -abs(v - 50), "min_feasible": lambda v: -v, "min": lambda v: -v}.get(
            rule, lambda v: v
        )
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
