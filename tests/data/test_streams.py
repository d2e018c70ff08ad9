from collections import Counter

import pytest

from bias_unlearn.config.errors import ConfigError, DataError
from bias_unlearn.data.datamodule import UnlearningDataModule
from bias_unlearn.data.records import BIAS_TYPES, StereoSetExample
from bias_unlearn.data.splits import split_by_target
from bias_unlearn.data.stereoset import load_stereoset
from bias_unlearn.data.streams import build_sequences, tokenize_sentence
from tests.helpers import make_tokenizer


@pytest.fixture
def split(stereoset_jsonl):
    return split_by_target(load_stereoset("local", str(stereoset_jsonl)), seed=0, fractions=(0.5, 0.25, 0.25))


def _decoded(tokenizer, ids, mask):
    return [t for t, m in zip(tokenizer.convert_ids_to_tokens(list(ids)), mask) if m]


@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_loss_covers_the_continuation_only(style):
    tok = make_tokenizer(style)
    start = tok.bos_token_id if style == "llama" else tok.eos_token_id
    intra = StereoSetExample(
        "1",
        "intrasentence",
        "nurse",
        "profession",
        "The nurse was BLANK today .",
        "The nurse was caring today .",
        "The nurse was cruel today .",
        "The nurse was blue today .",
    )
    ids, mask = tokenize_sentence(tok, start, intra, intra.stereotype)
    assert ids[0] == start and len(ids) == len(mask)  # the tokenizer's own start token, exactly once
    assert _decoded(tok, ids, mask) == ["caring", "today", "."]
    inter = StereoSetExample(
        "2",
        "intersentence",
        "nurse",
        "profession",
        "I met the nurse yesterday .",
        "They were very caring .",
        "They were very cruel .",
        "The fox is far away .",
    )
    ids, mask = tokenize_sentence(tok, start, inter, inter.stereotype)
    assert _decoded(tok, ids, mask) == ["They", "were", "very", "caring", "."]
    ids, mask = tokenize_sentence(tok, start, inter, inter.unrelated, whole=True)
    assert mask[0] == 0 and all(mask[1:])


def test_adversarial_fraction_is_stratified_per_type(split):
    tok = make_tokenizer("llama")
    train = [ex for ex in split.train if ex.kind == "intrasentence"]
    sets = build_sequences(train, tok, adversarial_fraction=0.5, seed=1)
    for bt in BIAS_TYPES:
        n = sum(ex.bias_type == bt for ex in train)
        adv = [s for s in sets["stereo"][bt] if s.key.endswith(":a")]
        assert len(sets["anti"][bt]) == n and len(adv) == round(0.5 * n)
        assert {s.key for s in adv} <= {s.key for s in sets["anti"][bt]}  # they stay in the retain set too
    none = build_sequences(train, tok, adversarial_fraction=0.0)
    assert all(not s.key.endswith(":a") for bt in BIAS_TYPES for s in none["stereo"][bt])


def test_chunks_have_configured_sizes_and_cycle(split):
    tok = make_tokenizer("llama")
    dm = UnlearningDataModule(split, tok, forget_batch=2, retain_batch=5, kl_batch=3, adversarial_fraction=0.25)
    loader = dm.train_dataloader()
    chunks = list(loader)
    forget_total = sum(len(v) for v in dm.sequences["stereo"].values())
    assert len(chunks) == -(-forget_total // 2)  # the forget stream sets the epoch
    for chunk in chunks:
        assert [chunk[r]["input_ids"].shape[0] for r in ("forget", "retain", "kl")] == [2, 5, 3]
        assert chunk["forget"]["loss_mask"].shape[1] == chunk["forget"]["input_ids"].shape[1] - 1
    retain_seen = Counter(k for c in chunks for k in c["retain"]["keys"])
    anti_total = sum(len(v) for v in dm.sequences["anti"].values())
    assert 5 * len(chunks) > anti_total and len(retain_seen) == anti_total  # retain cycles through all of it
    assert all(k.endswith(":s") or k.endswith(":a") for c in chunks for k in c["forget"]["keys"])
    assert all(k.endswith(":a") for c in chunks for k in c["retain"]["keys"])


@pytest.mark.parametrize("scope, expected", [("per_device", [4, 28, 28]), ("global", [1, 7, 7])])
def test_batch_scope_global_splits_the_chunk_over_processes(split, scope, expected):
    """The paper's 4 : 28 : 28 is global: on 4 processes each draws 1 : 7 : 7 (DDP averages the gradients)."""
    from types import SimpleNamespace

    dm = UnlearningDataModule(
        split, make_tokenizer("llama"), forget_batch=4, retain_batch=28, kl_batch=28, batch_scope=scope
    )
    dm.trainer = SimpleNamespace(global_rank=1, world_size=4)
    loader = dm.train_dataloader()
    chunk = next(iter(loader))
    assert [chunk[r]["input_ids"].shape[0] for r in ("forget", "retain", "kl")] == expected
    # An epoch is one pass of the four processes together over the forget set, whatever the scope.
    forget_total = sum(len(v) for v in dm.sequences["stereo"].values())
    assert len(loader.dataset) == -(-forget_total // (4 * expected[0]))


def test_batch_scope_refuses_a_chunk_that_does_not_split_evenly():
    from bias_unlearn.data.datamodule import rank_batch_sizes

    sizes = {"forget": 4, "retain": 28, "kl": 30}
    assert rank_batch_sizes(sizes, 1, "global") == sizes
    assert rank_batch_sizes(sizes, 4, "per_device") == sizes
    with pytest.raises(ConfigError, match="train.kl_batch=30 does not divide evenly"):
        rank_batch_sizes(sizes, 4, "global")


def test_swap_flips_one_type_only(split):
    tok = make_tokenizer("llama")
    dm = UnlearningDataModule(split, tok, forget_batch=4, retain_batch=8, kl_batch=2)
    loader = dm.train_dataloader()
    dm.swap("gender", True)
    forget = [
        (bt, k) for _ in range(3) for c in loader for bt, k in zip(c["forget"]["bias_types"], c["forget"]["keys"])
    ]
    assert all(k.endswith(":a") for bt, k in forget if bt == "gender")  # gender now forgets anti-stereotypes
    assert any(k.endswith(":s") for bt, k in forget if bt != "gender")
    dm.swap("gender", False)
    assert dm.swapped == set()


def test_a_missing_type_is_refused(split):
    tok = make_tokenizer("llama")
    split.train = [ex for ex in split.train if ex.bias_type != "religion"]
    with pytest.raises(DataError, match="religion"):
        UnlearningDataModule(split, tok)


def _synthetic_sets(sizes: dict[str, int]) -> dict:
    from bias_unlearn.data.streams import TrainSequence

    def seqs(bt, role, n):
        return [TrainSequence(f"{bt}{i}:{role}", bt, (1, 2, 3), (0, 1, 1)) for i in range(n)]

    return {
        "stereo": {bt: seqs(bt, "s", n) for bt, n in sizes.items()},
        "anti": {bt: seqs(bt, "a", n) for bt, n in sizes.items()},
        "kl": seqs("gender", "u", 4),
        "partner": {},
    }


@pytest.mark.parametrize("type_weights", ["size", "equal"])
def test_type_weights_set_each_bias_types_share_of_the_draws(type_weights):
    from bias_unlearn.data.streams import ChunkStream

    sizes = {"gender": 40, "profession": 40, "race": 40, "religion": 4}
    stream = ChunkStream(
        _synthetic_sets(sizes), {"forget": 4, "retain": 8, "kl": 2}, 0, set(), seed=3, type_weights=type_weights
    )
    counts = {"forget": Counter(), "retain": Counter()}
    for _ in range(40):  # 40 epochs of 31 chunks: 4,960 forget and 9,920 retain draws
        for chunk in stream:
            for role in counts:
                counts[role].update(chunk[role]["bias_types"])
    for role, counter in counts.items():
        share = counter["religion"] / sum(counter.values())
        if type_weights == "size":  # religion holds 4 of 124 sentences
            assert 0.02 < share < 0.045, (role, share)
        else:  # every type a quarter, though religion has a tenth of the others' sentences
            assert 0.22 < share < 0.28, (role, share)
            assert max(counter.values()) / min(counter.values()) < 1.2


def test_adaptive_type_weights_scale_each_types_share_and_zero_pauses_it():
    from bias_unlearn.data.streams import ChunkStream

    sizes = {"gender": 40, "profession": 40, "race": 40, "religion": 40}
    factors = {"gender": 3.0, "profession": 1.0, "race": 0.0, "religion": 1.0}
    stream = ChunkStream(
        _synthetic_sets(sizes),
        {"forget": 4, "retain": 8, "kl": 2},
        0,
        set(),
        3,
        type_weights="adaptive",
        type_factors=factors,
    )
    counts = Counter()
    for _ in range(20):
        for chunk in stream:
            counts.update(chunk["forget"]["bias_types"] + chunk["retain"]["bias_types"])
    total = sum(counts.values())
    assert counts["race"] == 0  # a balanced type pauses: neither forgotten nor retained
    assert 0.55 < counts["gender"] / total < 0.65  # 3 / 5 of the draws
    factors.update(gender=0.0, profession=0.0, religion=0.0)  # every type balanced: back to size weights
    counts.clear()
    for chunk in stream:
        counts.update(chunk["forget"]["bias_types"])
    assert len(counts) > 1 and counts["race"] > 0


def test_a_resumed_stream_redraws_prefetched_chunks_under_the_factors_they_were_drawn_with():
    from bias_unlearn.data.streams import ChunkStream

    sizes = {"gender": 10, "profession": 10, "race": 10, "religion": 10}

    def make(factors):
        return ChunkStream(
            _synthetic_sets(sizes),
            {"forget": 4, "retain": 8, "kl": 2},
            0,
            set(),
            1,
            type_weights="adaptive",
            type_factors=factors,
        )

    factors = {bt: 1.0 for bt in BIAS_TYPES}
    stream = make(factors)
    it = iter(stream)
    first = [next(it)["forget"]["keys"] for _ in range(2)]  # chunk 1 trained, chunk 2 prefetched
    factors.update(gender=0.0, profession=0.0, race=0.0)  # a dev evaluation after chunk 1 changes the weights
    later = [next(it)["forget"]["keys"] for _ in range(3)]
    state = stream.state_dict(1)
    assert state["pending_factors"][0]["gender"] == 1.0 and state["pending_factors"][1]["gender"] == 0.0
    resumed = make({**factors})
    resumed.load_state_dict(state)
    again = [chunk["forget"]["keys"] for _, chunk in zip(range(4), resumed)]
    assert again == [first[1], *later]
    assert all(key.startswith("religion") for chunk in later for key in chunk)
