import pytest
import torch

from bias_unlearn.config.errors import ModelLoadError
from bias_unlearn.eval.scorer import SentenceScorer
from bias_unlearn.models.loading import load_model, resolve_dtype
from bias_unlearn.models.lora import load_adapter
from tests.helpers import make_model, make_tokenizer, save_random_adapter


def test_local_model_loads_and_scores(tiny_model_dir):
    model, tokenizer = load_model("local", str(tiny_model_dir))
    assert model.dtype == torch.float32 and tokenizer.bos_token == "<s>"
    (scores,) = SentenceScorer(model, tokenizer).sentences([["The nurse was caring today ."]])
    assert scores[0].n_tokens == 6


def test_unreachable_hub_model_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="offline default"):
        load_model("hub", "no-such-org/no-such-model-xyz")


def test_bad_sources_and_dtypes(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model("local", str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="unknown model source"):
        load_model("s3", "x")
    with pytest.raises(ModelLoadError, match="unknown offline model"):
        load_model("offline", "gpt-9")
    assert resolve_dtype("auto", "cpu") == torch.float32 and resolve_dtype("auto", "cuda") == torch.bfloat16
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        resolve_dtype("int3")


def test_adapter_round_trip_gives_same_scores(tiny_model_dir, tmp_path):
    base, tokenizer = load_model("local", str(tiny_model_dir))
    trained = save_random_adapter(base, ["q_proj", "v_proj"], tmp_path / "adapter")
    before = SentenceScorer(trained, tokenizer).sentences([["The nurse was caring today ."]])[0][0]
    fresh, _ = load_model("local", str(tiny_model_dir))
    plain = SentenceScorer(fresh, tokenizer).sentences([["The nurse was caring today ."]])[0][0]
    loaded = load_adapter(fresh, str(tmp_path / "adapter"))
    after = SentenceScorer(loaded, tokenizer).sentences([["The nurse was caring today ."]])[0][0]
    assert after.logprob == pytest.approx(before.logprob, abs=1e-5)
    assert abs(after.logprob - plain.logprob) > 1e-4  # the adapter really changes the model


def test_adapter_for_another_architecture_is_rejected(tmp_path):
    tokenizer = make_tokenizer("gpt2")
    save_random_adapter(make_model("gpt2", len(tokenizer)), ["c_attn"], tmp_path / "gpt2_adapter")
    llama = make_model("llama", len(tokenizer))
    with pytest.raises(ModelLoadError, match="targets modules \\['c_attn'\\]"):
        load_adapter(llama, str(tmp_path / "gpt2_adapter"))
    with pytest.raises(ModelLoadError, match="no adapter_config.json"):
        load_adapter(llama, str(tmp_path))


def test_adapter_with_wrong_shapes_is_rejected(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = make_tokenizer("llama")
    wide = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    save_random_adapter(wide, ["q_proj"], tmp_path / "wide")
    with pytest.raises(ModelLoadError, match="does not fit"):
        load_adapter(make_model("llama", len(tokenizer)), str(tmp_path / "wide"))


def test_training_and_evaluation_load_one_model_in_the_target_dtype(tiny_model_dir):
    """A bf16 run's base model is loaded in bf16 by every job (models/policy.load_base): the rotary inv_freq stays
    fp32 as transformers keeps it. The code of 2026-12-04 loaded fp32 and cast the whole model (model.to(bf16)),
    rounding that buffer, so its before and after were scored by two different models."""
    from omegaconf import OmegaConf

    from bias_unlearn.models.policy import load_base, load_policy

    cfg = OmegaConf.create({"source": "local", "name_or_path": str(tiny_model_dir), "dtype": "bf16", "revision": None})
    trained, _ = load_base(cfg, "cpu", place="cpu")  # the training job's call
    scored, _ = load_policy(cfg, "cpu")  # evaluate.py's
    assert trained.dtype == torch.bfloat16
    assert trained.model.rotary_emb.inv_freq.dtype == torch.float32
    for (name, a), (_, b) in zip(trained.state_dict().items(), scored.state_dict().items(), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    for (name, a), (_, b) in zip(trained.named_buffers(), scored.named_buffers(), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    cast, _ = load_base(OmegaConf.merge(cfg, {"dtype": "fp32"}), "cpu")
    cast.to(torch.bfloat16)  # what the old training path did
    assert cast.model.rotary_emb.inv_freq.dtype == torch.bfloat16  # the rounding the one loader avoids
