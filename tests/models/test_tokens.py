"""models/tokens.py: a continuation's leading space, for the three tokenizer styles causal LMs ship (built here with
the ``tokenizers`` library): byte-level BPE (GPT-2, Llama 3), a Metaspace pre-tokenizer and a Prepend normalizer
(SentencePiece style: Llama 2, Mistral). A scored or trained continuation never starts with a whitespace-only token,
where ``" " + sentence`` (the code of 2026-12-04) gave the SentencePiece styles a lone "▁"."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from bias_unlearn.data.records import StereoSetExample
from bias_unlearn.data.streams import tokenize_sentence
from bias_unlearn.eval.scorer import SentenceScorer
from bias_unlearn.models.tokens import continuation_ids, is_blank

CORPUS = [
    "I met the nurse yesterday. They were very kind. The year was 2020 then.",
    "I met the nurse yesterday. They were very cruel. She was there in 1999.",
] * 20


def build(style: str) -> PreTrainedTokenizerFast:
    """A small BPE tokenizer trained here in the given style (merges never span words, as in the real ones)."""
    backend = Tokenizer(models.BPE(unk_token=None if style == "byte_bpe" else "<unk>"))
    if style == "byte_bpe":
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        backend.decoder = decoders.Metaspace()
        alphabet = ["▁"]
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=alphabet)
    backend.train_from_iterator(CORPUS, trainer)
    if style == "prepend":  # Llama 2's fast tokenizer: the space handling in the normalizer, no pre-tokenizer
        backend.pre_tokenizer = None
        backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


STYLES = ["byte_bpe", "metaspace", "prepend"]


@pytest.mark.parametrize("style", STYLES)
def test_a_continuation_never_starts_with_a_whitespace_only_token(style):
    tok = build(style)
    ids = continuation_ids(tok, "They were very kind.")
    assert ids and not is_blank(tok, ids[0])
    assert tok.decode(ids).strip() == "They were very kind."
    old = tok(" They were very kind.", add_special_tokens=False)["input_ids"]
    if style == "prepend":  # the encoding of 2026-12-04 scored and trained on a lone "▁" here
        assert is_blank(tok, old[0]) and tok.convert_ids_to_tokens(old[:2]) == ["▁", "▁They"]


@pytest.mark.parametrize("style", STYLES)
def test_training_and_scoring_encode_the_same_continuation(style):
    tok = build(style)
    example = StereoSetExample(
        "x",
        "intersentence",
        "nurse",
        "profession",
        "I met the nurse yesterday.",
        "They were very kind.",
        "They were very cruel.",
        "The year was 2020 then.",
    )
    ids, mask = tokenize_sentence(tok, tok.bos_token_id, example, example.stereotype)
    continuation = [i for i, m in zip(ids, mask) if m]
    assert continuation == continuation_ids(tok, example.stereotype)
    scorer = SentenceScorer(model=None, tokenizer=tok)
    requests = []
    scorer.score = lambda groups, desc: requests.extend(groups) or []  # the requests, not the model
    scorer.continuations([(example.context, [example.stereotype])])
    assert list(requests[0][0].continuation) == continuation and not is_blank(tok, continuation[0])


def test_a_lone_space_that_is_the_only_space_is_kept():
    """Where the piece after a whitespace-only token does not carry the space itself (byte-level BPE before digits,
    as Llama 3 splits them), the space token stays: dropping it would score "then.2020" for "then. 2020"."""
    tok = build("byte_bpe")
    ids = continuation_ids(tok, "2020 then.")
    assert tok.convert_ids_to_tokens(ids[:2]) == ["Ġ", "20"] and tok.decode(ids) == " 2020 then."
