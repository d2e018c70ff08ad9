"""Across split seeds: what a grid of methods x seeds shows that one run cannot (the evidence a reviewer asks for).

``seed`` reshuffles which targets land in train / dev / test, so each seed's test split is a different held-out set.
Per method this gives the mean and standard deviation over seeds of the held-out scores, the pooled estimate over
every seed's test examples with its 95% interval, and, on the same test examples, the paired difference to the
reference method (BiasUnlearn) pooled over seeds. The base model (each run's before-scores) is a row of its own.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from bias_unlearn.config.upgrade import UNKNOWN, absent_value
from bias_unlearn.data.records import BIAS_TYPES
from bias_unlearn.reports.evenness import stereoset_imbalance, stereoset_imbalance_change
from bias_unlearn.reports.paired import crows_change, keyed, over_seeds, paired_difference, pooled
from bias_unlearn.reports.run_report import KIND

BASE = "base model"
# CrowS-Pairs categories no StereoSet bias type covers: what debiasing does to biases it never trained on.
UNTARGETED_CROWS = ("age", "disability", "nationality", "physical-appearance", "sexual-orientation", "socioeconomic")

log = logging.getLogger(__name__)


def _rows(report, side: str) -> list | None:
    outcomes = getattr(report.outcomes, side)
    return outcomes.stereoset.get(KIND) if outcomes is not None else None


def variant_labels(runs) -> dict[str, str]:
    """Run name -> the label its seeds are grouped under: the method, or, where runs of one method trained with
    different settings (a preset sweep's candidates), the method with the settings that tell them apart."""
    by_method = defaultdict(list)
    for run in runs:
        by_method[run.method].append(run)
    labels = {}
    for method, members in by_method.items():
        saved = [run.training_config for run in members]
        keys = set().union(*saved)
        # A key a run lacks (saved by an older version) reads as the behaviour it ran; unknown ones tell nothing.
        configs = [{k: c[k] if k in c else absent_value(k, c) for k in keys} for c in saved]
        differing = sorted(
            k
            for k in keys
            if all(c[k] is not UNKNOWN for c in configs) and any(other[k] != configs[0][k] for other in configs)
        )
        for run, config in zip(members, configs):
            labels[run.name] = (
                f"{method} ({', '.join(f'{_short(k)}={_compact(config[k])}' for k in differing)})"
                if differing
                else method
            )
    return labels


def _short(key: str) -> str:
    """``model.lora.target_modules`` -> ``target_modules`` (the last part names the setting)."""
    return key.rsplit(".", 1)[-1]


def _compact(value) -> str:
    return f"[{','.join(map(str, value))}]" if isinstance(value, (list, tuple)) else str(value)


def seed_groups(runs) -> dict[str, dict[int, list]]:
    """label -> seed -> outcome rows on that seed's test split (after training; the base model's before); the label
    is the method (variant_labels). A second run of one label and seed is left out, with a warning."""
    ok = [run for run in runs if run.ok and run.seed is not None]
    labels = variant_labels(ok)
    groups: dict[str, dict[int, list]] = defaultdict(dict)
    for run in ok:
        after, before = _rows(run.report, "after"), _rows(run.report, "before")
        if after:
            if run.seed in groups[labels[run.name]]:
                log.warning(
                    "%s repeats %s with seed %d: left out of the across-seeds summary",
                    run.name,
                    labels[run.name],
                    run.seed,
                )
            else:
                groups[labels[run.name]][run.seed] = after
        if before:
            groups[BASE].setdefault(run.seed, before)
    return dict(groups)


def across_seeds(runs, reference: str = "bias_unlearn", n_bootstrap: int = 1000) -> dict:
    """Per method: mean / sd over seeds (SS overall and per type, LMS, ICAT), the pooled estimate, and the paired
    difference method - reference on the seeds both ran."""
    groups = seed_groups(runs)
    if reference not in groups and any(label.startswith(f"{reference} (") for label in groups):
        log.warning(
            "%s ran with several settings: no paired differences; name one: report.py reference='%s'",
            reference,
            next(label for label in groups if label.startswith(f"{reference} (")),
        )
    elif reference not in groups:
        log.warning("no runs labelled %s: no paired differences (labels: %s)", reference, ", ".join(sorted(groups)))
    out = {}
    for method, by_seed in groups.items():
        per_seed = {seed: pooled({str(seed): rows}, n_bootstrap=0) for seed, rows in by_seed.items()}
        entry = {"seeds": sorted(by_seed), "pooled": pooled({str(s): r for s, r in by_seed.items()}, n_bootstrap)}
        for domain in ("overall", *BIAS_TYPES):
            for stat in ("ss", "lms", "icat"):
                entry[f"{stat}_{domain}"] = over_seeds([per_seed[s].get(domain, {}).get(stat) for s in by_seed])
        entry["imbalance"] = over_seeds([stereoset_imbalance(rows, 0)["value"] for rows in by_seed.values()])
        entry["imbalance_pooled"] = stereoset_imbalance(
            [row for s, rows in by_seed.items() for row in keyed(rows, str(s))], n_bootstrap
        )
        shared = sorted(set(by_seed) & set(groups.get(reference, {})))
        if method != reference and shared:
            a = [row for s in shared for row in keyed(by_seed[s], str(s))]
            b = [row for s in shared for row in keyed(groups[reference][s], str(s))]
            entry["vs_reference"] = {
                "reference": reference,
                "seeds": shared,
                **paired_difference(a, b, n_bootstrap)["overall"],
                "imbalance": stereoset_imbalance_change(a, b, n_bootstrap),
            }
        out[method] = entry
    return out


def run_side_effects(report, n_bootstrap: int = 1000) -> dict:
    """One run's side effects as changes (after - before) on the same items: CrowS-Pairs % stereotyped overall, the
    untargeted CrowS categories whose % stereotyped changed by a resolved margin (paired bootstrap) and ended
    farther from 50 than it began, BBQ accuracy (ambiguous /
    disambiguated), perplexity (% change) and multiple-choice accuracy (mean over tasks). Missing ones are None."""
    out = dict.fromkeys(("crows", "crows_worse", "bbq_ambig", "bbq_disambig", "perplexity_pct", "mc_acc"))
    crows, bbq, general = report.crows_pairs, report.bbq, report.general
    if crows.before and crows.after:
        out["crows"] = crows.after["overall"]["pct_stereotype_mean"] - crows.before["overall"]["pct_stereotype_mean"]
        rows = [
            getattr(report.outcomes, side).crows_pairs if getattr(report.outcomes, side) else None
            for side in ("before", "after")
        ]
        if all(rows):
            change = crows_change(*rows, n_bootstrap=n_bootstrap)
            out["crows_worse"] = sorted(
                c
                for c in UNTARGETED_CROWS
                if c in change
                and change[c]["resolved"]
                and abs(change[c]["after"] - 50) > abs(change[c]["before"] - 50)
            )
    if bbq.before and bbq.after:
        before, after = bbq.before["overall"], bbq.after["overall"]
        out["bbq_ambig"] = after["acc_ambig"] - before["acc_ambig"]
        out["bbq_disambig"] = after["acc_disambig"] - before["acc_disambig"]
    if general.before and general.after:
        before, after = general.before, general.after
        text = next((t for t in before if before[t].get("perplexity") and (after.get(t) or {}).get("perplexity")), None)
        if text is not None:
            out["perplexity_pct"] = 100 * (after[text]["perplexity"] / before[text]["perplexity"] - 1)
        tasks = [t for t in before if before[t].get("acc") is not None and (after.get(t) or {}).get("acc") is not None]
        if tasks:
            out["mc_acc"] = sum(after[t]["acc"] - before[t]["acc"] for t in tasks) / len(tasks)
    return out


SIDE_EFFECT_COLUMNS = (
    ("crows", "CrowS % stereo"),
    ("bbq_ambig", "BBQ acc ambig"),
    ("bbq_disambig", "BBQ acc disambig"),
    ("perplexity_pct", "perplexity %"),
    ("mc_acc", "MC acc"),
)


def side_effects_over_seeds(runs, n_bootstrap: int = 1000) -> dict:
    """Per method (variant_labels): each side effect's change, mean / sd over the seeds that scored any side effect
    (``n_runs`` per column: the seeds that scored it), and per seed the untargeted CrowS categories made worse
    (run_side_effects)."""
    ok = [run for run in runs if run.ok and run.seed is not None]
    labels = variant_labels(ok)
    per_label: dict[str, dict[int, dict]] = defaultdict(dict)
    for run in ok:
        if run.seed in per_label[labels[run.name]]:
            log.warning(
                "%s repeats %s with seed %d: left out of the side effects", run.name, labels[run.name], run.seed
            )
            continue
        effects = run_side_effects(run.report, n_bootstrap)
        if any(value is not None for value in effects.values()):
            per_label[labels[run.name]][run.seed] = effects
    out = {}
    for label, by_seed in per_label.items():
        if not by_seed:
            continue
        entry = {key: over_seeds([by_seed[s][key] for s in by_seed]) for key, _ in SIDE_EFFECT_COLUMNS}
        entry["seeds"] = sorted(by_seed)
        entry["crows_worse"] = {s: by_seed[s]["crows_worse"] for s in sorted(by_seed)}
        out[label] = entry
    return out


def side_effects_markdown(summary: dict) -> str:
    if not summary:
        return ""
    head = [
        "method",
        "seeds",
        *[f"{name} change" for _, name in SIDE_EFFECT_COLUMNS],
        "untargeted CrowS categories worse (per seed)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, e in summary.items():
        worse = "; ".join(
            f"{s}: {', '.join(w) or 'none'}" if w is not None else f"{s}: n/a" for s, w in e["crows_worse"].items()
        )
        lines.append(
            "| "
            + " | ".join(
                [
                    label,
                    str(len(e["seeds"])),
                    *[_side_cell(e[key], len(e["seeds"])) for key, _ in SIDE_EFFECT_COLUMNS],
                    worse,
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def _f(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.2f}"


def _ci(entry: dict, key: str) -> str:
    """A value with its 95% interval, * where resolved."""
    low, high = entry["ci95"]
    return f"{_f(entry[key])} [{_f(low)}, {_f(high)}]{' *' if entry.get('resolved') else ''}"


def _side_cell(stat: dict, seeds: int) -> str:
    """Mean ± sd of a side effect, naming the runs behind it where fewer than the row's seeds scored it; an sd of 0
    is shown (runs that read the same cached scores), so a lone value is one run's."""
    if stat["mean"] is None:
        return "n/a"
    runs = f" ({stat['n_runs']} of {seeds} runs)" if stat["n_runs"] < seeds else ""
    return _mean_sd(stat, show_zero_sd=True) + runs


def _mean_sd(stat: dict, show_zero_sd: bool = False) -> str:
    shown = stat["sd"] is not None if show_zero_sd else bool(stat["sd"])
    return "n/a" if stat["mean"] is None else _f(stat["mean"]) + (f" ± {_f(stat['sd'])}" if shown else "")


def seeds_markdown(summary: dict) -> str:
    if not summary:
        return ""
    head = [
        "method",
        "seeds",
        "SS",
        *[f"SS {bt}" for bt in BIAS_TYPES],
        "type imbalance",
        "LMS",
        "ICAT",
        "pooled SS [95% CI]",
        "pooled type imbalance [95% CI]",
        "pooled LMS",
        "pooled ICAT",
        "N (targets)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, e in summary.items():
        p = e["pooled"]["overall"]
        lines.append(
            "| "
            + " | ".join(
                [
                    method,
                    str(len(e["seeds"])),
                    _mean_sd(e["ss_overall"]),
                    *[_mean_sd(e[f"ss_{bt}"]) for bt in BIAS_TYPES],
                    _mean_sd(e["imbalance"]),
                    _mean_sd(e["lms_overall"]),
                    _mean_sd(e["icat_overall"]),
                    f"{_f(p['ss'])} [{_f(p['ss_ci95'][0])}, {_f(p['ss_ci95'][1])}]",
                    _ci(e["imbalance_pooled"], "value"),
                    _f(p["lms"]),
                    _f(p["icat"]),
                    f"{p['n']} ({p['n_targets']})",
                ]
            )
            + " |"
        )
    paired = [(m, e["vs_reference"]) for m, e in summary.items() if "vs_reference" in e]
    if paired:
        lines += [
            "",
            f"Paired differences to {paired[0][1]['reference']} on the same test examples, pooled over the "
            "seeds both ran (95% bootstrap interval; * = resolved, the interval excludes 0; lower "
            "\\|SS - 50\\| and higher LMS / ICAT are better). Every interval here resamples examples within "
            "each target: it is conditional on the held-out targets (how results move with the targets is the "
            "sd over seeds), and a target held out by several seeds counts once per seed.",
            "",
            "| method - reference | seeds | \\|SS - 50\\| | type imbalance | LMS | ICAT |",
            "|---|---|---|---|---|---|",
        ]
        for method, d in paired:
            cells = [_ci(d[s], "diff") for s in ("abs_ss", "imbalance", "lms", "icat")]
            lines.append(f"| {method} | {len(d['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
