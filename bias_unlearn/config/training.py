"""The training job's own typed settings: the data stream, the Trainer, the callbacks and what is evaluated (the
groups every job shares are in config/settings.py). Each checks its ranges in ``__post_init__``."""

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from bias_unlearn.config.checks import at_least, kinds_list, one_of
from bias_unlearn.config.errors import ConfigError
from bias_unlearn.config.settings import BIAS_TYPES

TYPE_WEIGHTS = ("size", "equal", "adaptive")  # how a forget / retain draw picks its bias type (data/streams.py)


BATCH_SCOPES = ("per_device", "global")  # batch sizes per process, or split over the processes


ADAPTER_CHOICES = ("best", "last")  # the delivered adapter: the delivery rule's choice, or the last checkpoint


BALANCE_MEASURES = ("chi2", "max_excess")  # how the delivery rule measures closeness to balance (balance.py)


@dataclass
class TrainStreamConfig:
    """The LightningDataModule: chunked forget / retain / KL streams and the dev split."""

    _target_: str = "bias_unlearn.data.datamodule.UnlearningDataModule"
    kinds: list[str] = field(default_factory=lambda: ["intrasentence", "intersentence"])
    dev_kinds: list[str] = field(default_factory=lambda: ["intrasentence"])
    forget_batch: int = 4
    retain_batch: int = 28
    kl_batch: int = 28
    batch_scope: str = "per_device"
    type_weights: str = "size"
    counterfactual_types: list[str] = field(default_factory=list)
    dev_batch: int = 64
    seed: int = 0

    def __post_init__(self):
        kinds_list("train.kinds", self.kinds)
        kinds_list("train.dev_kinds", self.dev_kinds)
        at_least("train.forget_batch", self.forget_batch, 1)
        at_least("train.retain_batch", self.retain_batch, 1)
        at_least("train.kl_batch", self.kl_batch, 0)
        at_least("train.dev_batch", self.dev_batch, 1)
        one_of("train.batch_scope", self.batch_scope, BATCH_SCOPES)
        one_of("train.type_weights", self.type_weights, TYPE_WEIGHTS)
        for bias_type in self.counterfactual_types:
            one_of("train.counterfactual_types", bias_type, BIAS_TYPES)


@dataclass
class GenerationConfig:
    max_new_tokens: int = 20
    prompts: list[str] = field(default_factory=list)

    def __post_init__(self):
        at_least("eval.generation.max_new_tokens", self.max_new_tokens, 1)


@dataclass
class EvalConfig:
    before: bool = True  # score the test split with the base model first
    after: bool = True  # ... and with the delivered adapter at the end
    kinds: list[str] = field(default_factory=lambda: ["intrasentence"])
    adapter: str = "best"  # best (the delivery rule) | last
    crows_pairs: bool = False
    general: bool = False
    bbq: bool = False
    cache_before: bool = False
    generation: GenerationConfig = field(default_factory=GenerationConfig)

    def __post_init__(self):
        kinds_list("eval.kinds", self.kinds)
        one_of("eval.adapter", self.adapter, ADAPTER_CHOICES)


@dataclass
class TrainerConfig:
    """Lightning's Trainer (instantiated with every key): the knobs this project sets, typed."""

    _target_: str = "lightning.pytorch.Trainer"
    default_root_dir: str | None = None
    max_steps: int = 1000
    val_check_interval: Any = 50  # dev evaluation every N steps (an int), or a fraction of an epoch (a float <= 1)
    check_val_every_n_epoch: int | None = None
    num_sanity_val_steps: int = 0
    log_every_n_steps: int = 1
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = 1
    enable_checkpointing: bool = False
    enable_progress_bar: bool | None = None
    accelerator: str = "auto"
    strategy: Any = "auto"
    devices: Any = 1
    num_nodes: int = 1
    precision: Any = "auto"  # auto: models/precision.py

    def __post_init__(self):
        at_least("trainer.max_steps", self.max_steps, 1, " (a positive number of steps)")
        interval = self.val_check_interval
        if (
            isinstance(interval, bool)
            or not isinstance(interval, (int, float))
            or not (
                (isinstance(interval, int) and interval >= 1) or (isinstance(interval, float) and 0 < interval <= 1)
            )
        ):
            raise ConfigError(
                f"trainer.val_check_interval must be a number of steps >= 1 (or a fraction of an epoch "
                f"in (0, 1]), got {interval!r}"
            )
        if self.gradient_clip_val is not None and not self.gradient_clip_val > 0:
            raise ConfigError(
                f"trainer.gradient_clip_val must be positive (or null: no clipping), got {self.gradient_clip_val}"
            )
        at_least("trainer.accumulate_grad_batches", self.accumulate_grad_batches, 1)
        if isinstance(self.strategy, str) and self.strategy.startswith("fsdp"):
            raise ConfigError(
                f"trainer.strategy={self.strategy} is Lightning's plain FSDP (no LoRA-aware wrap "
                "policy): use strategy=fsdp (conf/strategy/fsdp.yaml)"
            )


@dataclass
class SwappingNode:
    _target_: str = "bias_unlearn.unlearning.callbacks.DynamicSwapping"  # enabled by method.swapping


@dataclass
class TypeWeightingNode:
    _target_: str = "bias_unlearn.unlearning.callbacks.AdaptiveTypeWeights"  # acts when train.type_weights=adaptive
    threshold: float = 2.0
    max_factor: float = 3.0

    def __post_init__(self):
        if not self.max_factor > 0:
            raise ConfigError(f"callbacks.type_weighting.max_factor must be positive, got {self.max_factor}")


@dataclass
class EarlyStoppingNode:
    _target_: str = "bias_unlearn.unlearning.callbacks.BalancedStereotypeStopping"
    threshold: float = 2.0
    enabled: bool = True

    def __post_init__(self):
        if not 0 < self.threshold < 50:
            raise ConfigError(f"callbacks.early_stopping.threshold must lie in (0, 50), got {self.threshold}")


@dataclass
class AdapterCheckpointNode:
    _target_: str = "bias_unlearn.unlearning.callbacks.AdapterCheckpoint"
    dirpath: str = MISSING
    save_best: bool = True
    max_lms_drop: float | None = 1.0
    balance: str = "chi2"
    threshold: float = 2.0

    def __post_init__(self):
        one_of("callbacks.adapter_checkpoint.balance", self.balance, BALANCE_MEASURES)
        if self.max_lms_drop is not None:
            at_least("callbacks.adapter_checkpoint.max_lms_drop", self.max_lms_drop, 0)


@dataclass
class ResumeCheckpointNode:
    _target_: str = "bias_unlearn.unlearning.callbacks.ResumeCheckpoint"
    dirpath: str = MISSING
    enabled: bool = True


@dataclass
class NonFiniteNode:
    _target_: str = "bias_unlearn.unlearning.callbacks.NonFiniteGuard"
    enabled: bool = True


@dataclass
class CallbacksConfig:
    """Ours typed; Lightning's progress bar and learning-rate monitor as given (null leaves one out)."""

    swapping: SwappingNode = field(default_factory=SwappingNode)
    type_weighting: TypeWeightingNode | None = None
    early_stopping: EarlyStoppingNode = field(default_factory=EarlyStoppingNode)
    adapter_checkpoint: AdapterCheckpointNode = field(default_factory=AdapterCheckpointNode)
    resume_checkpoint: ResumeCheckpointNode | None = None
    non_finite: NonFiniteNode | None = None
    progress_bar: dict[str, Any] | None = None
    lr_monitor: dict[str, Any] | None = None
