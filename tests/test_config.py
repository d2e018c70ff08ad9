"""The real configs: every model, loss and method composes, validates, and names the method that actually trains."""
from __future__ import annotations

from pathlib import Path

import pytest

from bias_unlearn.errors import ConfigError
from bias_unlearn.methods import method_name
from bias_unlearn.training import validate_config
from tests.helpers import compose_config

ROOT = Path(__file__).resolve().parents[1]
MODELS = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))
LOSSES = sorted(p.stem for p in (ROOT / "conf" / "loss").glob("*.yaml"))
METHODS = sorted(p.stem for p in (ROOT / "conf" / "method").glob("*.yaml"))
TRAINERS = sorted(p.stem for p in (ROOT / "conf" / "trainer").glob("*.yaml"))
BIAS_UNLEARN_ABLATIONS = {"no_kl", "no_retain", "no_adv", "no_swap"}


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


@pytest.mark.parametrize("method", METHODS)
def test_every_method_alone_names_itself(method):
    cfg = compose(f"method={method}")
    settings = validate_config(cfg)
    assert method_name(settings.objective) == method
    baseline = method in ("cda", "sft", "dpo", "ga", "npo")
    assert cfg.callbacks.swapping.enabled is not baseline  # only BiasUnlearn and its ablations swap
    assert cfg.train.paired == (method in ("sft", "dpo"))
    expected = {"bias_unlearn": ("npo", 0.4, 0.4, 0.2), "cda": ("npo", 0.0, 1.0, 0.0), "sft": ("ce", 0.5, 0.5, 0.0),
                "dpo": ("dpo", 1.0, 0.0, 0.0), "ga": ("ga", 1.0, 0.0, 0.0), "npo": ("npo", 1.0, 0.0, 0.0),
                "no_retain": ("npo", 0.4, 0.0, 0.2), "no_kl": ("npo", 0.4, 0.4, 0.0), "no_adv": ("npo", 0.4, 0.4, 0.2)}
    loss = settings.loss
    assert (loss.forget, loss.forget_weight, loss.retain_weight, loss.kl_weight) == expected[method]
    assert (cfg.loss.adversarial_fraction > 0) == (method in ("bias_unlearn", "no_retain", "no_kl"))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_and_loss_pair_reports_what_trained(method, loss):
    """`loss=no_kl` trains without KL and must be reported as no_kl (it was reported as bias_unlearn), and
    `method=no_kl loss=full` trains with KL and must not be reported as no_kl."""
    cfg = compose(f"method={method}", f"loss={loss}")
    try:
        settings = validate_config(cfg)
    except ConfigError as err:  # only pairings that cannot train are refused, and they say why
        assert ("train.paired" in str(err) and cfg.loss.forget == "dpo") or "adversarial" in str(err), str(err)
        return
    name, obj = method_name(settings.objective), settings.objective
    parts = set(name.split("+"))
    if parts <= BIAS_UNLEARN_ABLATIONS or name == "bias_unlearn":  # BiasUnlearn and its ablations
        assert obj.forget == "npo" and obj.forget_weight > 0 and not obj.paired
        assert ("no_kl" in parts) == (obj.kl_weight == 0)
        assert ("no_retain" in parts) == (obj.retain_weight == 0)
        assert ("no_adv" in parts) == (obj.adversarial_fraction == 0)
        assert ("no_swap" in parts) == (not obj.swapping)
    elif name == "cda":
        assert obj.forget_weight == 0 and obj.retain_weight > 0 and obj.kl_weight == 0 and not obj.swapping
    elif name in ("npo", "ga"):
        assert obj.forget == name and obj.retain_weight == obj.kl_weight == 0 and not obj.swapping
    elif name in ("sft", "dpo"):
        assert obj.paired and {"sft": "ce", "dpo": "dpo"}[name] == obj.forget and not obj.swapping
    else:
        assert name == "custom"
    own = {"bias_unlearn": "full", "no_kl": "no_kl", "no_retain": "no_retain", "no_adv": "no_adv"}.get(method, method)
    if loss == own:
        assert name == method
    if (method, loss) == ("no_kl", "full"):
        assert name == "bias_unlearn" and obj.kl_weight == 0.2
    if (method, loss) == ("bias_unlearn", "no_kl"):
        assert name == "no_kl" and obj.kl_weight == 0.0


@pytest.mark.parametrize("trainer", TRAINERS)
def test_no_gradient_clipping_by_default(trainer):
    """The paper and the authors' code do not clip (the old default clipped every step at norm 1.0)."""
    from hydra.utils import instantiate

    cfg = compose(f"trainer={trainer}")
    assert cfg.trainer.gradient_clip_val is None
    if trainer in ("auto", "cpu", "default"):
        assert instantiate(cfg.trainer, logger=False, accelerator="cpu").gradient_clip_val is None


def test_the_delivery_bar_is_the_dev_objectives_lms_bar():
    """The adapter a run delivers and the run a preset sweep chooses read "LMS barely moves" the same way."""
    from bias_unlearn.callbacks import AdapterCheckpoint
    from bias_unlearn.sweep import DEV_LMS_BAR

    cfg = compose()
    assert cfg.callbacks.adapter_checkpoint.max_lms_drop == DEV_LMS_BAR == 1.0
    assert AdapterCheckpoint("/tmp/unused").max_lms_drop == DEV_LMS_BAR


def test_paper_defaults_for_retention_and_clipping_are_named_options():
    cfg = compose("loss.retain_reduction=token", "trainer.gradient_clip_val=1.0")
    assert validate_config(cfg).loss.retain_reduction == "token" and cfg.trainer.gradient_clip_val == 1.0
    assert validate_config(compose()).loss.retain_reduction == "example"


@pytest.mark.parametrize("override, message", [
    ("eval.adapter=bset", "eval.adapter must be one of"),
    ("scoring.mode=median", "scoring.mode must be one of"),
    ("scoring.start=bos", "scoring.start must be one of"),
    ("scoring.batch_size=0", "scoring.batch_size"),
    ("+scoring.share_prefixes=false", "unknown scoring option"),
    ("loss.retain_reduction=sentence", "loss.retain_reduction"),
    ("loss.forget_weight=-1", "loss.forget_weight must be >= 0"),
    ("train.retain_batch=1", "must be larger than train.forget_batch"),
    ("callbacks.early_stopping.threshold=50", "threshold must lie in (0, 50)"),
    ("loss.forget=dpo", "needs train.paired=true"),
    ("method=dpo loss.adversarial_fraction=0.25", "needs loss.adversarial_fraction=0"),
    ("model.lr=0", "optim.lr"),
    ("loss.forget_weight=0 loss.retain_weight=0 loss.kl_weight=0", "all zero"),
    ("trainer.strategy=fsdp", "use strategy=fsdp"),
    ("+compute.sparse_heads=false", "unknown compute option"),
    ("eval.kinds=[intrasentance]", "eval.kinds must list StereoSet kinds"),
    ("train.kinds=[]", "train.kinds must list StereoSet kinds"),
    ("seed=abc", "seed must be an integer"),
    ("train.adversarial_fraction=0", "follows loss.adversarial_fraction"),  # would train no_adv, named bias_unlearn
    ("train.kl_batch=0", "leaves the KL term"),
])
def test_bad_settings_are_refused_by_the_config_check(override, message):
    """validate_config runs before any data or model loads (train.py's first step)."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_config(compose(*override.split()))


@pytest.mark.parametrize("override", ["loss=nonexistent", "model=gpt5", "method=rlhf", "strategy=deepspeed"])
def test_unknown_config_choices_are_refused_by_name(override):
    from hydra.errors import MissingConfigException

    group, choice = override.split("=")
    with pytest.raises(MissingConfigException, match=f"{group}/{choice}"):
        compose(override)
