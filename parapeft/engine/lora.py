"""Reading HF peft LoRA adapters (safetensors only) for the engine's LoRA mode: q and v projections."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..adapter_io import AdapterLoadError

_KEY = re.compile(r"layers\.(\d+)\.self_attn\.([qv])_proj\.lora_([AB])\.weight$")


def read_lora(directory: str | Path, num_layers: int) -> dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]:
    """{(layer, "q"|"v"): (A [r, d], B·scaling [out, r])} of a peft LoRA adapter on q_proj / v_proj."""
    directory = Path(directory)
    try:
        config = json.loads((directory / "adapter_config.json").read_text())
    except (OSError, ValueError) as err:
        raise AdapterLoadError(f"cannot read the LoRA config in {directory}: {err}") from err
    if str(config.get("peft_type", "")).upper() != "LORA" or config.get("use_dora"):
        raise AdapterLoadError(f"{directory} is not a plain LoRA adapter (peft_type LORA without DoRA)")
    rank, alpha = int(config["r"]), float(config.get("lora_alpha", config["r"]))
    scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    try:
        tensors = load_file(str(directory / "adapter_model.safetensors"))
    except (OSError, SafetensorError) as err:
        raise AdapterLoadError(f"{directory}/adapter_model.safetensors is not a readable safetensors file: {err}") from err
    parts: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = _KEY.search(key)
        if not match:
            raise AdapterLoadError(f"{directory}: the engine's LoRA mode covers q_proj and v_proj only, found {key}")
        layer, target, part = int(match.group(1)), match.group(2), match.group(3)
        if layer >= num_layers:
            raise AdapterLoadError(f"{directory}: layer {layer} does not exist in a {num_layers}-layer backbone")
        parts.setdefault((layer, target), {})[part] = tensor
    if any(set(p) != {"A", "B"} for p in parts.values()):
        raise AdapterLoadError(f"{directory}: every LoRA module needs both lora_A and lora_B")
    return {key: (p["A"], p["B"] * scaling) for key, p in parts.items()}
