"""Trainer configs: the strategy group (auto | ddp | fsdp) composes with any trainer and instantiates; trainer=gpu's
precision trains fp32 LoRA adapters with fp32 AdamW state over a frozen bf16 base (and bf16-true would not)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, SingleDeviceStrategy

from tests.helpers import ROOT, compose_config

FSDP_TARGET = "bias_unlearn.models.fsdp.lora_fsdp_strategy"
QUIET = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False}


def compose_train(tmp_path, *overrides):
    return compose_config("train", f"paths.output_dir={tmp_path}", *overrides)


# (overrides, strategy the trainer ends up with, accelerator, precision). strategy=auto sets nothing: the trainer's own
# strategy stands (Lightning's "auto"); strategy= is the one place a strategy is chosen (trainer=ddp|fsdp are gone).
CASES = [
    ([], "auto", "auto", "auto"),
    (["strategy=ddp"], "ddp", "auto", "auto"),
    (["strategy=fsdp"], "fsdp", "auto", "auto"),
    (["trainer=cpu", "strategy=auto"], "auto", "cpu", "auto"),
    (["trainer=cpu", "strategy=ddp"], "ddp", "cpu", "auto"),
    (["trainer=cpu", "strategy=fsdp"], "fsdp", "cpu", "auto"),
    (["trainer=gpu"], "auto", "gpu", "bf16-mixed"),
    (["trainer=gpu", "strategy=ddp"], "ddp", "gpu", "bf16-mixed"),
    (["trainer=gpu", "strategy=fsdp"], "fsdp", "gpu", "bf16-mixed"),
    (["experiment=paper_gpt2_large"], "ddp", "gpu", "bf16-mixed"),
    (["experiment=paper_llama3_8b"], "fsdp", "gpu", "bf16-mixed"),
    (["experiment=paper_llama3_8b", "strategy=ddp"], "ddp", "gpu", "bf16-mixed"),
]


@pytest.mark.parametrize(
    "overrides,strategy,accelerator,precision", CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_strategy_composes_with_every_trainer(tmp_path, overrides, strategy, accelerator, precision):
    cfg = compose_train(tmp_path, *overrides)
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    assert (cfg.trainer.accelerator, cfg.trainer.precision) == (accelerator, precision)
    if strategy == "auto":
        assert cfg.trainer.strategy == "auto" and cfg.trainer.devices == 1  # Lightning's default
    elif strategy == "ddp":
        assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == "auto"
    else:
        assert dict(cfg.trainer.strategy) == {"_target_": FSDP_TARGET} and cfg.trainer.devices == "auto"


def _trainer(cfg):
    """The configured Trainer; on a machine without CUDA a gpu trainer is built on the CPU (all else as configured)."""
    from bias_unlearn.models.precision import resolve_precision

    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        cfg.trainer.accelerator = "cpu"
    precision = resolve_precision(cfg.trainer.precision, "cpu", torch.float32)  # what the job resolves on this CPU
    return instantiate(cfg.trainer, **QUIET, precision=precision)


@pytest.mark.parametrize("trainer", ["cpu", "gpu"])
def test_strategy_ddp_instantiates(tmp_path, trainer):
    cfg = compose_train(tmp_path, f"trainer={trainer}", "strategy=ddp")
    built = _trainer(cfg)
    assert isinstance(built.strategy, DDPStrategy)  # one process per device; one device on a CPU-only machine
    assert built.num_devices == (torch.cuda.device_count() if built.strategy.root_device.type == "cuda" else 1)


@pytest.mark.parametrize("trainer", ["cpu", "gpu"])
def test_strategy_auto_keeps_lightnings_default(tmp_path, trainer):
    built = _trainer(compose_train(tmp_path, f"trainer={trainer}", "strategy=auto"))
    assert isinstance(built.strategy, SingleDeviceStrategy)


@pytest.mark.parametrize(
    "overrides", [["strategy=fsdp"], ["trainer=cpu", "strategy=fsdp"], ["trainer=gpu", "strategy=fsdp"]]
)
def test_strategy_fsdp_instantiates_with_the_lora_wrap_policy(tmp_path, overrides):
    from torch.distributed.fsdp.wrap import lambda_auto_wrap_policy

    from bias_unlearn.models.fsdp import LoraFSDPStrategy, ShardedNormClipping, wraps_apart

    cfg = compose_train(tmp_path, *overrides)
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy) and isinstance(strategy, LoraFSDPStrategy)
    policy = strategy.kwargs["auto_wrap_policy"]
    assert policy.func is lambda_auto_wrap_policy and policy.keywords == {"lambda_fn": wraps_apart}
    assert strategy.kwargs["use_orig_params"] is True
    # Lightning builds a Trainer with it on the CPU (only FSDPStrategy itself is checked for a GPU at construction;
    # plain strategy="fsdp" on cpu raises "The strategy `fsdp` requires a GPU accelerator"); FSDP itself needs CUDA,
    # so fit() would stop at setup_environment with LoraFSDPStrategy's own message. The precision is the config's.
    built = _trainer(cfg)
    assert isinstance(built.strategy, LoraFSDPStrategy)
    assert isinstance(built.precision_plugin, ShardedNormClipping)
    assert built.precision_plugin.precision == cfg.trainer.precision.replace("auto", "32-true")  # auto: this CPU's
    if cfg.trainer.precision == "bf16-mixed":  # FSDP computes in bf16; the sharded fp32 LoRA leaves stay the masters
        assert built.precision_plugin.mixed_precision_config.param_dtype == torch.bfloat16
        assert built.precision_plugin.convert_module(torch.nn.Linear(2, 2)).weight.dtype == torch.float32


def test_plain_lightning_fsdp_is_refused_on_cpu_and_ours_says_why_at_fit():
    from bias_unlearn.models.fsdp import lora_fsdp_strategy

    with pytest.raises(ValueError, match="requires a GPU accelerator"):
        L.Trainer(accelerator="cpu", strategy="fsdp", **QUIET)
    built = L.Trainer(accelerator="cpu", strategy=lora_fsdp_strategy(), **QUIET)
    with pytest.raises(ValueError, match="strategy=fsdp needs CUDA GPUs"):
        built.strategy.setup_environment()


def test_fsdp_clips_gradients_by_norm_through_the_root_module():
    """Lightning's FSDPPrecision refuses trainer.gradient_clip_val (clip by norm, a knob of every trainer config);
    ours asks the FSDP root, whose clip_grad_norm_ all-reduces the norm over the shards."""
    from lightning.pytorch.plugins.precision import FSDPPrecision
    from lightning.pytorch.utilities.enums import GradClipAlgorithmType
    from lightning.pytorch.utilities.exceptions import MisconfigurationException

    from bias_unlearn.models.fsdp import lora_fsdp_strategy

    optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters())
    with pytest.raises(MisconfigurationException, match="not supported"):
        FSDPPrecision("bf16-mixed").clip_gradients(optimizer, 1.0, GradClipAlgorithmType.NORM)

    class Root(torch.nn.Module):
        clipped = []

        def clip_grad_norm_(self, max_norm):
            self.clipped.append(max_norm)

    built = L.Trainer(
        accelerator="cpu", strategy=lora_fsdp_strategy(), precision="bf16-mixed", gradient_clip_val=1.0, **QUIET
    )
    with pytest.raises(RuntimeError, match="root module"):  # before setup the strategy holds no FSDP root
        built.precision_plugin.clip_gradients(optimizer, 1.0, GradClipAlgorithmType.NORM)
    built.strategy.model = Root()  # what FSDPStrategy.setup leaves there: the FSDP-wrapped module
    built.precision_plugin.clip_gradients(optimizer, 1.0, GradClipAlgorithmType.NORM)
    assert Root.clipped == [1.0]


@pytest.mark.parametrize("trainer", ["cpu", "gpu"])
def test_trainer_strategy_fsdp_string_is_refused_with_the_way(tmp_path, trainer):
    """trainer.strategy=fsdp would be Lightning's plain FSDP (no LoRA wrap policy: the bf16 base and the fp32 adapter
    in one flat parameter); the config check stops it and names strategy=fsdp. trainer.strategy=ddp stays allowed."""
    from bias_unlearn.config.errors import ConfigError
    from bias_unlearn.config.schema import train_settings as validate_config

    with pytest.raises(ConfigError, match="use strategy=fsdp"):
        validate_config(compose_train(tmp_path, f"trainer={trainer}", "trainer.strategy=fsdp"))
    assert compose_train(tmp_path, "trainer=cpu", "trainer.strategy=ddp").trainer.strategy == "ddp"


# --- precision: fp32 adapters and AdamW state over a bf16 frozen base --------------------------------------------


class TinyLoraModule(L.LightningModule):
    """A PEFT LoRA policy over a bf16 tiny Llama; AdamW over the trainable parameters, as BiasUnlearnModule does."""

    def __init__(self, lr: float):
        from peft import LoraConfig, get_peft_model
        from transformers import LlamaConfig, LlamaForCausalLM

        super().__init__()
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=32,
        )
        base = LlamaForCausalLM(config).to(torch.bfloat16)  # model.dtype=auto on CUDA
        lora = LoraConfig(
            r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
        )
        self.model = get_peft_model(base, lora)  # PEFT's default autocast_adapter_dtype=True: adapters in fp32
        self.lr = lr
        self.seen: dict = {}

    def on_train_start(self):  # after the precision plugin has (or has not) converted the module
        self.seen["adapter_at_start"] = {n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad}

    def training_step(self, batch, _):
        self.seen["autocast"] = torch.is_autocast_enabled(self.device.type)
        return self.model(input_ids=batch[0], labels=batch[0]).loss.float()

    def configure_optimizers(self):
        return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=self.lr, weight_decay=0.0)


def _fit(precision: str, steps: int, lr: float = 2e-5) -> tuple[TinyLoraModule, torch.optim.Optimizer]:
    module = TinyLoraModule(lr)
    assert {p.dtype for p in module.parameters() if p.requires_grad} == {torch.float32}  # before the Trainer
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randint(0, 64, (8, 12))), batch_size=2)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, precision=precision, max_steps=steps, gradient_clip_val=1.0, **QUIET
    )
    trainer.fit(module, data)
    return module, trainer.optimizers[0]


def _dtypes(module, trainable: bool) -> set:
    return {p.dtype for p in module.parameters() if p.requires_grad is trainable}


def _state_dtypes(optimizer) -> set:
    return {
        v.dtype for state in optimizer.state.values() for k, v in state.items() if torch.is_tensor(v) and k != "step"
    }


def _moved_fraction(module) -> float:
    """Share of lora_A entries that moved (lora_B starts at zero, so lora_A first gets a gradient in step 2)."""
    start = module.seen["adapter_at_start"]
    moved = [(p.detach() != start[n]).float().mean().item() for n, p in module.named_parameters() if "lora_A" in n]
    return sum(moved) / len(moved)


def test_gpu_precision_trains_fp32_adapters_over_a_bf16_base(tmp_path):
    precision = compose_train(tmp_path, "trainer=gpu").trainer.precision
    module, optimizer = _fit(precision, steps=3)
    assert _dtypes(module, True) == {torch.float32}  # the adapters: not cast by the Trainer
    assert _dtypes(module, False) == {torch.bfloat16}  # the frozen base stays bf16
    assert _state_dtypes(optimizer) == {torch.float32}  # exp_avg, exp_avg_sq
    assert len(optimizer.state) == sum(1 for p in module.parameters() if p.requires_grad)  # for every adapter tensor
    assert module.seen["autocast"]  # the forward runs under bf16 autocast
    assert _moved_fraction(module) > 0.9  # at the paper's lr 2e-5 the adapter learns


def test_bf16_true_would_cast_the_adapters_and_lose_their_updates():
    """Why trainer=gpu is not bf16-true: Lightning casts the whole module, adapters included, AdamW keeps bf16 state,
    and a step of lr=2e-5 is below half a bf16 ulp of most LoRA weights, so it rounds to nothing."""
    module, optimizer = _fit("bf16-true", steps=3)
    assert _dtypes(module, True) == {torch.bfloat16} and _state_dtypes(optimizer) == {torch.bfloat16}
    assert not module.seen["autocast"]
    assert _moved_fraction(module) < 0.2


def test_slurm_launcher_composes_for_grids():
    """hydra/launcher=slurm: the maintained submitit launcher, one SLURM job per run; local stays the default."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        default = compose("train", overrides=["experiment=methods"], return_hydra_config=True)
        slurm = compose(
            "train",
            overrides=["experiment=methods", "hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
            return_hydra_config=True,
        )
    assert "BasicLauncher" in default.hydra.launcher._target_
    assert slurm.hydra.launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert slurm.hydra.launcher.partition == "gpu" and slurm.hydra.launcher.gpus_per_node == 1
    assert slurm.hydra.sweeper.params.method == default.hydra.sweeper.params.method
