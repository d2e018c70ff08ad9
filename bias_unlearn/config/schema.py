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

from bias_unlearn.config.baselines import DECODING_METHODS
from bias_unlearn.config.errors import ConfigError
from bias_unlearn.config.settings import (
    ComputeConfig,
    DataConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    ScoringConfig,
    one_of,
)
from bias_unlearn.config.training import CallbacksConfig, EvalConfig, TrainerConfig, TrainStreamConfig

EVAL_SPLITS = ("train", "dev", "test", "all")
BENCHMARKS = ("stereoset", "crows_pairs", "bbq", "general")


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
    cache: bool = False  # side effects through the cache training runs share (eval/side_effect_cache.py)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    method: MethodConfig | None = None  # method=self_debias|cafie: score under a decoding-time method


@dataclass
class ReportJob:
    sweep_dir: str = MISSING  # a train.py multirun directory
    out_dir: str | None = None
    reference: str = "bias_unlearn"


@dataclass
class ExportJob:
    run: str = MISSING  # a finished training run directory
    out: str = MISSING  # a new or empty folder
    merged: bool = True
    push_to_hub: str | None = None
    private: bool = True
    device: str = "cpu"


def register() -> None:
    """Make the schemas known to Hydra (train.py, evaluate.py, report.py and the tests' compose call this)."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainJob)
    store.store(name="evaluate_schema", node=EvaluateJob)
    store.store(name="report_schema", node=ReportJob)
    store.store(name="export_schema", node=ExportJob)


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
    if cfg.get("cache") and (cfg.get("adapter") or cfg.get("runs")):
        raise ConfigError(
            "cache=true keeps the side effects of the model itself (or under method=): not with adapter= (a trained "
            "model's side effects are its own) nor runs= (each run's eval.cache_before decides there)"
        )
    method = cfg.get("method")
    if method is not None:
        if method.get("decoding") is None:
            raise ConfigError(
                f"method={method.name} trains: run it with train.py; evaluate.py method= takes a decoding-time "
                f"method ({', '.join(DECODING_METHODS)})"
            )
        typed(cfg, "method")
    return typed(cfg, "model"), typed(cfg, "scoring")


register()
