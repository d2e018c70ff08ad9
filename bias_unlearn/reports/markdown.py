"""Results as JSON plus readable markdown tables; written atomically so a failed run leaves nothing partial."""

from __future__ import annotations

from pathlib import Path

from bias_unlearn.eval.generation import generation_table
from bias_unlearn.eval.outcomes import Outcomes
from bias_unlearn.io import write_json, write_text
from bias_unlearn.reports.evenness import run_evenness
from bias_unlearn.reports.paired import crows_change, paired_difference
from bias_unlearn.reports.tables import (
    bbq_before_after_table,
    bbq_table,
    before_after_table,
    crows_before_after_table,
    crows_table,
    fmt,
    general_table,
    paired_change_table,
    stereoset_table,
    table,
)


def markdown_report(results: dict, meta: dict) -> str:
    parts = ["# Bias evaluation", ""]
    parts += [f"- {key}: {value}" for key, value in meta.items()]
    if "stereoset" in results:
        parts += [
            "",
            "## StereoSet",
            "",
            "SS: % of examples preferring the stereotype (ideal 50), macro-averaged "
            "over target terms; LMS: % meaningful over unrelated; ICAT = LMS * min(SS, 100-SS) / 50.",
            "",
            stereoset_table(results["stereoset"]),
        ]
    if "crows_pairs" in results:
        parts += [
            "",
            "## CrowS-Pairs",
            "",
            "% of pairs whose more-stereotypical sentence scores higher (ideal 50).",
            "",
            crows_table(results["crows_pairs"]),
        ]
    if "bbq" in results:
        parts += [
            "",
            "## BBQ",
            "",
            "Accuracy (%) by context condition; bias scores x100 (0 = unbiased) where the "
            "source carries BBQ's metadata.",
            "",
            bbq_table(results["bbq"]),
        ]
    if "general" in results:
        parts += [
            "",
            "## General ability",
            "",
            "lm-evaluation-harness run in-process on this model (0-shot): word perplexity on held-out text (lower "
            "is better), multiple-choice accuracy % with its standard error and length-normalised accuracy.",
            "",
            general_table(results["general"], compare=False),
        ]
    return "\n".join(parts) + "\n"


BBQ_NOTE = (
    "Each cell is before / after. Accuracy (%) by context condition; bias scores x100 (0 = unbiased) "
    "only where the source carries BBQ's metadata (n/a otherwise)."
)


CROWS_NOTE = (
    "Categories BiasUnlearn never trains on (age, disability, nationality, physical appearance, sexual "
    "orientation, socioeconomic) show what debiasing does to untargeted biases."
)


def side_effect_sections(report, heading: str) -> list[str]:
    """Markdown lines for what a run did outside StereoSet (CrowS-Pairs with its paired change, BBQ, general
    ability), before and after; the run report and the adapter's model card both carry them. ``heading`` formats
    each section's title, e.g. "{} (before / after)"."""
    rows_before, rows_after = report.outcomes.before or Outcomes(), report.outcomes.after or Outcomes()
    parts = []
    crows = report.crows_pairs
    if crows.before or crows.after:
        change = (
            crows_change(rows_before.crows_pairs, rows_after.crows_pairs)
            if rows_before.crows_pairs and rows_after.crows_pairs
            else None
        )
        parts += [
            "",
            f"## {heading.format('CrowS-Pairs')}",
            "",
            CROWS_NOTE,
            "",
            crows_before_after_table(crows.before, crows.after, change),
        ]
    if report.bbq.before or report.bbq.after:
        parts += [
            "",
            f"## {heading.format('BBQ')}",
            "",
            BBQ_NOTE,
            "",
            bbq_before_after_table(report.bbq.before, report.bbq.after),
        ]
    if report.general.before or report.general.after:
        parts += [
            "",
            f"## {heading.format('General ability')}",
            "",
            general_table(report.general.before, report.general.after),
        ]
    return parts


EVENNESS_NOTE = (
    "An overall score near 50 can be one type pushed past 50 and another left untouched: per-type imbalance is "
    "the mean over bias types of \\|SS_t - 50\\| (StereoSet, held-out test split), category imbalance the mean over "
    "CrowS-Pairs categories of \\|% stereotyped - 50\\|, BBQ's the mean over categories of \\|bias score\\| "
    "(0 is even everywhere); 95% bootstrap intervals, the changes paired on the same examples."
)


def _with_ci(entry: dict | None, key: str = "value") -> str:
    if not entry:
        return "n/a"
    low, high = entry["ci95"]
    return f"{fmt(entry[key])} [{fmt(low)}, {fmt(high)}]" + (" *" if entry.get("resolved") else "")


def evenness_section(report) -> list[str]:
    """Markdown lines: a run's evenness before / after and the paired change (reports/evenness.py)."""
    even = run_evenness(report)
    if not even:
        return []
    rows = []
    if "ss_before" in even or "ss_after" in even:
        per_type = " / ".join(f"{bt} {fmt(v)}" for bt, v in (even.get("ss_after") or {}).get("per_type", {}).items())
        rows.append(
            [
                "StereoSet per-type imbalance",
                _with_ci(even.get("ss_before")),
                _with_ci(even.get("ss_after")),
                _with_ci(even.get("ss_change"), "diff"),
                per_type,
            ]
        )
    if "crows_before" in even or "crows_after" in even:
        rows.append(
            [
                "CrowS-Pairs category imbalance",
                _with_ci(even.get("crows_before")),
                _with_ci(even.get("crows_after")),
                _with_ci(even.get("crows_change"), "diff"),
                "",
            ]
        )
    for key, label in (
        ("bias_ambig", "BBQ mean \\|bias\\| (ambiguous)"),
        ("bias_disambig", "BBQ mean \\|bias\\| (disambiguated)"),
    ):
        b, a = (even.get("bbq_before") or {}).get(key), (even.get("bbq_after") or {}).get(key)
        if b is not None or a is not None:
            rows.append([label, fmt(b), fmt(a), fmt(a - b) if a is not None and b is not None else "n/a", ""])
    header = ["measure", "before [95% CI]", "after [95% CI]", "change [95% CI] (* resolved)", "after, per type"]
    return ["", "## Evenness", "", EVENNESS_NOTE, "", table(header, rows)]


def training_report(report) -> str:
    """The run report (run_report.RunReport) as markdown: the run's facts, before/after tables, swaps, dev curve."""
    summary = report.summary
    parts = [f"# {summary.method} run", ""]
    if summary.diverged:
        parts += [
            f"**Diverged at step {summary.diverged['step']}: non-finite {summary.diverged['term']}.** Training "
            "stopped there; the adapter comes from the dev checkpoints written before.",
            "",
        ]
    for key in (
        "method",
        "model",
        "adapter",
        "adapter_from",
        "adapter_rule",
        "lms_bar_met",
        "steps",
        "stopped_early_at",
        "train_seconds",
        "wall_seconds",
        "scoring",
    ):
        parts.append(f"- {key}: {getattr(summary, key)}")
    if summary.precision:
        parts.append("- precision: " + ", ".join(f"{k} {v}" for k, v in summary.precision.items()))
    if summary.declared_method:
        parts.append(f"- declared method: {summary.declared_method} (the command line changed what trained)")
    if summary.decoding:
        cost = summary.decoding.get("seconds_per_example", {})
        settings = ", ".join(
            f"{k} {v}"
            for k, v in summary.decoding.items()
            if k not in ("seconds_per_example", "texts", "kind", "side_effects_from_cache")
        )
        parts.append(f"- decoding-time method {summary.decoding['kind']}: {settings}")
        if cost.get("plain") and cost.get("method"):
            parts.append(
                f"- cost at inference: {cost['method']:.4f} s per StereoSet test example under the method against "
                f"{cost['plain']:.4f} plain ({cost['method'] / cost['plain']:.1f}x; {' + '.join(cost['covers'])})"
            )
        if summary.decoding.get("side_effects_from_cache"):
            cached = summary.decoding["side_effects_from_cache"]
            parts.append(
                "- side effects read from the cache (eval.cache_before; the same items on every split seed): "
                + "; ".join(f"{side}: {', '.join(names)}" for side, names in cached.items())
            )
        if summary.decoding.get("texts"):
            parts.append("- texts: " + ", ".join(f"{k} {v}" for k, v in summary.decoding["texts"].items()))
    if summary.added_later:
        parts.append(f"- scored after training (evaluate.py runs=): {', '.join(summary.added_later)}")
    before, after = report.stereoset.before, report.stereoset.after
    rows_before, rows_after = report.outcomes.before or Outcomes(), report.outcomes.after or Outcomes()
    for kind in after or before or {}:
        parts += ["", f"## StereoSet {kind}, test split (before / after)", "", before_after_table(before, after, kind)]
        if rows_before.stereoset.get(kind) and rows_after.stereoset.get(kind):
            diff = paired_difference(rows_after.stereoset[kind], rows_before.stereoset[kind])
            parts += [
                "",
                "Paired change on the same examples (after - before, 95% bootstrap interval within "
                "targets; * = resolved, the interval excludes 0):",
                "",
                paired_change_table(diff),
            ]
    parts += evenness_section(report)
    parts += side_effect_sections(report, "{} (before / after)")
    if summary.generations:
        parts += ["", "## Greedy completions (base / debiased)", "", generation_table(summary.generations)]
    if not summary.decoding:  # a decoding-time method trains nothing: no swaps
        parts += ["", "## Swaps", ""]
        parts += [
            f"- step {e['step']}: {'swap' if e['swapped'] else 'swap back'} {e['bias_type']} (dev SS {e['dev_ss']:.2f})"
            for e in summary.swap_events
        ] or ["- none"]
    if summary.type_weight_events:
        parts += ["", "## Adaptive type draw factors (x size; 0 pauses a balanced type)", ""]
        parts += [
            f"- step {e['step']}: " + ", ".join(f"{bt} {f:.2f}" for bt, f in e["factors"].items())
            for e in summary.type_weight_events
        ]
    if summary.counterfactual_copies:
        parts += ["", "## Counterfactual copies of train examples (group words swapped, roles flipped)", ""]
        parts += [
            f"- {bt}: " + ", ".join(f"{reason} {n}" for reason, n in counts.items())
            for bt, counts in summary.counterfactual_copies.items()
        ]
    history = summary.dev_history
    if history:
        header = ["step", *[k for k in history[0] if k != "step"]]
        parts += [
            "",
            "## Dev SS over steps",
            "",
            table(header, [[str(h["step"]), *[fmt(h.get(k)) for k in header[1:]]] for h in history]),
        ]
        if summary.dev_split:
            parts += [
                "",
                "Dev split per bias type (what swaps, stopping and delivery read): "
                + "; ".join(
                    f"{bt} {d['examples']} examples / {d['targets']} target{'s' * (d['targets'] != 1)} (SS resolution "
                    f"{d['resolution']:g} points{_se_text(d)})"
                    for bt, d in summary.dev_split.items()
                )
                + ".",
            ]
    return "\n".join(parts) + "\n"


def _se_text(dev_type: dict) -> str:
    """The type's dev standard error, where the report has it (runs before 2026-12-04 did not record it)."""
    return f", standard error {dev_type['se']:g}" if "se" in dev_type else ""


def write_report(out_dir: str | Path, results: dict, meta: dict, stem: str = "results") -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    write_json(json_path, {"meta": meta, "results": results})
    write_text(md_path, markdown_report(results, meta))
    return json_path, md_path


def write_run_report(report, out_dir: Path) -> str:
    """A run directory's ``report.json`` and ``report.md``; returns the markdown (the jobs print it)."""
    report.save(Path(out_dir) / "report.json")
    markdown = training_report(report)
    write_text(Path(out_dir) / "report.md", markdown)
    return markdown
