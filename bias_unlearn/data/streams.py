"""Training data for bias unlearning: tokenised forget / retain / KL sequences and the chunked stream over them.

Per bias type there are two sets: ``stereo`` (the stereotype sentences plus the adversarial slice of that type's
anti-stereotypes) and ``anti`` (all anti-stereotype sentences); ``partner`` maps each sentence to the other sentence
of its example (paired chunks: DPO's chosen / rejected, SFT's 1 : 1). Normally ``stereo`` is forgotten and ``anti``
retained; a swapped type trades the roles. KL sequences are the unrelated sentences. Every sequence carries a loss
mask over its continuation: for intersentence examples the sentence after the context, for intrasentence examples
the filled-in word and everything after it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import IterableDataset

from bias_unlearn.config.errors import DataError
from bias_unlearn.data.records import BIAS_TYPES, StereoSetExample
from bias_unlearn.models.tokens import continuation_ids, start_token_id

ROLES = ("forget", "retain", "kl")


@dataclass(frozen=True)
class TrainSequence:
    key: str  # unique per sequence: the reference log-prob cache is keyed by it
    bias_type: str
    ids: tuple[int, ...]
    loss_mask: tuple[int, ...]  # 1 where the token carries the loss (same length as ids)


def continuation_start(example: StereoSetExample, sentence: str) -> int:
    """Character offset in an intrasentence ``sentence`` where the filled word begins (the text before BLANK)."""
    prefix = example.context.split("BLANK", 1)[0].rstrip()
    return len(prefix) if sentence.lower().startswith(prefix.lower()) else 0


def tokenize_sentence(
    tokenizer, start_id: int, example: StereoSetExample, sentence: str, whole: bool = False
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(ids, loss_mask) of one sentence with the start token first. ``whole`` puts the loss on every real token
    (the KL sequences); otherwise only the continuation carries it."""
    if example.kind == "intersentence":
        context = tokenizer(example.context, add_special_tokens=False)["input_ids"]
        cont = continuation_ids(tokenizer, sentence)
        ids = [start_id, *context, *cont]
        mask = [0] + [int(whole)] * len(context) + [1] * len(cont)
        return tuple(ids), tuple(mask)
    enc = tokenizer(sentence, add_special_tokens=False, return_offsets_mapping=True)
    cut = 0 if whole else continuation_start(example, sentence)
    mask = [1 if end > cut else 0 for _, end in enc["offset_mapping"]]
    return (start_id, *enc["input_ids"]), (0, *mask)


def build_sequences(
    examples: Sequence[StereoSetExample],
    tokenizer,
    adversarial_fraction: float = 0.25,
    seed: int = 0,
    counterfactuals: Sequence[StereoSetExample] = (),
) -> dict:
    """{"stereo": {type: [...]}, "anti": {type: [...]}, "kl": [...], "partner": {key: seq}} from the train split.

    The adversarial slice (``adversarial_fraction`` of each type's anti-stereotypes, seeded) joins that type's
    ``stereo`` set; those sentences stay in ``anti`` too, as in the paper. ``counterfactuals`` (data/counterfactual.py)
    join their type's stereotype and anti-stereotype sentences after the originals; their unrelated sentences do not
    join the KL set (it stays the unrelated text of the split).
    """
    if not 0 <= adversarial_fraction < 1:
        raise DataError("method.adversarial_fraction", f"{adversarial_fraction} must lie in [0, 1)")
    start_id = start_token_id(tokenizer)
    sets: dict = {"stereo": {}, "anti": {}, "kl": [], "partner": {}}
    for bias_type in BIAS_TYPES:
        typed = [ex for ex in examples if ex.bias_type == bias_type]
        if not typed:
            raise DataError("train split", f"bias type {bias_type!r} has no training examples")
        typed_copies = [ex for ex in counterfactuals if ex.bias_type == bias_type]
        copies = {ex.id for ex in typed_copies}
        stereo, anti = [], []
        for ex in typed + typed_copies:
            for role, sentence, out in (("s", ex.stereotype, stereo), ("a", ex.anti_stereotype, anti)):
                ids, mask = tokenize_sentence(tokenizer, start_id, ex, sentence)
                if not any(mask):
                    raise DataError("train split", f"example {ex.id}: no token left to carry the loss", field=role)
                out.append(TrainSequence(f"{ex.id}:{role}", bias_type, ids, mask))
            sets["partner"][stereo[-1].key], sets["partner"][anti[-1].key] = anti[-1], stereo[-1]
            if ex.id in copies:
                continue
            ids, mask = tokenize_sentence(tokenizer, start_id, ex, ex.unrelated, whole=True)
            sets["kl"].append(TrainSequence(f"{ex.id}:u", bias_type, ids, mask))
        n_adv = round(adversarial_fraction * len(anti))
        adversarial = random.Random(f"{seed}:{bias_type}:adv").sample(anti, n_adv)
        sets["stereo"][bias_type] = stereo + adversarial
        sets["anti"][bias_type] = anti
    return sets


def collate(seqs: Sequence[TrainSequence], pad_id: int) -> dict:
    """Right-padded batch; ``loss_mask`` is shifted to the frame of next-token predictions (B, T-1)."""
    width = max(len(s.ids) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    loss_mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s.ids)] = torch.tensor(s.ids)
        attention[i, : len(s.ids)] = 1
        loss_mask[i, : len(s.ids)] = torch.tensor(s.loss_mask)
    return {
        "input_ids": ids,
        "attention_mask": attention,
        "loss_mask": loss_mask[:, 1:],
        "keys": [s.key for s in seqs],
        "bias_types": [s.bias_type for s in seqs],
    }


class CyclingPool:
    """Endless reshuffled passes over one list of sequences (its own seeded RNG)."""

    def __init__(self, items: list, seed: str):
        self.items, self.rng = list(items), random.Random(seed)
        self.order: list[int] = []

    def __len__(self) -> int:
        return len(self.items)

    def take(self) -> object:
        if not self.order:
            self.order = list(range(len(self.items)))
            self.rng.shuffle(self.order)
        return self.items[self.order.pop()]

    def state(self) -> dict:
        return {"rng": self.rng.getstate(), "order": list(self.order)}

    def restore(self, state: dict) -> None:
        self.rng.setstate(_as_tuple(state["rng"]))
        self.order = list(state["order"])


def _as_tuple(value):
    """A random.Random state from a checkpoint, where its tuples may have become lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


class ChunkStream(IterableDataset):
    """Yields one chunk per step: a forget batch, a larger retain batch and a KL batch.

    An epoch is one pass of all ``world_size`` processes together over the unswapped forget pools: their total size /
    (forget batch x processes) chunks on each; retain and KL cycle. Each item
    of a role's batch comes from one of that role's pools (one per bias type), picked by ``type_weights``: ``size``
    in proportion to pool size (sampling the pooled set, as the paper does), ``equal`` (each bias type the same
    share, however few its examples) or ``adaptive`` (size times the type's factor in ``type_factors``, which a
    callback sets from the dev scores: unlearning/callbacks/type_weighting.py; a factor of 0 pauses the type). A swap
    only reassigns two pools: nothing is rebuilt and the other types' streams continue where they were. ``paired``: the
    retain batch is the forget batch's partners (each example's other sentence), row for row.

    Resumable: ``state_dict(consumed)`` is the stream as it stood before its ``consumed``-th chunk (every RNG, pool
    order and the epoch position), with the swap state and type factors of each chunk drawn since (a data loader
    draws ahead of training, and a chunk keeps the roles it was drawn under); ``load_state_dict`` replays from there.
    """

    KEEP_SNAPSHOTS = 8  # states kept for chunks drawn but not yet trained (the loader prefetches one or two)

    def __init__(
        self,
        sets: dict,
        batch_sizes: dict[str, int],
        pad_id: int,
        swapped: set[str],
        seed: int = 0,
        paired: bool = False,
        type_weights: str = "size",
        world_size: int = 1,
        type_factors: dict[str, float] | None = None,
    ):
        self.type_weights = type_weights  # size | equal | adaptive (config/schema.py checks it)
        self.type_factors = type_factors if type_factors is not None else {}  # shared with the datamodule
        self.pools = {
            (name, bt): CyclingPool(seqs, f"{seed}:{name}:{bt}")
            for name in ("stereo", "anti")
            for bt, seqs in sets[name].items()
        }
        self.kl_pool = CyclingPool(sets["kl"], f"{seed}:kl")
        self.bias_types = sorted(sets["stereo"])
        self.batch_sizes, self.pad_id, self.swapped = batch_sizes, pad_id, swapped
        self.rng = random.Random(f"{seed}:roles")
        self.paired, self.partner = paired, sets.get("partner", {})
        forget_size = sum(len(self.pools[("stereo", bt)]) for bt in self.bias_types)
        self.epoch_length = max(1, math.ceil(forget_size / (batch_sizes["forget"] * world_size)))
        self.position = 0  # chunks yielded in the current epoch
        self.drawn = 0  # chunks yielded in all
        self.snapshots: dict[int, dict] = {}  # drawn -> state before that chunk
        self.replay: list[tuple[list[str], dict]] = []  # (swap state, type factors) of chunks to redraw after a resume

    def role_pools(self, role: str, swapped: set[str] | None = None) -> list[CyclingPool]:
        """The pools that feed ``role`` under the swap state ``swapped`` (default: the current one)."""
        swapped = self.swapped if swapped is None else swapped
        forget_set = {bt: "anti" if bt in swapped else "stereo" for bt in self.bias_types}
        if role == "forget":
            return [self.pools[(forget_set[bt], bt)] for bt in self.bias_types]
        return [self.pools[("stereo" if forget_set[bt] == "anti" else "anti", bt)] for bt in self.bias_types]

    def type_draw_weights(self, pools: list[CyclingPool], factors: dict[str, float]) -> list[float]:
        """Each bias type's weight in a forget / retain draw (pools in ``self.bias_types`` order)."""
        if self.type_weights == "equal":
            return [1.0] * len(pools)
        if self.type_weights == "adaptive":
            weights = [len(p) * factors.get(bt, 1.0) for p, bt in zip(pools, self.bias_types)]
            if any(w > 0 for w in weights):
                return weights  # every type paused (all balanced, the run not yet stopped): size weights
        return [float(len(p)) for p in pools]

    def draw(self, role: str, swapped: set[str] | None = None, factors: dict | None = None) -> list[TrainSequence]:
        n = self.batch_sizes[role]
        if role == "kl":
            return [self.kl_pool.take() for _ in range(n)]
        pools = self.role_pools(role, swapped)
        weights = self.type_draw_weights(pools, self.type_factors if factors is None else factors)
        picks = self.rng.choices(pools, weights=weights, k=n)
        return [pool.take() for pool in picks]

    def __len__(self) -> int:
        return self.epoch_length

    def __iter__(self) -> Iterator[dict]:
        while self.position < self.epoch_length:
            if self.replay:
                roles, factors = self.replay.pop(0)
                swapped, factors = set(roles), dict(factors)
            else:
                swapped, factors = set(self.swapped), dict(self.type_factors)
            self.snapshots[self.drawn] = self._state(swapped, factors)
            self.snapshots.pop(self.drawn - self.KEEP_SNAPSHOTS, None)
            drawn = {role: self.draw(role, swapped, factors) for role in ("forget", "kl") if self.batch_sizes[role] > 0}
            drawn["retain"] = (
                [self.partner[s.key] for s in drawn["forget"]] if self.paired else self.draw("retain", swapped, factors)
            )
            self.position, self.drawn = self.position + 1, self.drawn + 1
            yield {role: collate(drawn[role], self.pad_id) for role in ROLES if role in drawn}
        self.position = 0

    def _state(self, swapped: set[str], factors: dict[str, float]) -> dict:
        return {
            "drawn": self.drawn,
            "position": self.position,
            "roles_rng": self.rng.getstate(),
            "pools": {f"{name}:{bt}": pool.state() for (name, bt), pool in self.pools.items()},
            "kl_pool": self.kl_pool.state(),
            "swapped": sorted(swapped),
            "factors": dict(factors),
        }

    def state_dict(self, consumed: int) -> dict:
        """The state before chunk ``consumed`` (the first one not trained on) and the roles of those drawn since."""
        if consumed == self.drawn:
            return {"state": self._state(self.swapped, self.type_factors), "pending_roles": [], "pending_factors": []}
        if consumed not in self.snapshots or consumed > self.drawn:
            raise RuntimeError(
                f"the chunk stream cannot return to chunk {consumed}: it has drawn {self.drawn} and "
                f"keeps the states of chunks {sorted(self.snapshots)}"
            )
        return {
            "state": self.snapshots[consumed],
            "pending_roles": [self.snapshots[i]["swapped"] for i in range(consumed, self.drawn)],
            "pending_factors": [self.snapshots[i]["factors"] for i in range(consumed, self.drawn)],
        }

    def load_state_dict(self, state: dict) -> None:
        saved = state["state"]
        self.drawn, self.position = int(saved["drawn"]), int(saved["position"]) % self.epoch_length
        self.rng.setstate(_as_tuple(saved["roles_rng"]))
        for key, pool_state in saved["pools"].items():
            name, bt = key.split(":", 1)
            self.pools[(name, bt)].restore(pool_state)
        self.kl_pool.restore(saved["kl_pool"])
        pending = state["pending_roles"]
        factors = state.get("pending_factors") or [{}] * len(pending)  # checkpoints from before adaptive weights
        self.replay = [(list(roles), dict(f)) for roles, f in zip(pending, factors)]
        self.snapshots = {}
