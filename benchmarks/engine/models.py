"""Backbones and adapters for the engine benchmarks: random weights of named shapes, random PARA and LoRA adapters.

Timing does not depend on what the weights are, so every backbone is built from its config with random
weights (no download). Adapters get random non-zero weights: a fresh PARA adapter or a fresh LoRA B is
exactly zero, which would let a kernel's work go unnoticed in a correctness check, and a benchmark should
run what real adapters run.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

from parapeft import ParaConfig, get_para_model

SHAPES = {
    # The 1.1 B Llama shape of DESIGN.md (TinyLlama's widths).
    "1.1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
             "num_key_value_heads": 8, "vocab_size": 32000, "max_position_embeddings": 4096},
    # SmolLM2-135M's config (the embedded model): tied input and output embeddings.
    "smollm2": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True,
                "max_position_embeddings": 8192},
    # For checking the scripts on a CPU in seconds.
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 4096},
}
PARA_RANK = 12  # PARA's default generator width; the "PARA-matched" LoRA rank has as many parameters
LORA_TARGETS = ("q", "v")


def build_backbone(shape: str, device: str, dtype: torch.dtype, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**SHAPES[shape]))
    return model.to(dtype).eval()


def para_parameter_count(model: LlamaForCausalLM, rank: int = PARA_RANK) -> int:
    """Trainable parameters of one PARA adapter (default config) on ``model``; ``model`` is left as it was."""
    para = get_para_model(model, ParaConfig(r=rank), adapter_name="count")
    count = para.get_nb_trainable_parameters()[0]
    para.unload()
    return count


def lora_parameters_per_rank(config) -> int:
    """LoRA parameters per unit of rank on q and v: A is [r, hidden], B is [out, r]."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    q_out, v_out = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    return config.num_hidden_layers * (2 * config.hidden_size + q_out + v_out)


def para_matched_lora_rank(model: LlamaForCausalLM) -> int:
    return max(1, round(para_parameter_count(model) / lora_parameters_per_rank(model.config)))


def random_para_tensors(engine, rank: int, seed: int, scale: float = 0.02) -> dict[str, torch.Tensor]:
    """The tensors of a PARA adapter (default config, ``rank``) for ``engine``'s backbone, random and small, as
    ``Engine.add_adapter`` takes them (no files written)."""
    from parapeft.model import adapter_shapes

    generator = torch.Generator().manual_seed(seed)
    shapes = adapter_shapes(ParaConfig(r=rank), engine.para.dims)
    return {key: torch.randn(shape, generator=generator) * scale for key, shape in shapes.items()}


def random_lora_dirs(model, rank: int, count: int, directory: Path, seed: int = 10_000) -> list[Path]:
    """``count`` random peft LoRA adapters (q and v, ``rank``) written under ``directory``."""
    dtype = model.get_input_embeddings().weight.dtype
    return [save_peft_lora(directory / f"l{index}", random_lora(model.config, rank, seed + index, "cpu", dtype), rank)
            for index in range(count)]


def random_lora(config, rank: int, seed: int, device, dtype) -> dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]:
    """{(layer, "q"|"v"): (A [rank, hidden], B [out, rank])}, as peft stores them (B without the scaling)."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    widths = {"q": config.num_attention_heads * head_dim, "v": config.num_key_value_heads * head_dim}
    generator = torch.Generator().manual_seed(seed)
    lora = {}
    for layer in range(config.num_hidden_layers):
        for target in LORA_TARGETS:
            a = torch.randn(rank, config.hidden_size, generator=generator) / config.hidden_size ** 0.5
            b = torch.randn(widths[target], rank, generator=generator) * 0.01
            lora[layer, target] = (a.to(device, dtype), b.to(device, dtype))
    return lora


def save_peft_lora(directory: Path, lora: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]], rank: int) -> Path:
    """Write ``lora`` as an HF peft LoRA adapter directory (lora_alpha = r, so B is stored as given)."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for (layer, target), (a, b) in lora.items():
        prefix = f"base_model.model.model.layers.{layer}.self_attn.{target}_proj"
        tensors[f"{prefix}.lora_A.weight"] = a.detach().cpu().contiguous()
        tensors[f"{prefix}.lora_B.weight"] = b.detach().cpu().contiguous()
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": rank, "target_modules": ["q_proj", "v_proj"],
              "lora_dropout": 0.0, "bias": "none", "task_type": "CAUSAL_LM"}
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory
