"""``load_base_model``: one entry point for named models, Hub ids, local dirs and GGUF files.

Named models resolve to a converted cache directory and are always loaded with
``local_files_only=True``, so once cached nothing touches the network. Everything else
goes to transformers unchanged; only when that fails for a name that is not a local path
do we raise an error that also lists the named models, since a typo is the likely cause.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .materialize import ensure_named_model
from .registry import NAMED_MODELS

DEFAULT_MODEL = "smollm2-135m"


class UnknownModelError(ValueError):
    """Not a named model, not an existing path, and not loadable from the Hugging Face Hub."""


def resolve_model(name_or_path: str, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """Local HF directory for a named model (fetched/converted on first use); else unchanged."""
    spec = NAMED_MODELS.get(name_or_path)
    return str(ensure_named_model(spec, cache_dir)) if spec is not None else name_or_path


class UnsafeWeightsError(ValueError):
    """A checkpoint whose weights exist only in a pickle-based format."""


def load_base_model(
    name_or_path: str = DEFAULT_MODEL,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, in eval mode on ``device`` with weights in ``dtype``.

    ``name_or_path`` is a named model (see ``NAMED_MODELS``; cached under ``cache_dir``,
    default ``$PARA_CACHE`` or ``~/.cache/parapeft``), a local HF directory, a local
    ``.gguf`` file, or a Hugging Face Hub id (read from the Hub's cache when it is there, downloaded
    otherwise unless ``HF_HUB_OFFLINE`` is set).
    """
    source = resolve_model(name_or_path, cache_dir)
    local = Path(source).expanduser()
    kwargs: dict[str, Any]
    if local.is_dir():
        if not any(local.glob("*.safetensors")) and any(local.glob("*.bin")):
            raise UnsafeWeightsError(f"{local} holds its weights only as pickled .bin files, which are never loaded "
                                     "(unpickling runs code); convert them to safetensors first")
        kwargs = {"pretrained_model_name_or_path": str(local), "local_files_only": True}
    elif local.is_file():
        if local.suffix != ".gguf":
            raise ValueError(f"{local} is a file but not a .gguf checkpoint; pass a model directory instead")
        kwargs = {"pretrained_model_name_or_path": str(local.parent), "gguf_file": local.name,
                  "local_files_only": True}
    else:
        kwargs = {"pretrained_model_name_or_path": source}
    try:
        if "local_files_only" in kwargs:
            tokenizer, model = _load(kwargs, dtype)
        else:
            try:  # a Hub id: the Hub's cache first, so a cached model loads without asking the network
                tokenizer, model = _load({**kwargs, "local_files_only": True}, dtype)
            except OSError:
                tokenizer, model = _load(kwargs, dtype)  # honours HF_HUB_OFFLINE: refuses when offline
    except (OSError, ValueError) as exc:
        if "local_files_only" in kwargs:
            raise
        raise UnknownModelError(
            f"cannot load {name_or_path!r}: it is not a named model ({', '.join(sorted(NAMED_MODELS))}), "
            f"not an existing local path, and not loadable from the Hugging Face Hub ({exc})"
        ) from exc
    return model.to(device).eval(), tokenizer


def _load(kwargs: dict[str, Any], dtype: torch.dtype) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    # Weights from safetensors (or GGUF) only: a checkpoint with nothing but pickled .bin files is refused, never
    # unpickled (torch.load's weights_only narrows what a pickle can do, but it is still a pickle).
    weights = {} if "gguf_file" in kwargs else {"use_safetensors": True}
    return AutoTokenizer.from_pretrained(**kwargs), AutoModelForCausalLM.from_pretrained(**kwargs, **weights, dtype=dtype)
