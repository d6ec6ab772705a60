"""Trainable parameters of PARA (r=12) against LoRA r=8 on q,v, counted on meta-device models.

Both counts come from the libraries themselves (our ParaModel, HF peft's LoRA), not from formulas.
"""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

from common import save
from parapeft import ParaConfig, get_para_model
from parapeft.backbones import resolve_model

LLAMA2_7B = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                        num_key_value_heads=32, vocab_size=32000)


def counts(config) -> dict:
    with torch.device("meta"):
        para = get_para_model(AutoModelForCausalLM.from_config(config), ParaConfig(r=12))
        lora = get_peft_model(AutoModelForCausalLM.from_config(config), LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    para_trainable, total = para.get_nb_trainable_parameters()
    lora_trainable, _ = lora.get_nb_trainable_parameters()
    backbone = total - para_trainable
    return {"backbone_params": backbone, "para_r12": para_trainable, "lora_r8_qv": lora_trainable,
            "para_over_lora": round(para_trainable / lora_trainable, 3),
            "para_percent_of_backbone": round(100 * para_trainable / backbone, 4)}


def main() -> None:
    rows = {
        "smollm2-135m": counts(AutoConfig.from_pretrained(resolve_model("smollm2-135m"), local_files_only=True)),
        "llama-2-7b-shape": counts(LLAMA2_7B),
    }
    for name, row in rows.items():
        print(f"{name:>18}: PARA r=12 {row['para_r12']:>10,d} | LoRA r=8 q,v {row['lora_r8_qv']:>10,d} | "
              f"ratio {row['para_over_lora']:.2f} | backbone {row['backbone_params']:,d}")
    save("param_counts.json", {"rows": rows})


if __name__ == "__main__":
    main()
