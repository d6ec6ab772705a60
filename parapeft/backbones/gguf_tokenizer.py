"""Rebuild a byte-level BPE tokenizer exactly from a GGUF's vocabulary and merges.

transformers' own GGUF tokenizer converter is lossy for SmolLM2: it drops the
``Digits(individual_digits=True)`` pre-tokenizer (llama.cpp only records it as
``pre="smollm"``), adds SentencePiece decoder steps, sets ``eos_token`` to the BOS token
and leaves no pad token. The vocabulary and merge list in the GGUF are the original ones,
so rebuilding the original ``tokenizer.json`` pipeline around them reproduces the Hugging
Face tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from .gguf_vocab import TOKEN_CONTROL, TOKEN_USER_DEFINED, GGUFVocab


def build_byte_level_bpe(
    vocab: GGUFVocab, *, split_digits: bool, extra_special_tokens: Sequence[str] = ()
) -> PreTrainedTokenizerFast:
    """GPT-2 style tokenizer (ByteLevel pre-tokenizer/decoder, BPE model) from ``vocab``.

    ``split_digits`` puts ``Digits(individual_digits=True)`` in front of the ByteLevel
    pre-tokenizer, as in SmolLM2/StarCoder tokenizers. CONTROL tokens become special added
    tokens and USER_DEFINED ones plain added tokens, keeping their GGUF ids.
    """
    if vocab.model != "gpt2":
        raise ValueError(f"expected a byte-level BPE ('gpt2') GGUF tokenizer, got {vocab.model!r}")
    if vocab.add_bos:
        raise ValueError("this GGUF asks for an automatic BOS token, which this GPT-2 style pipeline does not add")
    bpe = models.BPE(
        vocab={token: index for index, token in enumerate(vocab.tokens)},
        # Byte-level symbols never contain a literal space, so it is an unambiguous separator.
        merges=[tuple(merge.split(" ")) for merge in vocab.merges],
        fuse_unk=False,
        byte_fallback=False,
    )
    backend = Tokenizer(bpe)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    backend.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
        if split_digits
        else byte_level
    )
    backend.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    backend.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    backend.add_special_tokens([_added(vocab, i, True) for i in _ids_of_type(vocab, TOKEN_CONTROL)])
    backend.add_tokens([_added(vocab, i, False) for i in _ids_of_type(vocab, TOKEN_USER_DEFINED)])

    def token(index: int | None) -> str | None:
        return None if index is None else vocab.tokens[index]

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=token(vocab.bos_id),
        eos_token=token(vocab.eos_id),
        pad_token=token(vocab.pad_id),
        unk_token=token(vocab.unk_id),
        extra_special_tokens=list(extra_special_tokens),
        model_max_length=vocab.context_length or int(1e30),
        clean_up_tokenization_spaces=False,
    )
    if vocab.chat_template:
        tokenizer.chat_template = vocab.chat_template
    return tokenizer


def _ids_of_type(vocab: GGUFVocab, token_type: int) -> list[int]:
    return [index for index, kind in enumerate(vocab.token_types) if kind == token_type]


def _added(vocab: GGUFVocab, index: int, special: bool) -> AddedToken:
    return AddedToken(vocab.tokens[index], special=special, normalized=False,
                      lstrip=False, rstrip=False, single_word=False)
