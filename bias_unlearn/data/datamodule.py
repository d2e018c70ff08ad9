"""The LightningDataModule: chunked forget / retain / KL training stream, and the dev split for validation."""

from __future__ import annotations

import logging

import lightning as L
from torch.utils.data import DataLoader

from bias_unlearn.config.errors import ConfigError, DataError
from bias_unlearn.data.counterfactual import counterfactual_examples, held_out_words
from bias_unlearn.data.records import BIAS_TYPES
from bias_unlearn.data.splits import StereoSetSplit
from bias_unlearn.data.streams import ChunkStream, build_sequences
from bias_unlearn.models.distributed import gather_objects

log = logging.getLogger(__name__)


def check_global_batches(batch_sizes: dict[str, int], world_size: int, scope: str) -> None:
    """``global`` batch sizes must split evenly over the processes (refused before training starts)."""
    uneven = {role: n for role, n in batch_sizes.items() if n % world_size}
    if scope == "global" and world_size > 1 and uneven:
        raise ConfigError(
            f"train.batch_scope=global splits each batch over {world_size} processes, but "
            f"{', '.join(f'train.{r}_batch={n}' for r, n in uneven.items())} does not divide evenly"
        )


def rank_batch_sizes(batch_sizes: dict[str, int], world_size: int, scope: str) -> dict[str, int]:
    """What one process draws per step: the sizes as given (``per_device``: the authors' code, 4 GPUs x 4 : 28) or
    the sizes split over the processes (``global``: the paper's 4 : 28 in all, 1 : 7 on each of 4 GPUs). DDP averages
    the processes' gradients, so with the default per-example loss reductions the step is the global batch's; with
    ``loss.npo_reduction=batch`` or ``loss.retain_reduction=token`` it is the mean of the per-process batches'."""
    check_global_batches(batch_sizes, world_size, scope)
    if scope == "per_device" or world_size == 1:
        return dict(batch_sizes)
    return {role: n // world_size for role, n in batch_sizes.items()}


def check_split_kinds(split: StereoSetSplit, train_kinds, dev_kinds=("intrasentence",)) -> tuple[list, list]:
    """The train examples of ``train_kinds`` and dev examples of ``dev_kinds``; DataError when a bias type has none
    in either (it could neither be unlearned nor measured)."""
    train = [ex for ex in split.train if ex.kind in train_kinds]
    dev = [ex for ex in split.dev if ex.kind in dev_kinds]
    for name, examples, kinds in (("train", train, train_kinds), ("dev", dev, dev_kinds)):
        missing = [bt for bt in BIAS_TYPES if bt not in {ex.bias_type for ex in examples}]
        if missing:
            raise DataError(f"{name} split", f"no {'/'.join(kinds)} examples of bias type(s) {missing}")
    return train, dev


class StreamLoader(DataLoader):
    """The training stream's loader, resumable: Lightning saves its ``state_dict`` in every checkpoint and loads it
    before iterating again. The state is the stream's before the first chunk not yet trained on (global step x
    accumulation), one per rank (every rank draws its own chunks)."""

    def __init__(self, stream: ChunkStream, datamodule: UnlearningDataModule):
        super().__init__(stream, batch_size=None, num_workers=0)
        self.datamodule = datamodule

    def state_dict(self) -> dict:
        trainer = self.datamodule.trainer
        consumed = trainer.global_step * trainer.accumulate_grad_batches if trainer is not None else 0
        return {"ranks": gather_objects(self.dataset.state_dict(consumed))}

    def load_state_dict(self, state: dict) -> None:
        ranks, rank = state["ranks"], self.datamodule.trainer.global_rank if self.datamodule.trainer else 0
        world = self.datamodule.trainer.world_size if self.datamodule.trainer else 1
        if len(ranks) != world:
            raise ConfigError(
                f"the checkpoint was written by {len(ranks)} process(es) and this run has {world}: "
                "resume with the same number of devices"
            )
        self.dataset.load_state_dict(ranks[rank])


def _as_list(batch):
    """A dev batch: the list of (index into dev_examples, example) pairs; the index lets the metric count each dev
    example once when DistributedSampler pads a rank's shard with duplicates."""
    return list(batch)


class UnlearningDataModule(L.LightningDataModule):
    """Builds the streams from a StereoSet split; ``swap`` flips one bias type's forget and retain roles and
    ``set_type_factors`` sets the draw weights of ``type_weights=adaptive``.

    ``kinds``: which StereoSet sentence types train (intrasentence, intersentence); ``dev_kinds``: which the dev
    split is scored on (the paper's early stopping: intrasentence; both kinds pool a target's examples, as
    StereoSet's overall score does, and narrow each type's dev standard error); ``counterfactual_types``: bias types
    whose train examples also train as counterfactual copies (data/counterfactual.py).
    """

    def __init__(
        self,
        split: StereoSetSplit,
        tokenizer,
        forget_batch: int = 4,
        retain_batch: int = 28,
        kl_batch: int = 28,
        adversarial_fraction: float = 0.25,
        kinds=("intrasentence",),
        dev_kinds=("intrasentence",),
        dev_batch: int = 64,
        seed: int = 0,
        paired: bool = False,
        batch_scope: str = "per_device",
        type_weights: str = "size",
        counterfactual_types=(),
    ):
        super().__init__()
        self.type_weights, self.batch_scope = type_weights, batch_scope  # checked by config/schema.py
        self.split, self.tokenizer = split, tokenizer
        self.batch_sizes = {"forget": forget_batch, "retain": forget_batch if paired else retain_batch, "kl": kl_batch}
        self.adversarial_fraction, self.seed, self.paired = adversarial_fraction, seed, paired
        self.train_kinds, self.dev_kinds, self.dev_batch = tuple(kinds), tuple(dev_kinds), dev_batch
        self.swapped: set[str] = set()
        self.type_factors: dict[str, float] = {bt: 1.0 for bt in BIAS_TYPES}  # adaptive draw weights (1: size)
        self.train_examples, self.dev_examples = check_split_kinds(split, self.train_kinds, self.dev_kinds)
        copies, self.counterfactual_counts = counterfactual_examples(
            self.train_examples, tuple(counterfactual_types), held_out_words(split.dev + split.test)
        )
        for bias_type, counts in self.counterfactual_counts.items():
            log.info("counterfactual copies of %s train examples: %s", bias_type, dict(counts))
        self.sequences = build_sequences(self.train_examples, tokenizer, adversarial_fraction, seed, copies)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else 0
        self.stream: ChunkStream | None = None

    @property
    def dev_targets(self) -> list[tuple[str, str]]:
        return sorted({(ex.bias_type, ex.target) for ex in self.dev_examples})

    def swap(self, bias_type: str, swapped: bool) -> None:
        """Set whether ``bias_type`` forgets its anti-stereotypes (swapped) or its stereotypes (normal)."""
        if bias_type not in BIAS_TYPES:
            raise ConfigError(f"unknown bias type {bias_type!r}")
        (self.swapped.add if swapped else self.swapped.discard)(bias_type)

    def set_type_factors(self, factors: dict[str, float]) -> None:
        """Each bias type's factor on its size in forget / retain draws (``type_weights=adaptive``; 0 pauses it)."""
        unknown = set(factors) - set(BIAS_TYPES)
        if unknown or any(not f >= 0 for f in factors.values()):
            raise ConfigError(f"type factors must be >= 0 for known bias types, got {factors}")
        self.type_factors.update({bt: float(f) for bt, f in factors.items()})

    def train_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        world = self.trainer.world_size if self.trainer is not None else 1
        sizes = rank_batch_sizes(self.batch_sizes, world, self.batch_scope)
        # Every rank draws its own chunks; the swap state is shared by reference, so workers must stay in-process.
        self.stream = ChunkStream(
            self.sequences,
            sizes,
            self.pad_id,
            self.swapped,
            seed=self.seed + rank,
            paired=self.paired,
            type_weights=self.type_weights,
            world_size=world,
            type_factors=self.type_factors,
        )
        return StreamLoader(self.stream, self)

    def state_dict(self) -> dict:
        return {"swapped": sorted(self.swapped), "type_factors": dict(self.type_factors)}

    def load_state_dict(self, state: dict) -> None:
        self.swapped.clear()
        self.swapped.update(state["swapped"])
        self.type_factors.update(state.get("type_factors", {}))

    def val_dataloader(self) -> DataLoader:
        indexed = list(enumerate(self.dev_examples))  # (index, example): see _as_list
        return DataLoader(indexed, batch_size=self.dev_batch, shuffle=False, collate_fn=_as_list)
