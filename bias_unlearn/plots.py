"""Figures: dev SS per bias type over training steps (the paper's Figure 4), with swaps marked."""
from __future__ import annotations

from pathlib import Path

from bias_unlearn.data.records import BIAS_TYPES


def plot_dev_curves(history: list[dict], swap_events: list[dict], threshold: float, path: Path) -> Path | None:
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        ax.annotate(("swap " if event["swapped"] else "back ") + event["bias_type"], (event["step"], event["dev_ss"]),
                    fontsize=7, rotation=90, va="bottom")
    ax.set_xlabel("training step")
    ax.set_ylabel("dev stereotype score (SS)")
    ax.set_title("Dev SS per bias type")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
