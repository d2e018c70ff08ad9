"""Figures: dev SS per bias type over steps (the paper's Figure 4), loss terms (Figure 3), before/after bars."""

from __future__ import annotations

import csv
from pathlib import Path

from bias_unlearn.data.records import BIAS_TYPES
from bias_unlearn.io import write_with
from bias_unlearn.reports.runs import DEV_ONLY, Run
from bias_unlearn.reports.seeds import variant_labels


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png"))
    _pyplot().close(fig)
    return Path(path)


def plot_dev_curves(history: list[dict], swap_events: list[dict], threshold: float, path: Path) -> Path | None:
    if not history:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [h["step"] for h in history]
    for domain in ("overall", *BIAS_TYPES):
        values = [h.get(domain) for h in history]
        if all(v is not None for v in values):
            ax.plot(steps, values, marker="o", ms=3, label=domain, lw=2.5 if domain == "overall" else 1.2)
    ax.axhline(50, color="black", lw=0.8)
    ax.axhspan(50 - threshold, 50 + threshold, color="green", alpha=0.1, label=f"50 +/- {threshold:g}")
    for event in swap_events:
        ax.axvline(event["step"], color="grey", ls=":", lw=0.8)
        ax.annotate(
            ("swap " if event["swapped"] else "back ") + event["bias_type"],
            (event["step"], event["dev_ss"]),
            fontsize=7,
            rotation=90,
            va="bottom",
        )
    ax.set_xlabel("training step")
    ax.set_ylabel("dev stereotype score (SS)")
    ax.set_title("Dev SS per bias type")
    ax.legend(fontsize=8, ncol=3)
    return _save(fig, path)


def plot_sweep_dev_curves(
    histories: dict[str, list[dict]],
    path: Path,
    groups: dict[str, tuple] | None = None,
    swaps: dict[str, list[dict]] | None = None,
) -> Path | None:
    """Dev SS over steps, one panel per bias type (and overall), one line per run (the paper's Figure 4).

    ``groups`` (run -> (method, seed)) colours lines by method and dashes them by seed, so a methods x seeds grid
    stays readable; ``swaps`` (run -> swap events) marks each swap (x) and swap back (+) on its type's panel."""
    if not any(histories.values()):
        return None
    plt = _pyplot()
    groups = groups or {name: (name, None) for name in histories}
    methods = list(dict.fromkeys(method for method, _ in groups.values()))
    seeds = list(dict.fromkeys(seed for _, seed in groups.values()))
    colour = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    dashes = {seed: ("-", "--", ":", "-.")[i % 4] for i, seed in enumerate(seeds)}
    domains = ("overall", *BIAS_TYPES)
    fig, axes = plt.subplots(1, len(domains), figsize=(3.2 * len(domains), 3.6), sharey=True)
    for ax, domain in zip(axes, domains):
        for name, history in histories.items():
            method, seed = groups.get(name, (name, None))
            points = [(h["step"], h[domain]) for h in history if h.get(domain) is not None]
            if points:
                ax.plot(*zip(*points), marker="o", ms=2.5, lw=1.1, color=colour.get(method), ls=dashes.get(seed, "-"))
            for event in (swaps or {}).get(name, []):
                if event["bias_type"] == domain:
                    ax.plot(
                        event["step"], event["dev_ss"], "x" if event["swapped"] else "+", ms=7, color=colour.get(method)
                    )
        ax.axhline(50, color="black", lw=0.8)
        ax.set_title(domain)
        ax.set_xlabel("step")
    axes[0].set_ylabel("dev SS")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colour[m], lw=2, label=m) for m in methods]
    if len(seeds) > 1:
        handles += [
            Line2D([], [], color="grey", ls=dashes[s], label="no seed" if s is None else f"seed {s}") for s in seeds
        ]
    if any((swaps or {}).values()):
        handles += [
            Line2D([], [], color="grey", marker=m, ls="", label=label)
            for m, label in (("x", "swap"), ("+", "swap back"))
        ]
    axes[-1].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))  # outside the data
    return _save(fig, path)


TERM_COLOURS = {"forget": "tab:red", "retain": "tab:blue", "kl": "tab:green", "total": "black"}  # same in every panel


def plot_loss_terms(curves: dict[str, dict[str, list[tuple[int, float]]]], path: Path) -> Path | None:
    """Each run's loss terms (forget, retain, KL, total) over steps, one panel per run (the paper's Figure 3)."""
    curves = {name: terms for name, terms in curves.items() if terms}
    if not curves:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(3.4 * len(curves), 3.2), squeeze=False)
    for ax, (name, terms) in zip(axes[0], curves.items()):
        for term, points in sorted(terms.items()):
            ax.plot(*zip(*points), lw=1.0, label=term, color=TERM_COLOURS.get(term))
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("loss")
    return _save(fig, path)


def plot_before_after(rows: list[dict], path: Path) -> Path | None:
    """Test SS per bias type: the base model's bars beside each run's, with the unbiased line at 50."""
    rows = [r for r in rows if r["status"] == "ok" and r.get("ss_overall") is not None]
    if not rows:
        return None
    plt = _pyplot()
    domains = ("overall", *BIAS_TYPES)
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(min(14.0, max(7.0, 0.5 * len(domains) * len(rows))), 4))
    for i, row in enumerate(rows):
        values = [row.get(f"ss_{d}", float("nan")) for d in domains]
        ax.bar([x + i * width for x in range(len(domains))], values, width, label=row["run"])
    ax.axhline(50, color="black", lw=0.8)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(domains))], domains)
    ax.set_ylabel("test SS")
    ax.set_ylim(30, 80)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


PAIRED_PANELS = (
    ("abs_ss", "|SS - 50| (lower is better)"),
    ("lms", "LMS (higher is better)"),
    ("icat", "ICAT (higher is better)"),
)


def plot_paired_differences(summary: dict, path: Path) -> Path | None:
    """Each method minus the reference on the same test examples, pooled over seeds (seeds.across_seeds): the
    difference and its 95% paired bootstrap interval; filled markers are resolved (the interval excludes 0)."""
    paired = [(method, e["vs_reference"]) for method, e in summary.items() if "vs_reference" in e]
    if not paired:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(PAIRED_PANELS), figsize=(3.6 * len(PAIRED_PANELS), 0.9 + 0.45 * len(paired)), sharey=True
    )
    for ax, (stat, title) in zip(axes, PAIRED_PANELS):
        for y, (_, d) in enumerate(paired):
            diff, (low, high) = d[stat]["diff"], d[stat]["ci95"]
            ax.errorbar(
                diff,
                y,
                xerr=[[diff - low], [high - diff]],
                fmt="o",
                capsize=3,
                color="tab:blue",
                mfc="tab:blue" if d[stat]["resolved"] else "white",
            )
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(title, fontsize=9)
    axes[0].set_yticks(range(len(paired)), [f"{m} ({len(d['seeds'])} seeds)" for m, d in paired])
    axes[0].invert_yaxis()
    fig.suptitle(f"method - {paired[0][1]['reference']}, paired on the same test examples (95% interval)", fontsize=9)
    return _save(fig, path)


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
                    curves.setdefault(key[len("train/") :], []).append((int(record["step"]), float(value)))
    return curves


def sweep_figures(
    runs: list[Run], rows: list[dict], out_dir: Path, seeds: dict | None = None
) -> dict[str, Path | None]:
    """The sweep's figures in ``out_dir``: dev SS over steps (by method and seed, swaps marked), loss terms, test
    SS before / after, and (given ``across_seeds``' summary) the paired differences to the reference method."""
    trained = [r for r in runs if r.ok or r.status == DEV_ONLY]  # a dev-only run's curves are its result
    labels = variant_labels(trained)  # colour by method, or by a method's variant where settings differ
    return {
        "dev_ss": plot_sweep_dev_curves(
            {r.name: r.report.summary.dev_history for r in trained},
            Path(out_dir) / "sweep_dev_ss.png",
            groups={r.name: (labels[r.name], r.seed) for r in trained},
            swaps={r.name: r.report.summary.swap_events for r in trained},
        ),
        "loss_terms": plot_loss_terms(
            {r.name: loss_curves(r) for r in trained}, Path(out_dir) / "sweep_loss_terms.png"
        ),
        "before_after": plot_before_after(rows, Path(out_dir) / "sweep_before_after.png"),
        "paired": plot_paired_differences(seeds or {}, Path(out_dir) / "sweep_paired.png"),
    }
