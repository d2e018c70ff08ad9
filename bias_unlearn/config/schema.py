"""The jobs' config schemas (Hydra structured configs) and the one place a composed config becomes typed settings.

``conf/train.yaml``, ``evaluate.yaml`` and ``report.yaml`` start their defaults list with ``train_schema`` /
``evaluate_schema`` / ``report_schema`` (registered here), so Hydra composes every group onto these dataclasses:
a value of the wrong type or a misspelt key is refused while composing. ``train_settings`` /
``evaluate_settings`` then build the dataclasses (each checks its ranges) and the checks that span groups.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.config.settings import (
    ComputeConfig,
    DataConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    ScoringConfig,
    at_least,
    kinds_list,
    one_of,
)

TYPE_WEIGHTS = ("size", "equal")  # how a forget / retain draw picks its bias type (data/streams.py)
BATCH_SCOPES = ("per_device", "global")  # batch sizes per process, or split over the processes
ADAPTER_CHOICES = ("best", "last")  # the delivered adapter: the delivery rule's choice, or the last checkpoint
BALANCE_MEASURES = ("chi2", "max_excess")  # how the delivery rule measures closeness to balance (balance.py)
EVAL_SPLITS = ("train", "dev", "test", "all")
BENCHMARKS = ("stereoset", "crows_pairs", "bbq", "general")


@dataclass
class TrainStreamConfig:
    """The LightningDataModule: chunked forget / retain / KL streams and the dev split."""

    _target_: str = "bias_unlearn.data.datamodule.UnlearningDataModule"
    kinds: list[str] = field(default_factory=lambda: ["intrasentence", "intersentence"])
    forget_batch: int = 4
    retain_batch: int = 28
    kl_batch: int = 28
    batch_scope: str = "per_device"
    type_weights: str = "size"
    dev_batch: int = 64
    seed: int = 0

    def __post_init__(self):
        kinds_list("train.kinds", self.kinds)
        at_least("train.forget_batch", self.forget_batch, 1)
        at_least("train.retain_batch", self.retain_batch, 1)
        at_least("train.kl_batch", self.kl_batch, 0)
        at_least("train.dev_batch", self.dev_batch, 1)
        one_of("train.batch_scope", self.batch_scope, BATCH_SCOPES)
        one_of("train.type_weights", self.type_weights, TYPE_WEIGHTS)


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
    precision: Any = "32-true"

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
    early_stopping: EarlyStoppingNode = field(default_factory=EarlyStoppingNode)
    adapter_checkpoint: AdapterCheckpointNode = field(default_factory=AdapterCheckpointNode)
    resume_checkpoint: ResumeCheckpointNode | None = None
    non_finite: NonFiniteNode | None = None
    progress_bar: dict[str, Any] | None = None
    lr_monitor: dict[str, Any] | None = None


@dataclass
class PathsConfig:
    output_dir: str = MISSING


@dataclass
class TrainJob:
    task_name: str = "train"
    seed: int = 0
    resume: str | None = None
    threads: int | None = None
    grid_version: int | None = None  # experiment grids say which version of themselves they are
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainStreamConfig = field(default_factory=TrainStreamConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    logger: dict[str, Any] | None = None
    paths: PathsConfig = field(default_factory=PathsConfig)


@dataclass
class EvaluateJob:
    task_name: str = "evaluate"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int | None = None
    adapter: str | None = None
    split: str = "test"
    benchmarks: list[str] = field(default_factory=lambda: ["stereoset", "crows_pairs", "bbq"])
    runs: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)


@dataclass
class ReportJob:
    sweep_dir: str = MISSING  # a train.py multirun directory
    out_dir: str | None = None
    reference: str = "bias_unlearn"


def register() -> None:
    """Make the schemas known to Hydra (train.py, evaluate.py, report.py and the tests' compose call this)."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainJob)
    store.store(name="evaluate_schema", node=EvaluateJob)
    store.store(name="report_schema", node=ReportJob)


@dataclass(frozen=True)
class TrainSettings:
    """A training config as typed, validated settings (everything the job reads before its model loads)."""

    model: ModelConfig
    scoring: ScoringConfig
    method: MethodConfig
    train: TrainStreamConfig
    trainer: TrainerConfig  # before optim: optim.total_steps follows trainer.max_steps
    compute: ComputeConfig
    optim: OptimConfig
    eval: EvalConfig
    callbacks: CallbacksConfig


def unknown_keys(node, prefix: str) -> list[str]:
    """Keys a ``+key=value`` override added to a typed node (Hydra's ``+`` opens the node for one key)."""
    schema = OmegaConf.get_type(node)
    known = set(getattr(schema, "__dataclass_fields__", {}) or node.keys())
    out = [f"{prefix}.{key}" for key in node.keys() if key not in known]
    for key in node.keys():
        child = node._get_node(key)
        if key in known and OmegaConf.is_dict(child) and not child._is_none():
            out += unknown_keys(child, f"{prefix}.{key}")
    return out


def typed(cfg: DictConfig, key: str):
    """The dataclass at ``cfg.<key>`` (its checks run on the way)."""
    node = OmegaConf.select(cfg, key)
    if node is None:
        raise ConfigError(f"{key} is missing from the config")
    unknown = unknown_keys(node, key)
    if unknown:
        raise ConfigError(
            f"{unknown[0]}: no such setting (the {key} settings are "
            f"{sorted(getattr(OmegaConf.get_type(node), '__dataclass_fields__', {}))})"
        )
    return OmegaConf.to_object(node)


def with_run_dir(cfg: DictConfig) -> DictConfig:
    """``cfg``, or a copy whose run directory is a placeholder where it cannot resolve yet (a config composed outside
    a Hydra run): the settings name paths under it, and none of them is checked by where it points."""
    try:
        OmegaConf.select(cfg, "paths.output_dir", throw_on_resolution_failure=True)
        return cfg
    except InterpolationResolutionError:
        cfg = cfg.copy()
        cfg.paths.output_dir = "<the run directory>"
        return cfg


def train_settings(cfg: DictConfig) -> TrainSettings:
    """Every setting of a training run, checked, and the checks that need two groups at once."""
    cfg = with_run_dir(cfg)
    settings = TrainSettings(**{key: typed(cfg, key) for key in TrainSettings.__dataclass_fields__})
    typed(cfg, "data")
    if not isinstance(cfg.seed, int):
        raise ConfigError(f"seed must be an integer, got {cfg.seed!r}")
    method, train = settings.method, settings.train
    if not method.paired and train.retain_batch <= train.forget_batch:
        raise ConfigError(
            f"train.retain_batch ({train.retain_batch}) must be larger than train.forget_batch "
            f"({train.forget_batch}): BiasUnlearn's data chunk is 1 : n with n > 1"
        )
    if train.kl_batch == 0 and method.loss.kl_weight > 0:
        raise ConfigError(
            f"train.kl_batch=0 leaves the KL term (method.loss.kl_weight={method.loss.kl_weight}) "
            "without sequences: set method.loss.kl_weight=0 (or method=no_kl) too"
        )
    return settings


def evaluate_settings(cfg: DictConfig) -> tuple[ModelConfig, ScoringConfig]:
    """The evaluation job's model and scoring settings, checked with its own knobs."""
    one_of("split", cfg.split, EVAL_SPLITS)
    unknown = [name for name in cfg.benchmarks if name not in BENCHMARKS]
    if unknown or not cfg.benchmarks:
        raise ConfigError(f"benchmarks must be some of {list(BENCHMARKS)}, got {list(cfg.benchmarks)}")
    typed(cfg, "data")
    return typed(cfg, "model"), typed(cfg, "scoring")


register()
