"""LoRA adapters: every model config's target style wraps, saves and loads back to the same logits; adapters for
another architecture or size, and directories that are not adapters, are refused with a ModelLoadError."""

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from peft import LoraConfig, get_peft_model

from bias_unlearn.config.errors import ModelLoadError
from bias_unlearn.models.lora import load_adapter, load_adapter_weights, wrap_lora

try:
    from tests.helpers import make_model
except ImportError:  # the builders used to live in tests/conftest.py
    from conftest import make_model

VOCAB = 64
MODEL_CONFS = sorted((Path(__file__).resolve().parents[2] / "conf" / "model").glob("*.yaml"))
SEVEN_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _styles(targets) -> list[str]:
    """The tiny architectures a target style is meant for: all-linear fits both."""
    if targets == "all-linear":
        return ["gpt2", "llama"]
    return ["gpt2"] if any("c_attn" in t or "c_proj" in t for t in targets) else ["llama"]


def _target_styles() -> list:
    seen, params = set(), []
    for path in MODEL_CONFS:
        targets = OmegaConf.to_container(OmegaConf.load(path).lora, resolve=True)["target_modules"]
        for style in _styles(targets):
            key = (style, json.dumps(targets))
            if key not in seen:
                seen.add(key)
                params.append(pytest.param(style, targets, id=f"{style}-{path.stem}"))
    if ("llama", json.dumps(SEVEN_LINEAR)) not in seen:
        params.append(pytest.param("llama", SEVEN_LINEAR, id="llama-seven-linear"))
    return params


def _lora_cfg(targets):
    return OmegaConf.create({"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": targets})


def _conf_lora(name: str):
    return OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "model" / f"{name}.yaml").lora


def _ids():
    return torch.randint(0, VOCAB, (2, 10), generator=torch.Generator().manual_seed(0))


def _logits(model):
    with torch.no_grad():
        return model(input_ids=_ids()).logits


def _save(style, lora_cfg, path, **model_kwargs):
    """Wrap a tiny model, make the adapter a real change (LoRA B starts at zero), save it; the wrapped model."""
    model = wrap_lora(make_model(style, VOCAB, **model_kwargs), lora_cfg)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    model.eval()
    model.save_pretrained(path)
    return model


def _lora_modules(model) -> list[str]:
    return [name for name, module in model.named_modules() if hasattr(module, "lora_A")]


def test_every_model_config_is_covered():
    styles = {json.dumps(p.values[1]) for p in _target_styles()}
    assert json.dumps("all-linear") in styles and json.dumps(SEVEN_LINEAR) in styles
    assert json.dumps(["q_proj", "k_proj", "v_proj", "o_proj"]) in styles
    assert json.dumps(["attn.c_attn", "attn.c_proj"]) in styles


@pytest.mark.parametrize("style,targets", _target_styles())
def test_round_trip_gives_the_same_logits(style, targets, tmp_path):
    wrapped = _save(style, _lora_cfg(targets), tmp_path / "adapter")
    expected = _logits(wrapped)
    fresh = make_model(style, VOCAB)
    plain = _logits(fresh)
    assert (expected - plain).abs().max() > 1e-3  # the adapter really changes the model
    loaded = load_adapter(fresh, str(tmp_path / "adapter"))
    assert not loaded.training
    assert sorted(_lora_modules(loaded)) == sorted(_lora_modules(wrapped))
    torch.testing.assert_close(_logits(loaded), expected, rtol=1e-5, atol=1e-5)


def test_local_all_linear_adapter_loads_back(tmp_path):
    """model=local (all-linear): PEFT saves full module paths, which must still fit the model they came from."""
    lora = _conf_lora("local")
    assert lora.target_modules == "all-linear"
    for style in ("gpt2", "llama"):
        _save(style, lora, tmp_path / style)
        saved = json.loads((tmp_path / style / "adapter_config.json").read_text())["target_modules"]
        assert all("." in t for t in saved)  # full paths, e.g. model.layers.0.self_attn.q_proj
        load_adapter(make_model(style, VOCAB), str(tmp_path / style))


@pytest.mark.parametrize("conf", ["gpt2", "gpt2_medium", "gpt2_large"])
def test_gpt2_configs_adapt_attention_only(conf):
    lora = _conf_lora(conf)
    wrapped = wrap_lora(make_model("gpt2", VOCAB), lora)
    adapted = _lora_modules(wrapped)
    assert adapted and not [n for n in adapted if ".mlp." in n]
    n_layer = wrapped.config.n_layer
    assert sorted(n.split("transformer.", 1)[1] for n in adapted) == sorted(
        f"h.{i}.attn.{m}" for i in range(n_layer) for m in ("c_attn", "c_proj")
    )


def test_wrap_lora_reads_a_string_as_one_module_name():
    wrapped = wrap_lora(make_model("llama", VOCAB), {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "q_proj"})
    assert wrapped.peft_config["default"].target_modules == {"q_proj"}
    assert {n.rsplit(".", 1)[1] for n in _lora_modules(wrapped)} == {"q_proj"}
    config = wrap_lora(make_model("llama", VOCAB), _lora_cfg("all-linear")).peft_config["default"]
    assert config.r == 4 and config.lora_alpha == 8 and config.lora_dropout == 0.1
    assert config.task_type == "CAUSAL_LM" and {n.rsplit(".", 1)[1] for n in config.target_modules} == set(SEVEN_LINEAR)


def test_trainable_adapter_and_weight_reload(tmp_path):
    wrapped = _save("llama", _lora_cfg(["q_proj", "v_proj"]), tmp_path / "adapter")
    expected = _logits(wrapped)
    frozen = load_adapter(make_model("llama", VOCAB), str(tmp_path / "adapter"))
    assert not any(p.requires_grad for p in frozen.parameters())
    trainable = load_adapter(make_model("llama", VOCAB), str(tmp_path / "adapter"), trainable=True)
    grads = {n for n, p in trainable.named_parameters() if p.requires_grad}
    assert grads and all("lora_" in n for n in grads)

    with torch.no_grad():  # drift away, then put the saved weights back
        for name, param in wrapped.named_parameters():
            if "lora_B" in name:
                param.zero_()
    assert (_logits(wrapped) - expected).abs().max() > 1e-3
    load_adapter_weights(wrapped, tmp_path / "adapter")
    torch.testing.assert_close(_logits(wrapped), expected, rtol=1e-5, atol=1e-5)


def test_regex_targets_match_like_peft(tmp_path):
    model = get_peft_model(make_model("llama", VOCAB), LoraConfig(r=4, target_modules=r".*\.(q_proj|v_proj)"))
    model.save_pretrained(tmp_path / "regex")
    assert len(_lora_modules(load_adapter(make_model("llama", VOCAB), str(tmp_path / "regex")))) == 4
    with pytest.raises(ModelLoadError, match="another architecture"):
        load_adapter(make_model("gpt2", VOCAB), str(tmp_path / "regex"))


@pytest.mark.parametrize(
    "source,target,targets,missing",
    [
        ("gpt2", "llama", ["attn.c_attn", "attn.c_proj"], "attn.c_attn"),
        ("llama", "gpt2", ["q_proj"], "q_proj"),
        ("llama", "gpt2", "all-linear", "model.layers.0."),
        ("gpt2", "llama", "all-linear", "transformer.h.0."),
    ],
)
def test_adapter_for_another_architecture_is_refused(source, target, targets, missing, tmp_path):
    _save(source, _lora_cfg(targets), tmp_path / "adapter")
    model = make_model(target, VOCAB)
    with pytest.raises(ModelLoadError, match="another architecture") as err:
        load_adapter(model, str(tmp_path / "adapter"))
    assert str(tmp_path / "adapter") in str(err.value) and missing in str(err.value)
    assert not _lora_modules(model)  # refused before anything was injected


def test_adapter_for_fewer_layers_or_other_module_paths_is_refused(tmp_path):
    from transformers import GPT2Config, GPT2Model, LlamaConfig, LlamaForCausalLM

    _save("llama", _lora_cfg("all-linear"), tmp_path / "deep")
    shallow = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    with pytest.raises(ModelLoadError, match=r"model\.layers\.1\."):
        load_adapter(shallow, str(tmp_path / "deep"))

    # Targets match by suffix, but the weights belong to GPT2Model's paths (h.0...), not GPT2LMHeadModel's.
    bare = GPT2Model(GPT2Config(vocab_size=VOCAB, n_positions=256, n_embd=32, n_layer=2, n_head=2))
    get_peft_model(bare, LoraConfig(r=4, target_modules=["attn.c_attn"])).save_pretrained(tmp_path / "bare")
    with pytest.raises(ModelLoadError, match=r"has weights for modules \['h\.0\.attn\.c_attn'"):
        load_adapter(make_model("gpt2", VOCAB), str(tmp_path / "bare"))


@pytest.mark.parametrize(
    "style,targets", [("llama", ["q_proj", "k_proj", "v_proj", "o_proj"]), ("gpt2", ["attn.c_attn", "attn.c_proj"])]
)
def test_adapter_with_other_shapes_is_refused(style, targets, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    wide = (
        LlamaForCausalLM(
            LlamaConfig(
                vocab_size=VOCAB,
                hidden_size=64,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
            )
        )
        if style == "llama"
        else GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=256, n_embd=64, n_layer=2, n_head=2))
    )
    wrap_lora(wide, _lora_cfg(targets)).save_pretrained(tmp_path / "wide")
    model = make_model(style, VOCAB)
    with pytest.raises(ModelLoadError, match="does not fit") as err:
        load_adapter(model, str(tmp_path / "wide"))
    assert str(tmp_path / "wide") in str(err.value) and "shapes differ" in str(err.value)
    assert not _lora_modules(model)


def test_not_an_adapter_is_refused(tmp_path):
    model = make_model("llama", VOCAB)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_adapter(model, str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="no adapter_config.json .*not a PEFT adapter"):
        load_adapter(model, str(tmp_path))
    _save("llama", _lora_cfg(["q_proj"]), tmp_path / "adapter")
    (tmp_path / "adapter" / "adapter_model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no adapter weights .*not a PEFT adapter"):
        load_adapter(model, str(tmp_path / "adapter"))


@pytest.mark.parametrize(
    "change,message",
    [
        ("{not json", "malformed adapter_config.json"),
        ("[1, 2]", "malformed adapter_config.json: expected a JSON object"),
        ({"peft_type": None}, "malformed adapter_config.json: no peft_type"),
        ({"target_modules": 3}, "malformed adapter_config.json: target_modules must be"),
        ({"target_modules": "q_proj(("}, "malformed adapter_config.json: target_modules .* is not a valid regex"),
        ({"r": "eight"}, "malformed adapter_config.json: r must be a positive integer"),
        ({"lora_alpha": [16]}, "malformed adapter_config.json: lora_alpha must be a number"),
        ({"lora_dropout": "high"}, "malformed adapter_config.json: lora_dropout must be a number"),
        ({"peft_type": "IA3"}, "is a IA3 adapter; only LoRA adapters are supported"),
    ],
)
def test_malformed_adapter_config_is_refused(change, message, tmp_path):
    _save("llama", _lora_cfg(["q_proj"]), tmp_path / "adapter")
    config_path = tmp_path / "adapter" / "adapter_config.json"
    if isinstance(change, dict):
        config = {k: v for k, v in {**json.loads(config_path.read_text()), **change}.items() if v is not None}
        change = json.dumps(config)
    config_path.write_text(change)
    with pytest.raises(ModelLoadError, match=message) as err:
        load_adapter(make_model("llama", VOCAB), str(tmp_path / "adapter"))
    assert str(tmp_path / "adapter") in str(err.value)
