"""How sentences become token ids, the same way for training and scoring: the start token, and a continuation's ids
with its leading space.

A continuation follows its context after a space (``" " + sentence``). Byte-level BPE tokenizers (GPT-2, Llama 3)
fold the space into the first word ("ĠThey"). SentencePiece-style tokenizers that prepend "▁" themselves (Llama 2,
Mistral: a Metaspace pre-tokenizer, or a Prepend normalizer) turn the same text into a lone "▁" piece followed by
"▁They": a token that is only whitespace, which the model would be scored on (and trained on) although it is not
part of the sentence. ``continuation_ids`` drops such a leading piece where the next piece already carries the
space.
"""

from __future__ import annotations

WHITESPACE_MARKS = ("▁", "Ġ", " ")  # SentencePiece's, byte-level BPE's and a plain space


def start_token_id(tokenizer) -> int:
    """The tokenizer's BOS id, or EOS where it has none (GPT-2's <|endoftext|>)."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise ValueError(f"tokenizer {type(tokenizer).__name__} has neither a BOS nor an EOS token to start sequences")


def is_blank(tokenizer, token_id: int) -> bool:
    """Whether a token is only whitespace (a lone "▁", "Ġ" or space)."""
    token = tokenizer.convert_ids_to_tokens(int(token_id))
    return isinstance(token, str) and token != "" and not token.strip("".join(WHITESPACE_MARKS) + " \t\n")


def continuation_ids(tokenizer, text: str) -> list[int]:
    """The ids of ``" " + text`` as a continuation, the space carried by its first word: a whitespace-only first
    piece is dropped where the next piece starts with the space itself (SentencePiece's "▁" + "▁They"), and kept
    where it is the only space there is (Llama 3's "Ġ" before digits)."""
    ids = tokenizer(" " + text.strip(), add_special_tokens=False)["input_ids"]
    if len(ids) > 1 and is_blank(tokenizer, ids[0]):
        following = tokenizer.convert_ids_to_tokens(int(ids[1]))
        if isinstance(following, str) and following.startswith(WHITESPACE_MARKS):
            return ids[1:]
    return ids
