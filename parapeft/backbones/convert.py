"""Turn a GGUF checkpoint into an ordinary Hugging Face model directory.

Dequantising GGUF tensors takes ~15 s and needs the ``gguf`` package; doing it once and
saving ``config.json`` + ``model.safetensors`` + tokenizer files makes every later load a
plain, offline ``from_pretrained(dir)``. The weights are stored in float32, the exact
result of dequantisation, so the caller's requested dtype is applied at load time.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast

from .gguf_vocab import GGUFVocab, read_gguf_vocab

TokenizerBuilder = Callable[[GGUFVocab], PreTrainedTokenizerFast]


def convert_gguf(gguf_path: Path, out_dir: Path, build_tokenizer: TokenizerBuilder) -> None:
    """Write model, tokenizer and generation config for ``gguf_path`` into ``out_dir``.

    The tokenizer comes from ``build_tokenizer`` (the registry's faithful recipe) rather
    than from transformers' GGUF tokenizer converter, which is lossy for some tokenizers.
    """
    print(f"[parapeft] converting {gguf_path.name} to a Hugging Face directory", file=sys.stderr)
    tokenizer = build_tokenizer(read_gguf_vocab(gguf_path))
    model = _dequantized_model(gguf_path)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _dequantized_model(gguf_path: Path) -> torch.nn.Module:
    """Load through transformers' GGUF support, then move the weights into a plain model.

    A model loaded with ``gguf_file=`` carries a GGUF "quantizer" that refuses
    ``save_pretrained``, although its weights are already dense float32 tensors; copying
    them into a model built from the cleaned config gives a normal, serialisable model.
    """
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32, local_files_only=True
    )
    settings = loaded.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        settings.pop(key, None)
    # GGUF stores floats as float32: 1e-5 comes back as 9.999999747378752e-06. Its shortest
    # float32 repr restores the value the original config.json had.
    settings["rms_norm_eps"] = float(str(np.float32(settings["rms_norm_eps"])))
    config = AutoConfig.for_model(settings.pop("model_type"), **settings)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    return model
