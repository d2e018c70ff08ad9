"""Every typed setting, one dataclass per config group: Hydra composes ``conf/`` onto these (a wrong type or an
unknown key is refused while composing), and ``OmegaConf.to_object`` builds them, which checks each value's range
in ``__post_init__``: one ``ConfigError`` naming the key, before any data or model loads.

The option names the checks accept live here too (the modules that act on them import them from here), so the
config layer depends on nothing above it.
"""

from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import MISSING

from bias_unlearn.config.baselines import DecodingConfig, EditingConfig
from bias_unlearn.config.checks import STEREOSET_KINDS, at_least, kinds_list, one_of
from bias_unlearn.config.errors import ConfigError, from_node

BIAS_TYPES = ("gender", "profession", "race", "religion")  # StereoSet's four bias types
MODEL_SOURCES = ("hub", "local", "offline")
DTYPES = ("auto", "fastest", "fp32", "float32", "bf16", "bfloat16", "fp16", "float16")
FORGET_LOSSES = ("npo", "ga", "ce", "dpo")  # NPO, gradient ascent, cross-entropy (SFT), DPO
LOGP_REDUCTIONS = ("mean", "sum")
NPO_REDUCTIONS = ("example", "batch")
CE_REDUCTIONS = ("example", "token")
SCORE_MODES = ("mean", "sum")
START_MODES = ("prepend", "legacy")
MIN_BETA = 1e-3


# --- the model --------------------------------------------------------------------------------------------------
@dataclass
class LoraConfig:
    r: int = 8
    alpha: float = 16
    dropout: float = 0.1
    target_modules: Any = MISSING  # a list of module names, a regex string, or all-linear

    def __post_init__(self):
        at_least("model.lora.r", self.r, 1)
        if not self.alpha > 0:
            raise ConfigError(f"model.lora.alpha must be positive, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.lora.dropout must lie in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ConfigError("model.lora.target_modules is empty: name the layers the adapter trains")


@dataclass
class ModelConfig:
    name: str = MISSING
    source: str = "hub"  # hub | local | offline
    name_or_path: str = MISSING
    revision: str | None = None
    dtype: str = "auto"  # auto: bf16 on GPU, fp32 on CPU; fastest: also bf16 on a CPU where it pays
    lr: float = 5e-5  # optim.lr follows it
    lora: LoraConfig = field(default_factory=LoraConfig)

    def __post_init__(self):
        one_of("model.source", self.source, MODEL_SOURCES)
        one_of("model.dtype", self.dtype, DTYPES)
        if not self.lr > 0:
            raise ConfigError(f"model.lr must be positive, got {self.lr}")


# --- benchmark data ---------------------------------------------------------------------------------------------
@dataclass
class StereoSetSource:
    source: str = "offline"  # offline | hub | local
    path: str | None = None
    kinds: list[str] = field(default_factory=lambda: list(STEREOSET_KINDS))

    def __post_init__(self):
        kinds_list("data.stereoset.kinds", self.kinds)


@dataclass
class SplitConfig:
    mode: str = "by_target"  # by_target: one file split three ways | explicit: a local train file + the eval file
    seed: int = 0
    fractions: list[float] = field(default_factory=lambda: [0.6, 0.15, 0.25])
    dev_fraction: float = 0.1
    train_path: str | None = None  # explicit: StereoSet's test file (the paper trains on it)

    def __post_init__(self):
        one_of("data.split.mode", self.mode, ("by_target", "explicit"))
        if self.mode == "explicit" and not self.train_path:
            raise ConfigError(
                "data.split.mode=explicit needs data.split.train_path (a local StereoSet file, e.g. "
                "StereoSet's test.json, whose targets the evaluation file does not share)"
            )


@dataclass
class SourceConfig:
    source: str = "offline"
    path: str | None = None


@dataclass
class GeneralConfig:
    source: str = "offline"  # offline | hub | local
    tasks: list[str] = field(default_factory=lambda: ["wiki", "piqa", "mmlu", "openbookqa"])
    max_items: int | None = 300
    paths: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self):
        if self.max_items is not None:
            at_least("data.general.max_items", self.max_items, 1)


@dataclass
class BBQSource:
    source: str = "offline"  # offline (accuracies only) | local (original files: bias scores)
    paths: list[str] | None = None


@dataclass
class DataConfig:
    stereoset: StereoSetSource = field(default_factory=StereoSetSource)
    split: SplitConfig = field(default_factory=SplitConfig)
    crows_pairs: SourceConfig = field(default_factory=SourceConfig)
    general: GeneralConfig = field(default_factory=GeneralConfig)
    bbq: BBQSource = field(default_factory=BBQSource)


# --- scoring ----------------------------------------------------------------------------------------------------
@dataclass
class ScoringConfig:
    mode: str = "mean"  # sentence score: mean (bias-bench, BiasUnlearn) or sum (lm-evaluation-harness) of log-probs
    start: str = "prepend"  # prepend: [start] + ids in one pass | legacy: bias-bench's two passes
    batch_size: int = 64
    harness_batch_size: int = 16  # requests a lm-evaluation-harness forward (general ability)
    share_prefix: Any = "auto"  # run an example's shared prefix once (exact): true | false | auto
    n_bootstrap: int = 1000  # replicates for the SS 95% interval (0: none)
    seed: int = 0

    def __post_init__(self):
        one_of("scoring.mode", self.mode, SCORE_MODES)
        one_of("scoring.start", self.start, START_MODES)
        for key in ("batch_size", "harness_batch_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"scoring.{key} must be a positive integer, got {value!r}")
        if not isinstance(self.n_bootstrap, int) or self.n_bootstrap < 0:
            raise ConfigError(f"scoring.n_bootstrap must be an integer >= 0, got {self.n_bootstrap!r}")
        if not isinstance(self.share_prefix, bool) and self.share_prefix != "auto":
            raise ConfigError(f"scoring.share_prefix must be true, false or auto, got {self.share_prefix!r}")

    @classmethod
    def from_config(cls, node) -> "ScoringConfig":
        """From a saved run's ``scoring`` node; unknown keys are refused."""
        return from_node(cls, node, "scoring")

    def describe(self) -> str:
        return f"mode={self.mode}, start={self.start}"

    def as_dict(self) -> dict:
        return asdict(self)


# --- the method: its objective, pairing, swapping and adversarial slice ----------------------------------------
@dataclass
class LossConfig:
    """The objective a1 * forget + a2 * retain + a3 * KL (docs/method.md)."""

    forget: str = "npo"  # npo | ga | ce | dpo
    forget_weight: float = 0.4
    retain_weight: float = 0.4
    kl_weight: float = 0.2
    beta: float = 0.1  # NPO / DPO temperature
    logp_reduction: str = "mean"  # sequence log-prob: mean or sum of token log-probs
    npo_reduction: str = "example"  # example (paper) | batch (authors' code)
    retain_reduction: str = "example"  # cross-entropy: example (paper eq. 2, authors' code) | token (pooled)

    def __post_init__(self):
        weights = {
            "forget_weight": self.forget_weight,
            "retain_weight": self.retain_weight,
            "kl_weight": self.kl_weight,
        }
        for key, weight in weights.items():
            if not weight >= 0:
                raise ConfigError(f"method.loss.{key} must be >= 0, got {weight}")
        if not any(w > 0 for w in weights.values()):
            raise ConfigError("method.loss weights are all zero: nothing to train")
        one_of("method.loss.forget", self.forget, FORGET_LOSSES)
        one_of("method.loss.logp_reduction", self.logp_reduction, LOGP_REDUCTIONS)
        one_of("method.loss.npo_reduction", self.npo_reduction, NPO_REDUCTIONS)
        one_of("method.loss.retain_reduction", self.retain_reduction, CE_REDUCTIONS)
        if not self.beta >= MIN_BETA:
            raise ConfigError(
                f"method.loss.beta must be at least {MIN_BETA} (NPO and DPO scale by 1 / beta: a smaller "
                f"beta makes the forget loss explode), got {self.beta}"
            )


@dataclass
class MethodConfig:
    """A whole method (conf/method/<name>.yaml): its declared name, objective, how chunks pair sentences, whether
    bias types swap roles, and the share of each type's anti-stereotypes that joins its forget set; or a
    decoding-time method (``decoding``), which trains nothing and changes how the model scores and generates."""

    name: str = MISSING
    loss: LossConfig = field(default_factory=LossConfig)
    decoding: DecodingConfig | None = None
    editing: EditingConfig | None = None  # BiasEdit: an editor network shifts MLP weights (bias_unlearn/editing/)
    adversarial_fraction: float = 0.25
    paired: bool = False  # the retain batch is the forget batch's partner sentences, 1 : 1 (DPO, SFT)
    swapping: bool = True  # per-type swapping of forget and retain when a type's dev SS crosses 50

    def __post_init__(self):
        if not 0 <= self.adversarial_fraction < 1:
            raise ConfigError(f"method.adversarial_fraction must lie in [0, 1), got {self.adversarial_fraction}")
        if self.loss.forget == "dpo" and not self.paired:
            raise ConfigError(
                "method.loss.forget=dpo needs method.paired=true: DPO compares each stereotype with its "
                "own anti-stereotype"
            )
        if self.paired and self.adversarial_fraction:
            raise ConfigError(
                "method.paired needs method.adversarial_fraction=0: an adversarial forget sentence "
                "would be paired with its own stereotype"
            )


# --- how a step is computed, and the optimiser ------------------------------------------------------------------
@dataclass
class ComputeConfig:
    """How a step is computed. Each switch changes the cost, not the losses (tests/unlearning/test_engine.py)."""

    sparse_head: bool = True  # LM head + log-softmax only where a loss is (models/lm_head.py; exact architectures)
    cache_kl_reference: bool = True  # the reference's hidden states of each KL sequence computed once and kept
    pack_sequences: bool = True  # with sparse_head: the policy forward on packed rows, no padding (models/packing.py)
    fast_dropout: bool = True  # LoRA dropout masks from 16-bit draws on CPU (models/dropout.py): same distribution
    fused_lora: Any = "auto"  # the LoRA branch's scale and add in one addmm: true | false | auto (per machine)
    fused_optimizer: bool = True  # AdamW's fused kernel: one call per parameter, not ~12 (same update, float rounding)

    def __post_init__(self):
        if not isinstance(self.fused_lora, bool) and self.fused_lora != "auto":
            raise ConfigError(f"compute.fused_lora must be true, false or auto, got {self.fused_lora!r}")

    @classmethod
    def plain(cls) -> "ComputeConfig":
        """Every switch off: the step as it was before the speed work (benchmarks compare against it)."""
        return cls(
            sparse_head=False,
            cache_kl_reference=False,
            pack_sequences=False,
            fast_dropout=False,
            fused_lora=False,
            fused_optimizer=False,
        )


@dataclass
class OptimConfig:
    lr: float = 5e-5
    weight_decay: float = 0.0
    warmup_steps: int = 10
    total_steps: int = 1000  # the linear schedule decays to zero here (conf/train.yaml: trainer.max_steps)

    def __post_init__(self):
        if not self.lr > 0:
            raise ConfigError(f"optim.lr (model.lr) must be positive, got {self.lr}")
        at_least("optim.weight_decay", self.weight_decay, 0)
        at_least("optim.warmup_steps", self.warmup_steps, 0)
        at_least("optim.total_steps", self.total_steps, 1)
