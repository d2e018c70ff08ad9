"""The settings of the baselines that train no LoRA adapter (docs/baselines.md): the decoding-time methods
(``method.decoding``) and BiasEdit's editor (``method.editing``)."""

from dataclasses import dataclass, field

from omegaconf import MISSING

from bias_unlearn.config.checks import kinds_list, one_of
from bias_unlearn.config.errors import ConfigError

DECODING_METHODS = ("self_debias", "cafie")  # decoding-time methods (bias_unlearn/decoding/): nothing trains
DECODING_TYPES = ("gender", "profession", "race", "religion")


@dataclass
class DecodingConfig:
    """A decoding-time method: how it changes the model's next-token distributions (docs/baselines.md). ``decay`` is
    Self-Debias's lambda (50) or CAFIE's (1000); ``epsilon`` Self-Debias's floor; ``alpha`` and ``gamma`` CAFIE's
    mixture and weight scale; ``bias_types`` whose prefixes (Self-Debias) or word lists (CAFIE) it uses."""

    kind: str = MISSING
    decay: float = 50.0
    epsilon: float = 0.01
    alpha: float = 0.99
    gamma: float = 1.0
    bias_types: list[str] = field(default_factory=lambda: list(DECODING_TYPES))
    micro_batch: int = 8

    def __post_init__(self):
        one_of("method.decoding.kind", self.kind, DECODING_METHODS)
        if not self.decay > 0:
            raise ConfigError(f"method.decoding.decay must be positive, got {self.decay}")
        if not 0 < self.epsilon <= 1:
            raise ConfigError(f"method.decoding.epsilon must lie in (0, 1], got {self.epsilon}")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"method.decoding.alpha must lie in [0, 1], got {self.alpha}")
        if not self.bias_types or any(bt not in DECODING_TYPES for bt in self.bias_types):
            raise ConfigError(
                f"method.decoding.bias_types must be some of {list(DECODING_TYPES)}, got {self.bias_types}"
            )
        if not isinstance(self.micro_batch, int) or self.micro_batch < 1:
            raise ConfigError(f"method.decoding.micro_batch must be a positive integer, got {self.micro_batch!r}")


@dataclass
class EditingConfig:
    """BiasEdit (docs/baselines.md): an editor network meta-trained on the train split that shifts the weights of the
    last ``layers`` MLP output projections. Defaults: BiasEdit's (n_blocks, lr, meta_lr, loc_coef, max_grad_norm);
    ``rank`` scaled down from 1920 to the offline model's size, ``n_edits`` and ``epochs`` to a CPU budget."""

    layers: int = 3
    rank: int = 256
    n_blocks: int = 2
    lr: float = 1e-6  # the editor's initial per-module step size
    meta_lr: float = 1e-5
    loc_coef: float = 4.0
    n_edits: int = 32  # examples per edit batch
    epochs: int = 3
    max_grad_norm: float = 1.0
    kinds: list[str] = field(default_factory=lambda: ["intrasentence"])  # BiasEdit trains on intrasentence only

    def __post_init__(self):
        for key in ("layers", "rank", "n_blocks", "n_edits", "epochs"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"method.editing.{key} must be a positive integer, got {value!r}")
        for key in ("lr", "meta_lr", "max_grad_norm"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"method.editing.{key} must be positive, got {getattr(self, key)}")
        if not self.loc_coef >= 0:
            raise ConfigError(f"method.editing.loc_coef must be >= 0, got {self.loc_coef}")
        kinds_list("method.editing.kinds", self.kinds)
