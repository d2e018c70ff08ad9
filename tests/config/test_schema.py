"""The real configs: every model and method composes onto the typed schema, validates, and names the method that
actually trains; ``loss=`` aliases name the same methods."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.config.methods import Objective, method_name
from bias_unlearn.config.schema import train_settings
from tests.helpers import ROOT, compose_config

MODELS = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))
LOSSES = sorted(p.stem for p in (ROOT / "conf" / "loss").glob("*.yaml"))
DECODING = ("self_debias", "cafie")  # decoding-time methods: nothing trains (bias_unlearn/decoding/)
NOT_LORA = (*DECODING, "biasedit")  # BiasEdit trains an editor network (bias_unlearn/editing/)
METHODS = sorted(p.stem for p in (ROOT / "conf" / "method").glob("*.yaml") if p.stem not in NOT_LORA)
TRAINERS = sorted(p.stem for p in (ROOT / "conf" / "trainer").glob("*.yaml"))


def compose(*overrides):
    return compose_config("train", "paths.output_dir=/tmp/unused", *overrides)


@pytest.mark.parametrize("model", MODELS)
def test_every_model_composes_and_its_learning_rate_is_one_knob(model):
    """model.lr is the one source of the learning rate: the old CPU preset wrote optim.lr, so model.lr was dead."""
    cfg = compose(f"model={model}")
    assert cfg.model.name == model and cfg.model.lora.r == 8
    assert cfg.optim.lr == cfg.model.lr > 0
    assert compose(f"model={model}", "model.lr=0.00123").optim.lr == 0.00123
    if model == "smollm2_135m":  # the CPU preset follows the offline default
        assert cfg.trainer.max_steps == 400 and cfg.train.retain_batch == 8  # one pass over the forget set
    else:
        assert cfg.trainer.max_steps == 1000 and cfg.train.retain_batch == 28


def test_the_biasedit_file_declares_its_editor():
    settings = train_settings(compose("method=biasedit"))
    editing = settings.method.editing
    assert settings.method.name == "biasedit" and settings.method.decoding is None
    assert (editing.layers, editing.n_blocks, editing.loc_coef, editing.meta_lr) == (3, 2, 4.0, 1e-5)
    with pytest.raises(ConfigError, match=r"method\.editing\.rank"):
        train_settings(compose("method=biasedit", "method.editing.rank=0"))


@pytest.mark.parametrize("method", DECODING)
def test_a_decoding_method_file_declares_its_kind_and_the_originals_constants(method):
    settings = train_settings(compose(f"method={method}"))
    decoding = settings.method.decoding
    assert settings.method.name == decoding.kind == method
    assert (decoding.decay, decoding.epsilon) == (50.0, 0.01) if method == "self_debias" else (1000.0, 0.01)
    assert method == "self_debias" or (decoding.alpha, decoding.gamma) == (0.99, 1.0)
    assert decoding.bias_types == ["gender", "profession", "race", "religion"]
    with pytest.raises(ConfigError, match=r"method\.decoding\.kind"):
        train_settings(compose(f"method={method}", "method.decoding.kind=beam"))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_file_declares_the_method_that_trains(method):
    """conf/method/<name>.yaml declares the whole method; its name is the one derived from what it trains."""
    cfg = compose(f"method={method}")
    settings = train_settings(cfg)
    assert settings.method.name == method == method_name(Objective.from_method(settings.method))
    baseline = method in ("cda", "sft", "dpo", "ga", "npo")
    assert settings.method.swapping is not baseline  # only BiasUnlearn and its ablations swap
    assert settings.method.paired == (method in ("sft", "dpo"))
    expected = {
        "bias_unlearn": ("npo", 0.4, 0.4, 0.2),
        "cda": ("npo", 0.0, 1.0, 0.0),
        "sft": ("ce", 0.5, 0.5, 0.0),
        "dpo": ("dpo", 1.0, 0.0, 0.0),
        "ga": ("ga", 1.0, 0.0, 0.0),
        "npo": ("npo", 1.0, 0.0, 0.0),
        "no_retain": ("npo", 0.4, 0.0, 0.2),
        "no_kl": ("npo", 0.4, 0.4, 0.0),
        "no_adv": ("npo", 0.4, 0.4, 0.2),
    }
    loss = settings.method.loss
    assert (loss.forget, loss.forget_weight, loss.retain_weight, loss.kl_weight) == expected[method]
    assert (settings.method.adversarial_fraction > 0) == (method in ("bias_unlearn", "no_retain", "no_kl"))


@pytest.mark.parametrize("loss", LOSSES)
def test_loss_aliases_are_the_methods_they_name(loss):
    """loss=no_kl (the paper's objective variants by their loss-weight names) composes exactly method=no_kl."""
    method = {"full": "bias_unlearn"}.get(loss, loss)
    assert OmegaConf.to_container(compose(f"loss={loss}").method) == OmegaConf.to_container(
        compose(f"method={method}").method
    )


def test_a_method_changed_on_the_command_line_is_named_from_what_trains(caplog):
    """method=bias_unlearn method.loss.kl_weight=0 trains no_kl: the job names it so and says it was changed."""
    from bias_unlearn.jobs.train import trained_method

    settings = train_settings(compose("method.loss.kl_weight=0"))
    assert settings.method.name == "bias_unlearn"
    with caplog.at_level("WARNING"):
        assert trained_method(settings) == "no_kl"
    assert "method=bias_unlearn was changed on the command line: what trains is no_kl" in caplog.text
    assert trained_method(train_settings(compose("method=no_kl"))) == "no_kl"


@pytest.mark.parametrize("trainer", TRAINERS)
def test_no_gradient_clipping_by_default(trainer):
    """The paper and the authors' code do not clip (the old default clipped every step at norm 1.0)."""
    from hydra.utils import instantiate

    cfg = compose(f"trainer={trainer}")
    assert cfg.trainer.gradient_clip_val is None
    if trainer in ("auto", "cpu", "default"):
        trainer = instantiate(cfg.trainer, logger=False, accelerator="cpu", precision="32-true")
        assert trainer.gradient_clip_val is None


def test_the_delivery_bar_is_the_dev_objectives_lms_bar():
    """The adapter a run delivers and the run a preset sweep chooses read "LMS barely moves" the same way."""
    from bias_unlearn.reports.columns import DEV_LMS_BAR
    from bias_unlearn.unlearning.callbacks import AdapterCheckpoint

    cfg = compose()
    assert cfg.callbacks.adapter_checkpoint.max_lms_drop == DEV_LMS_BAR == 1.0
    assert AdapterCheckpoint("/tmp/unused").max_lms_drop == DEV_LMS_BAR


def test_paper_defaults_for_retention_and_clipping_are_named_options():
    cfg = compose("method.loss.retain_reduction=token", "trainer.gradient_clip_val=1.0")
    assert train_settings(cfg).method.loss.retain_reduction == "token" and cfg.trainer.gradient_clip_val == 1.0
    assert train_settings(compose()).method.loss.retain_reduction == "example"


@pytest.mark.parametrize(
    "override, message",
    [
        ("eval.adapter=bset", "eval.adapter must be one of"),
        ("scoring.mode=median", "scoring.mode must be one of"),
        ("scoring.start=bos", "scoring.start must be one of"),
        ("scoring.batch_size=0", "scoring.batch_size"),
        ("scoring.harness_batch_size=0", "scoring.harness_batch_size must be a positive integer"),
        ("data.general.max_items=0", "data.general.max_items must be >= 1"),
        ("method.loss.retain_reduction=sentence", "loss.retain_reduction"),
        ("method.loss.forget_weight=-1", "loss.forget_weight must be >= 0"),
        ("train.retain_batch=1", "must be larger than train.forget_batch"),
        ("callbacks.early_stopping.threshold=50", "threshold must lie in (0, 50)"),
        ("method.loss.forget=dpo", "needs method.paired=true"),
        ("method=dpo method.adversarial_fraction=0.25", "needs method.adversarial_fraction=0"),
        ("method.adversarial_fraction=1", "method.adversarial_fraction must lie in"),
        ("model.lora.r=0", "model.lora.r must be >= 1"),
        ("model.lora.dropout=1", "model.lora.dropout must lie in"),
        ("trainer.val_check_interval=0", "trainer.val_check_interval must be a number of steps"),
        ("trainer.max_steps=0", "trainer.max_steps must be >= 1"),
        ("train.type_weights=even", "train.type_weights must be one of"),
        ("train.batch_scope=node", "train.batch_scope must be one of"),
        ("callbacks.adapter_checkpoint.balance=l1", "callbacks.adapter_checkpoint.balance must be one of"),
        ("model.source=cloud", "model.source must be one of"),
        ("+scoring.share_prefixes=false", "scoring.share_prefixes: no such setting"),
        ("+compute.sparse_heads=false", "compute.sparse_heads: no such setting"),
        ("model.lr=0", "model.lr must be positive"),
        ("method.loss.forget_weight=0 method.loss.retain_weight=0 method.loss.kl_weight=0", "all zero"),
        ("trainer.strategy=fsdp", "use strategy=fsdp"),
        ("eval.kinds=[intrasentance]", "eval.kinds must list StereoSet kinds"),
        ("train.kinds=[]", "train.kinds must list StereoSet kinds"),
        ("train.kl_batch=0", "leaves the KL term"),
    ],
)
def test_bad_settings_are_refused_by_the_config_check(override, message):
    """train_settings runs before any data or model loads (train.py's preflight, and the job's first step)."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train_settings(compose(*override.split()))


@pytest.mark.parametrize(
    "override, key",
    [
        ("method.loss.beta=abc", "method.loss.beta"),
        ("seed=abc", "seed"),
        ("trainer.max_stpes=10", "max_stpes"),
        ("loss.beta=0.2", "loss"),
    ],
)
def test_wrong_types_and_unknown_keys_are_refused_while_composing(override, key):
    """The typed schema (config/schema.py) refuses these before any job code runs."""
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as err:
        compose(override)
    assert key in f"{err.value} {err.value.__cause__}"


@pytest.mark.parametrize("override", ["loss=nonexistent", "model=gpt5", "method=rlhf", "strategy=deepspeed"])
def test_unknown_config_choices_are_refused_by_name(override):
    from hydra.errors import MissingConfigException

    group, choice = override.split("=")
    with pytest.raises(MissingConfigException, match=f"{group}/{choice}"):
        compose(override)
