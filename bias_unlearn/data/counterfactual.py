"""Counterfactual copies of train examples (``train.counterfactual_types``): every group word of the type's word list
(data/word_lists/) swapped for its counterpart in the other group, in the context and both sentences of an example.

Why: a type's held-out targets are other words of the same groups (gender: train "sister", "schoolboy"; test
"mother", "himself"), and the unlearning signal of a train sentence is tied to its own target word. The copy of
"The schoolgirl is weak" (stereotype) is "The schoolboy is weak", an anti-stereotype; so a copy's roles flip: its
stereotype is the swapped anti-stereotype and its anti-stereotype the swapped stereotype. That holds where a type's
list has two groups (only such types are accepted) and where no group word is among the words that tell the two
sentences apart ("A male is masculine" -> "A female is feminine" keeps its role: such examples get no copy).

The protocol stands: a copy that would bring in a word naming a dev or test target of the split (or its plural or
singular) is dropped whole, so nothing trains on a held-out target that the original data did not already hold.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from bias_unlearn.config.errors import ConfigError
from bias_unlearn.data.records import StereoSetExample
from bias_unlearn.data.word_lists import Counterfactuals, load_word_list


def word_forms(word: str) -> set[str]:
    """A word with its plain plural / singular ("gentlemen" -> gentleman, "mother" -> mothers)."""
    word = word.lower()
    forms = {word, word + "s", word + "es", word.removesuffix("s"), word.removesuffix("es")}
    if word.endswith("men"):
        forms.add(word[:-3] + "man")
    if word.endswith("man"):
        forms.add(word[:-3] + "men")
    return {f for f in forms if f}


def held_out_words(examples: Iterable[StereoSetExample]) -> set[str]:
    """Every form of every target term of ``examples`` (a split's dev and test), lower case."""
    return {form for ex in examples for form in word_forms(ex.target)}


def differing_words(a: str, b: str) -> set[str]:
    """The words one sentence has and the other lacks (an intrasentence pair: the filled-in words)."""
    words_a, words_b = (set(re.findall(r"[\w'-]+", s.lower())) for s in (a, b))
    return words_a ^ words_b


def check_two_groups(bias_types: Sequence[str]) -> None:
    for bias_type in bias_types:
        groups = load_word_list(bias_type).groups
        if len(groups) != 2:
            raise ConfigError(
                f"train.counterfactual_types: {bias_type!r} has {len(groups)} groups ({', '.join(groups)}); a swap "
                "flips stereotype and anti-stereotype only between two groups"
            )


def counterfactual_examples(
    examples: Sequence[StereoSetExample], bias_types: Sequence[str], held_out: set[str]
) -> tuple[list[StereoSetExample], dict[str, Counter]]:
    """The counterfactual copies of the ``examples`` of ``bias_types``, and per type how many were made and why the
    others were not: ``held-out word``; ``no group word`` in a sentence; ``group word in what differs`` (the swap
    would change what tells the two sentences apart, as in "a male ... masculine", so the roles would not flip)."""
    check_two_groups(bias_types)
    counts: dict[str, Counter] = {bt: Counter() for bt in bias_types}
    copies = []
    for bias_type in bias_types:
        swapper = Counterfactuals((bias_type,), resolve_her=True)
        for ex in (ex for ex in examples if ex.bias_type == bias_type):
            swapped = [swapper.swap(text, 1) for text in (ex.context, ex.stereotype, ex.anti_stereotype, ex.unrelated)]
            (context, _), (stereo, s_swaps), (anti, a_swaps), (unrelated, _) = swapped
            brought_in = {text[s.new_start : s.new_end].lower() for text, swaps in swapped for s in swaps}
            if brought_in & held_out:
                counts[bias_type]["held-out word"] += 1
            elif not s_swaps or not a_swaps:
                counts[bias_type]["no group word"] += 1
            elif swapper.matches(" ".join(differing_words(ex.stereotype, ex.anti_stereotype))):
                counts[bias_type]["group word in what differs"] += 1
            else:
                counts[bias_type]["made"] += 1
                target, _ = swapper.swap(ex.target, 1)
                copies.append(
                    dataclasses.replace(
                        ex,
                        id=f"{ex.id}~cf",
                        target=target,
                        context=context,
                        stereotype=anti,
                        anti_stereotype=stereo,
                        unrelated=unrelated,
                    )
                )
    return copies, counts
