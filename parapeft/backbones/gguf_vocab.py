"""Read the tokenizer section of a GGUF file into plain Python data.

Kept apart from the tokenizer construction so the (optional) ``gguf`` package is imported
only here, and only when a GGUF really has to be converted: loading an already converted
cache directory must work on machines that do not have ``gguf`` installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# llama.cpp token types (gguf.TokenType); repeated here so callers need not import gguf.
TOKEN_CONTROL = 3
TOKEN_USER_DEFINED = 4


@dataclass(frozen=True)
class GGUFVocab:
    """Everything a GGUF stores about its tokenizer (ids index ``tokens``)."""

    model: str  # tokenizer.ggml.model: "gpt2" (byte-level BPE), "llama" (SentencePiece), ...
    pre: str | None  # tokenizer.ggml.pre: llama.cpp's name for the pre-tokenizer regex
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    unk_id: int | None
    add_bos: bool
    chat_template: str | None
    context_length: int | None


def read_gguf_vocab(path: Path) -> GGUFVocab:
    """Parse ``path``'s ``tokenizer.*`` metadata (needs the ``gguf`` package)."""
    try:
        from gguf import GGUFReader
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("converting a GGUF checkpoint needs the `gguf` package: pip install gguf") from exc

    fields = GGUFReader(path).fields

    def get(key: str, default: Any = None) -> Any:
        field = fields.get(key)
        return default if field is None else field.contents()

    arch = get("general.architecture")
    return GGUFVocab(
        model=get("tokenizer.ggml.model"),
        pre=get("tokenizer.ggml.pre"),
        tokens=get("tokenizer.ggml.tokens"),
        token_types=[int(t) for t in get("tokenizer.ggml.token_type")],
        merges=get("tokenizer.ggml.merges", []),
        bos_id=get("tokenizer.ggml.bos_token_id"),
        eos_id=get("tokenizer.ggml.eos_token_id"),
        pad_id=get("tokenizer.ggml.padding_token_id"),
        unk_id=get("tokenizer.ggml.unknown_token_id"),
        add_bos=bool(get("tokenizer.ggml.add_bos_token", False)),
        chat_template=get("tokenizer.chat_template"),
        context_length=get(f"{arch}.context_length"),
    )
