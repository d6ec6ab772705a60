"""Attaching a fine-tuning method to a backbone, and matching trainable-parameter budgets.

PARA is ours; LoRA, DoRA and IA3 come from HF peft, targeting the same layers'
query and value projections (IA3 also the FFN up projection, as PARA does).
``targets`` changes what a method adapts: PARA's activations (see
``ParaConfig.targets``) or the projections LoRA / DoRA wrap (q, k, v, o, up,
down, gate); ``para_form`` holds a PARA variant's other settings
(``static_bias``, ``scale_form``, ``generator_input``, ``granularity``,
``pool_layer``, ``layers_to_transform``).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from ..backbones.identity import backbone_to_load
from ..config import ParaConfig, read_adapter_config
from ..hub import resolve_adapter_dir
from ..model import ParaModel, get_para_model

METHODS = ("para", "lora", "dora", "ia3")
LORA_TARGETS = ["q_proj", "v_proj"]
IA3_TARGETS = ["q_proj", "v_proj", "up_proj"]
# Short names of the projections LoRA / DoRA may wrap (the --targets of `para train`).
PROJECTIONS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj", "up": "up_proj", "down": "down_proj",
               "gate": "gate_proj"}


def lora_modules(targets: list[str] | None) -> list[str]:
    if targets is None:
        return list(LORA_TARGETS)
    unknown = [t for t in targets if t not in PROJECTIONS]
    if unknown or not targets:
        raise ValueError(f"LoRA targets must be a non-empty subset of {', '.join(PROJECTIONS)}; got {targets!r}")
    return [PROJECTIONS[t] for t in targets]


def attach(model: nn.Module, method: str, rank: int, pooler: str = "mean", dropout: float = 0.0,
           targets: list[str] | None = None, para_form: dict | None = None) -> nn.Module:
    """Freeze ``model`` and add a fresh adapter of ``method``; ``rank`` is PARA's r or LoRA/DoRA's r (IA3 has none).

    ``targets`` (None: the method's default) and ``para_form`` are described in the module docstring."""
    if para_form and method != "para":
        raise ValueError(f"{', '.join(para_form)} apply to PARA only")
    if method == "para":
        form = dict(para_form or {})
        if targets is not None:
            form["targets"] = targets
        return get_para_model(model, ParaConfig(r=rank, pooler=pooler, dropout=dropout, **form))
    from peft import IA3Config, LoraConfig, get_peft_model

    if method in ("lora", "dora"):
        config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=dropout, target_modules=lora_modules(targets),
                            use_dora=method == "dora", task_type="CAUSAL_LM")
    elif method == "ia3":
        if targets is not None:
            raise ValueError("IA3's targets are fixed (q, v, up)")
        config = IA3Config(target_modules=IA3_TARGETS, feedforward_modules=["up_proj"], task_type="CAUSAL_LM")
    else:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return get_peft_model(model, config)


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_on_meta(config, method: str, rank: int, pooler: str = "mean", targets: list[str] | None = None,
                  para_form: dict | None = None) -> int:
    """Trainable parameters of ``method`` on a backbone shaped like ``config`` (no weights allocated)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(copy.deepcopy(config))
        return trainable_parameters(attach(model, method, rank, pooler, targets=targets, para_form=para_form))


def match_budget(config, method: str, target: int, pooler: str = "mean", max_rank: int = 256,
                 targets: list[str] | None = None, para_form: dict | None = None) -> tuple[int, int]:
    """The rank of ``method`` whose count is closest to ``target`` → (rank, count). IA3 has a fixed count."""
    if method == "ia3":
        return 0, count_on_meta(config, "ia3", 0)

    def count(r: int) -> int:
        return count_on_meta(config, method, r, pooler, targets, para_form)

    # Counts grow linearly in the rank, so two probes give the slope; check the neighbours for the closest.
    one, two = count(1), count(2)
    slope, offset = two - one, one - (two - one)
    needed = round((target - offset) / slope)
    if needed > max_rank:
        raise ValueError(f"matching {target:,} parameters needs {method} r = {needed}, above the limit of {max_rank}")
    guess = max(1, needed)
    candidates = {r: count(r) for r in {max(1, guess - 1), guess, min(max_rank, guess + 1)}}
    rank = min(candidates, key=lambda r: (abs(candidates[r] - target), r))
    return rank, candidates[rank]


def read_config_json(adapter_dir: str | Path) -> tuple[Path, dict]:
    """``(path, contents)`` of the adapter_config.json of a local adapter directory or Hub repository."""
    return read_adapter_config(resolve_adapter_dir(adapter_dir))


def adapter_backbone(adapter_dir: str | Path) -> str | None:
    """The backbone to load for a saved adapter: its named variant if it has one, else its base model id."""
    _, config = read_config_json(adapter_dir)
    return backbone_to_load(config.get("base_model_name_or_path"), config.get("base_model_variant"))


def adapter_method(adapter_dir: str | Path) -> str:
    """Which method saved ``adapter_dir`` (from its adapter_config.json)."""
    path, config = read_config_json(adapter_dir)
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type == "PARA":
        return "para"
    if peft_type == "LORA":
        return "dora" if config.get("use_dora") else "lora"
    if peft_type == "IA3":
        return "ia3"
    raise ValueError(f"{path}: unsupported adapter type {peft_type!r}")


def load_adapter(model: nn.Module, adapter_dir: str | Path, is_trainable: bool = False) -> nn.Module:
    """Attach a saved adapter of any supported method (safetensors only)."""
    if adapter_method(adapter_dir) == "para":
        return ParaModel.from_pretrained(model, adapter_dir, is_trainable=is_trainable)
    from peft import PeftModel

    directory = resolve_adapter_dir(adapter_dir)
    if not (directory / "adapter_model.safetensors").is_file():
        # peft would fall back to a pickled adapter_model.bin; user files are never unpickled here.
        raise FileNotFoundError(f"no adapter_model.safetensors in {adapter_dir} (only safetensors adapters are loaded)")
    return PeftModel.from_pretrained(model, str(directory), is_trainable=is_trainable)
