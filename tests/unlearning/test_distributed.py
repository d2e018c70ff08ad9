"""Two-process (gloo, CPU) checks of the distributed paths: the FSDP reference cache and the DDP dev metric.

Lightning's ``FSDPStrategy`` wraps with FSDP1, which refuses CPU-only runs ("FSDP needs a non-CPU accelerator
device"); FSDP2's ``fully_shard`` runs on CPU with gloo, and its forwards are the same kind of collectives (an
all-gather of each layer's shards), so the reference-cache test shards the policy with it.
"""

from __future__ import annotations

import gc
import math
import os
import socket
from datetime import timedelta
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bias_unlearn.data.records import StereoSetExample
from bias_unlearn.eval.stereoset import StereoSetMetric
from bias_unlearn.models.distributed import any_rank

WORLD = 2

# ---------------------------------------------------------------------------------------------------------------
# helpers (built here: nothing is imported from other test files)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init(rank: int, port: int) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # a short timeout turns a collective mismatch into an error instead of a hung test
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60))


def _spawn(fn, *args) -> None:
    mp.spawn(fn, args=(_free_port(), *args), nprocs=WORLD, join=True)


def _tiny_policy():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))


def _dev_examples(n: int) -> list[StereoSetExample]:
    kinds = [("gender", "mother"), ("race", "Peru"), ("race", "Norway"), ("religion", "monk")]
    return [
        StereoSetExample(
            id=f"dev{i}",
            kind="intrasentence",
            target=kinds[i % 4][1],
            bias_type=kinds[i % 4][0],
            context="The BLANK one.",
            stereotype="s",
            anti_stereotype="a",
            unrelated="u",
        )
        for i in range(n)
    ]


def _module(model, dev_examples):
    from bias_unlearn.config.settings import LossConfig, OptimConfig
    from bias_unlearn.unlearning.module import BiasUnlearnModule

    return BiasUnlearnModule(model, None, LossConfig(), OptimConfig(), dev_examples)


# Sequences of different lengths (right-padded in a batch), and each rank's draws: rank 0 misses only on its first
# batch, rank 1 on all three, so without agreement rank 0 would run 1 reference forward and rank 1 would run 3.
SEQUENCES = {
    f"s{k}": torch.randint(4, 64, (4 + k % 3,), generator=torch.Generator().manual_seed(k)).tolist() for k in range(6)
}
DRAWS = {0: [["s0", "s1"], ["s1", "s0"], ["s1"]], 1: [["s2", "s3"], ["s4"], ["s5", "s2"]]}


def _batch(keys: list[str]) -> dict:
    width = max(len(SEQUENCES[k]) for k in keys)
    ids = torch.zeros((len(keys), width), dtype=torch.long)
    attention = torch.zeros_like(ids)
    for i, k in enumerate(keys):
        ids[i, : len(SEQUENCES[k])] = torch.tensor(SEQUENCES[k])
        attention[i, : len(SEQUENCES[k])] = 1
    return {"input_ids": ids, "attention_mask": attention, "loss_mask": attention[:, 1:].clone(), "keys": list(keys)}


def _misses(draws: list[list[str]]) -> int:
    """How many batches would miss the cache on a rank on its own (the old, per-rank logic)."""
    seen, n = set(), 0
    for keys in draws:
        n += any(k not in seen for k in keys)
        seen.update(keys)
    return n


def _same(a, b, tol=1e-9) -> bool:
    """Nested results equal, nan equal to nan."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, (int, str)):
        return a == b
    return math.isclose(a, b, rel_tol=0, abs_tol=tol)


# ---------------------------------------------------------------------------------------------------------------
# single process


def test_any_rank_without_process_group_is_the_flag():
    assert not dist.is_initialized()
    assert any_rank(True) is True and any_rank(False) is False and any_rank([]) is False


def test_stereoset_metric_counts_each_id_once():
    targets = [("race", "a"), ("race", "b")]
    rows = dict(
        target_idx=[0, 1, 0, 1], stereo=[2.0, 0.0, 2.0, 2.0], anti=[1.0, 1.0, 1.0, 1.0], unrel=[0.0, 0.0, 0.0, 0.0]
    )
    expected = StereoSetMetric(targets, n_bootstrap=20)
    expected.update(rows["target_idx"], rows["stereo"], rows["anti"], rows["unrel"])
    metric = StereoSetMetric(targets, n_bootstrap=20)
    # the same four rows, shuffled, with rows 0 and 3 seen twice (a padded duplicate carries the same scores)
    order = [3, 0, 2, 1, 0, 3]
    metric.update(
        [rows["target_idx"][i] for i in order[:3]],
        [rows["stereo"][i] for i in order[:3]],
        [rows["anti"][i] for i in order[:3]],
        [rows["unrel"][i] for i in order[:3]],
        example_idx=order[:3],
    )
    metric.update(
        [rows["target_idx"][i] for i in order[3:]],
        [rows["stereo"][i] for i in order[3:]],
        [rows["anti"][i] for i in order[3:]],
        [rows["unrel"][i] for i in order[3:]],
        example_idx=order[3:],
    )
    assert _same(metric.compute(), expected.compute())  # bootstrap too: rows are kept in id order
    assert metric.compute()["overall"]["n"] == 4

    mixed = StereoSetMetric(targets, n_bootstrap=0)
    mixed.update([0], [1.0], [0.0], [0.0], example_idx=[0])
    mixed.update([1], [1.0], [0.0], [0.0])
    with pytest.raises(ValueError, match="every update or on none"):
        mixed.compute()
    with pytest.raises(ValueError, match="ids for"):
        mixed.update([0, 1], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0], example_idx=[5])


def test_val_dataloader_yields_indexed_examples():
    from bias_unlearn.data.datamodule import UnlearningDataModule

    examples = _dev_examples(5)
    loader = UnlearningDataModule.val_dataloader(SimpleNamespace(dev_examples=examples, dev_batch=2))
    batches = list(loader)
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [pair for b in batches for pair in b] == list(enumerate(examples))


# ---------------------------------------------------------------------------------------------------------------
# (a) FSDP reference cache: ranks that draw different chunks run the same reference forwards


def _reference_worker(rank: int, port: int, out: str) -> None:
    from torch.distributed.fsdp import fully_shard

    _init(rank, port)
    try:
        agreement = [any_rank(rank == 1), any_rank(False), any_rank(True)]
        policy = _tiny_policy()  # the same seed on both ranks: the same weights
        for layer in policy.base_model.model.model.layers:
            fully_shard(layer)
        fully_shard(policy)  # every forward now all-gathers each layer's shards: a collective
        module = _module(policy, _dev_examples(4))
        forwards = []
        policy.base_model.model.register_forward_hook(lambda *args: forwards.append(1))
        outputs = [module.engine.reference_logp(_batch(keys)) for keys in DRAWS[rank]]
        torch.save(
            {
                "agreement": agreement,
                "forwards": len(forwards),
                "cache": dict(module.engine.ref_cache),
                "outputs": outputs,
                "sharded": type(policy).__name__,
            },
            os.path.join(out, f"ref{rank}.pt"),
        )
        # Free the FSDP-sharded model while its process group is alive: left to interpreter exit, its teardown
        # after destroy_process_group aborted the worker (SIGABRT/SIGSEGV) in about 1 run in 8.
        del module, policy, outputs
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_reference_cache_runs_the_same_forwards_on_every_rank(tmp_path):
    misses = {rank: _misses(DRAWS[rank]) for rank in range(WORLD)}
    assert misses == {0: 1, 1: 3}  # the old logic (forward only on a miss) would run 1 and 3 collective forwards

    _spawn(_reference_worker, str(tmp_path))
    results = [torch.load(tmp_path / f"ref{rank}.pt", weights_only=False) for rank in range(WORLD)]

    # the single-process reference over every sequence
    module = _module(_tiny_policy(), _dev_examples(4))
    everything = list(SEQUENCES)
    expected = dict(zip(everything, module.engine.reference_logp(_batch(everything)).tolist()))

    for rank, result in enumerate(results):
        assert result["sharded"].startswith("FSDP")
        assert result["agreement"] == [True, False, True]
        assert result["forwards"] == max(misses.values()) == 3  # the same count on both ranks
        drawn = {k for keys in DRAWS[rank] for k in keys}
        assert set(result["cache"]) == drawn  # only this rank's own rows are cached
        for key in drawn:
            assert result["cache"][key] == pytest.approx(expected[key], abs=1e-5)
        for keys, output in zip(DRAWS[rank], result["outputs"]):
            assert output.tolist() == pytest.approx([expected[k] for k in keys], abs=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# (b) DDP dev evaluation: DistributedSampler pads an odd split with a duplicate; each example counts once

N_DEV = 7  # odd: with two ranks the sampler repeats example 0 on rank 1


def _scores(i: int) -> tuple[float, float, float]:
    """Fixed per-example (stereotype, anti, unrelated) scores; example 0 is pro-stereotypical."""
    stereo = [3.0, 0.0, 0.5, 0.2, 0.0, 2.0, 0.1][i]
    return stereo, 1.0, [0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0][i]


def _dev_worker(rank: int, port: int, out: str) -> None:
    from torch.utils.data import DataLoader, DistributedSampler

    import bias_unlearn.unlearning.module as module_lib
    from bias_unlearn.data.datamodule import UnlearningDataModule

    _init(rank, port)
    try:
        examples = _dev_examples(N_DEV)
        targets = sorted({(ex.bias_type, ex.target) for ex in examples})
        position = [targets.index((ex.bias_type, ex.target)) for ex in examples]

        # the metric on its own: this rank's shard, with and without ids
        shard = list(DistributedSampler(range(N_DEV), num_replicas=WORLD, rank=rank, shuffle=False))
        with_ids, without_ids = StereoSetMetric(targets, n_bootstrap=50), StereoSetMetric(targets, n_bootstrap=0)
        columns = [[position[i] for i in shard], *zip(*[_scores(i) for i in shard])]
        with_ids.update(*columns, example_idx=shard)
        without_ids.update(*columns)

        # the module's dev path: val_dataloader re-sampled the way Lightning does under DDP, then validation_step
        # (the scorer replaced by the fixed scores: the model plays no part in the counting)
        plain = UnlearningDataModule.val_dataloader(SimpleNamespace(dev_examples=examples, dev_batch=2))
        loader = DataLoader(
            plain.dataset,
            batch_size=2,
            collate_fn=plain.collate_fn,
            sampler=DistributedSampler(plain.dataset, num_replicas=WORLD, rank=rank, shuffle=False),
        )
        module = _module(None, examples)
        module.dev_scorer = lambda: None
        module_lib.stereoset_sentence_scores = lambda scorer, exs, mode: [_scores(int(ex.id[3:])) for ex in exs]
        for batch_idx, batch in enumerate(loader):
            module.validation_step(batch, batch_idx)

        torch.save(
            {
                "shard": shard,
                "with_ids": with_ids.compute(),
                "without_ids": without_ids.compute(),
                "module": module.dev_metric.compute(),
            },
            os.path.join(out, f"dev{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_dev_metric_counts_padded_duplicates_once(tmp_path):
    _spawn(_dev_worker, str(tmp_path))
    results = [torch.load(tmp_path / f"dev{rank}.pt", weights_only=False) for rank in range(WORLD)]
    assert results[0]["shard"] == [0, 2, 4, 6] and results[1]["shard"] == [1, 3, 5, 0]  # 0 is the padding

    examples = _dev_examples(N_DEV)
    targets = sorted({(ex.bias_type, ex.target) for ex in examples})
    columns = [[targets.index((ex.bias_type, ex.target)) for ex in examples], *zip(*[_scores(i) for i in range(N_DEV)])]
    single, single_plain = StereoSetMetric(targets, n_bootstrap=50), StereoSetMetric(targets, n_bootstrap=0)
    single.update(*columns)
    single_plain.update(*columns)
    expected, expected_plain = single.compute(), single_plain.compute()
    assert expected["overall"]["n"] == N_DEV

    for result in results:
        assert _same(result["with_ids"], expected)  # bootstrap interval included
        assert _same(result["module"], expected_plain)
        # without ids the duplicate counts twice: one row too many, and a different SS
        assert result["without_ids"]["overall"]["n"] == N_DEV + 1
        assert result["without_ids"]["overall"]["ss"] != pytest.approx(expected["overall"]["ss"])


# ---------------------------------------------------------------------------------------------------------------
# (c) after training only rank 0 evaluates: its metrics must not wait for the other ranks, and a sharded policy
# is not scored in place


class _FakeScorer:
    """Fixed scores (no model): sentence pairs and multiple-choice continuations."""

    def sentences(self, pairs, desc=None):
        from bias_unlearn.eval.batching import Score

        return [(Score(-1.0 * (i % 3), 2), Score(-1.5, 2)) for i, _ in enumerate(pairs)]

    def continuations(self, requests, desc=None):
        from bias_unlearn.eval.batching import Score

        return [[Score(-float(k), 1) for k, _ in enumerate(options)] for _, options in requests]


def _rank0_eval_worker(rank: int, port: int, out: str) -> None:
    import bias_unlearn.eval.stereoset as stereoset_lib
    from bias_unlearn.data.records import BBQItem, CrowsPair
    from bias_unlearn.eval.bbq import evaluate_bbq
    from bias_unlearn.eval.crows_pairs import score_crows_pairs

    _init(rank, port)
    try:
        if rank == 0:  # rank 1 only waits (in training.py the other ranks skip evaluation)
            stereoset_lib.stereoset_sentence_scores = lambda scorer, exs, mode: [
                _scores(i % N_DEV) for i in range(len(exs))
            ]
            stereo, _ = stereoset_lib.score_stereoset(None, _dev_examples(8), n_bootstrap=20)
            pairs = [CrowsPair(f"c{i}", "gender", "more", "less") for i in range(5)]
            crows, _ = score_crows_pairs(_FakeScorer(), pairs)
            items = [
                BBQItem(f"b{i}", "Age", "ctx", "q?", ("a", "b", "c"), i % 3, ("ambig", "disambig")[i % 2], None, None)
                for i in range(6)
            ]
            bbq = evaluate_bbq(_FakeScorer(), items)
            torch.save({"stereo": stereo, "crows": crows, "bbq": bbq}, os.path.join(out, "rank0.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_rank_zero_alone_scores_the_test_split(tmp_path):
    _spawn(_rank0_eval_worker, str(tmp_path))  # a metric that synced on compute would wait for rank 1: an error
    result = torch.load(tmp_path / "rank0.pt", weights_only=False)
    assert result["stereo"]["intrasentence"]["overall"]["n"] == 8  # this rank's rows only, none gathered twice
    assert result["crows"]["overall"]["n"] == 5 and result["bbq"]["Age"]["n"] == 6


def test_a_sharded_policy_is_scored_from_the_delivered_adapter(tmp_path, tiny_model_dir):
    """Under FSDP with several processes rank 0 reloads the base model with the adapter's files instead of
    running the sharded policy: the reloaded model gives the trained policy's log-probs."""
    from lightning.pytorch.strategies import FSDPStrategy
    from omegaconf import OmegaConf
    from peft import LoraConfig, get_peft_model

    from bias_unlearn.jobs.train import evaluation_policy
    from bias_unlearn.models.loading import load_model

    model, tokenizer = load_model("local", str(tiny_model_dir), "float32")
    policy = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # a trained adapter (LoRA B starts at zero)
    policy.save_pretrained(tmp_path / "adapter")
    cfg = OmegaConf.create({"model": {"source": "local", "name_or_path": str(tiny_model_dir), "dtype": "float32"}})

    whole = SimpleNamespace(strategy=None, world_size=1)
    assert evaluation_policy(cfg, whole, policy, tokenizer, tmp_path / "adapter", "cpu") == (policy, tokenizer)

    sharded = SimpleNamespace(strategy=FSDPStrategy.__new__(FSDPStrategy), world_size=2)
    reloaded, reloaded_tokenizer = evaluation_policy(cfg, sharded, policy, tokenizer, tmp_path / "adapter", "cpu")
    assert reloaded is not policy and len(reloaded_tokenizer) == len(tokenizer)
    ids = torch.tensor([[1, 5, 9, 12, 3]])
    policy.eval()
    with torch.no_grad():
        trained = policy(input_ids=ids).logits
        assert torch.allclose(reloaded(input_ids=ids).logits, trained, atol=1e-5)
        with policy.disable_adapter():  # the adapter matters: the check above is not the base against itself
            assert not torch.allclose(policy(input_ids=ids).logits, trained, atol=1e-3)
