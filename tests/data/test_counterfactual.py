import pytest

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.data.counterfactual import counterfactual_examples, held_out_words, word_forms
from bias_unlearn.data.records import StereoSetExample
from bias_unlearn.data.streams import build_sequences
from bias_unlearn.data.word_lists import Counterfactuals
from tests.helpers import make_tokenizer


def _intra(id_, target, context, stereo, anti, bias_type="gender"):
    return StereoSetExample(
        id_, "intrasentence", target, bias_type, context, stereo, anti, context.replace("BLANK", "blue")
    )


SCHOOLGIRL = _intra(
    "g1",
    "schoolgirl",
    "The schoolgirl did her homework BLANK .",
    "The schoolgirl did her homework neatly .",
    "The schoolgirl did her homework badly .",
)
SISTER = _intra("g2", "sister", "My sister is BLANK .", "My sister is caring .", "My sister is rude .")


def test_a_copy_swaps_every_group_word_and_flips_the_roles():
    copies, counts = counterfactual_examples([SISTER], ["gender"], held_out=set())
    (copy,) = copies
    assert counts["gender"]["made"] == 1
    assert (copy.id, copy.target, copy.context) == ("g2~cf", "brother", "My brother is BLANK .")
    # "my sister is caring" (stereotype) becomes "my brother is caring": an anti-stereotype; the roles flip
    assert (copy.stereotype, copy.anti_stereotype) == ("My brother is rude .", "My brother is caring .")


def test_a_possessive_her_becomes_his_and_an_object_her_him():
    (copy,), _ = counterfactual_examples([SCHOOLGIRL], ["gender"], held_out=set())
    assert copy.anti_stereotype == "The schoolboy did his homework neatly ."
    swapper = Counterfactuals(("gender",), resolve_her=True)
    assert swapper.swap("I told her the truth about her dog .", 1)[0] == "I told him the truth about his dog ."
    assert swapper.swap("We saw her.", 1)[0] == "We saw him."
    # CAFIE's scoring keeps the lists' first reading of "her" (its released behaviour, results already reported)
    assert Counterfactuals(("gender",)).swap("about her dog", 1)[0] == "about him dog"


def test_a_copy_that_would_name_a_held_out_target_is_dropped_whole():
    mother = _intra("g3", "father", "The father and BLANK son .", "The father and his son .", "The father and a son .")
    held = held_out_words([_intra("d1", "mothers", "", "", "")])  # a dev target; its singular is held out too
    assert "mother" in held and "mothers" in held
    copies, counts = counterfactual_examples([mother, SISTER], ["gender"], held)
    assert [c.id for c in copies] == ["g2~cf"] and counts["gender"]["held-out word"] == 1


def test_no_copy_where_a_group_word_tells_the_two_sentences_apart():
    # "a male ... masculine" -> "a female ... feminine" keeps its role: flipping it would mislabel both sentences
    male = _intra("g4", "male", "A male is BLANK .", "A male is masculine .", "A male is feminine .")
    plain = _intra("g5", "boss", "The boss is BLANK .", "The boss is loud .", "The boss is quiet .")
    copies, counts = counterfactual_examples([male, plain], ["gender"], set())
    assert copies == []
    assert counts["gender"]["group word in what differs"] == 1 and counts["gender"]["no group word"] == 1


def test_only_two_group_lists_flip_roles():
    with pytest.raises(ConfigError, match="race.*3 groups"):
        counterfactual_examples([], ["race"], set())


def test_word_forms_cover_plain_plurals():
    assert {"gentleman", "gentlemen"} <= word_forms("Gentlemen") and "mothers" in word_forms("mother")


def test_copies_train_as_sentences_but_add_no_kl_text():
    tok = make_tokenizer("llama")
    others = [
        _intra(f"{bt}1", "x", "The x is BLANK .", "The x is loud .", "The x is quiet .", bias_type=bt)
        for bt in ("profession", "race", "religion")
    ]
    examples = [SISTER, *others]
    copies, _ = counterfactual_examples(examples, ["gender"], set())
    plain, augmented = build_sequences(examples, tok, 0.0), build_sequences(examples, tok, 0.0, counterfactuals=copies)
    assert [s.key for s in augmented["stereo"]["gender"]] == ["g2:s", "g2~cf:s"]
    assert [s.key for s in augmented["anti"]["gender"]] == ["g2:a", "g2~cf:a"]
    assert augmented["partner"]["g2~cf:s"].key == "g2~cf:a"
    assert [s.key for s in augmented["kl"]] == [s.key for s in plain["kl"]]
    assert augmented["stereo"]["race"] == plain["stereo"]["race"]


def test_the_setting_names_the_key_on_an_unknown_type():
    from bias_unlearn.config.training import TrainStreamConfig

    with pytest.raises(ConfigError, match="train.counterfactual_types"):
        TrainStreamConfig(counterfactual_types=["age"])


def test_the_datamodule_trains_the_copies_and_never_a_held_out_target(stereoset_jsonl):
    from bias_unlearn.data.datamodule import UnlearningDataModule
    from bias_unlearn.data.splits import split_by_target
    from bias_unlearn.data.stereoset import load_stereoset

    split = split_by_target(load_stereoset("local", str(stereoset_jsonl)), seed=0, fractions=(0.5, 0.25, 0.25))
    dm = UnlearningDataModule(split, make_tokenizer("llama"), counterfactual_types=["gender"])
    plain = UnlearningDataModule(split, make_tokenizer("llama"))
    gender_train = [ex for ex in dm.train_examples if ex.bias_type == "gender"]
    held = held_out_words(split.dev + split.test)
    made = dm.counterfactual_counts["gender"]["made"]
    assert made + dm.counterfactual_counts["gender"]["held-out word"] == len(gender_train)
    assert len(dm.sequences["anti"]["gender"]) == len(plain.sequences["anti"]["gender"]) + made
    copies = [ex for ex in counterfactual_examples(gender_train, ["gender"], held)[0]]
    assert copies and not any(word in held for ex in copies for word in ex.stereotype.lower().split())
