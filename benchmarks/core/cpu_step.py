"""One forward+backward of SmolLM2-135M on 8 × 256 tokens: bare backbone vs PARA (r=12), same run, same data.

The bare row trains nothing (no parameter needs a gradient) but still back-propagates
to the input embeddings' output, which is what PARA's backward must reach too; LoRA r=8
(q,v) through HF peft is measured alongside as the usual baseline.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model

from common import save
from parapeft import ParaConfig, get_para_model
from parapeft.backbones import load_base_model


def one_step(model, batch, bare: bool) -> float:
    started = time.perf_counter()
    if bare:
        embeds = model.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_(True)
        loss = model(inputs_embeds=embeds, labels=batch["labels"]).loss
    else:
        loss = model(**batch).loss
    loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = load_base_model("smollm2-135m")[1]
    ids = torch.randint(100, tokenizer.vocab_size, (args.batch, args.tokens))
    labels = ids.clone()
    labels[:, : args.tokens // 2] = -100  # first half prompt, second half response
    batch = {"input_ids": ids, "labels": labels}
    bare, _ = load_base_model("smollm2-135m")
    bare.requires_grad_(False)
    para = get_para_model(load_base_model("smollm2-135m")[0], ParaConfig(r=12))
    lora = get_peft_model(load_base_model("smollm2-135m")[0], LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    models = {"bare": bare.train(), "para_r12": para.train(), "lora_r8_qv": lora.train()}
    results = {name: [] for name in models}
    for round_index in range(args.repeats + 1):  # round-robin so drift in machine load hits all alike
        for name, model in models.items():
            seconds = one_step(model, batch, bare=name == "bare")
            if round_index:  # the first round warms up allocators and is dropped
                results[name].append(seconds)
    summary = {name: round(statistics.median(t), 3) for name, t in results.items()}
    for name, seconds in summary.items():
        print(f"{name:>10}: {seconds:.3f} s per forward+backward (median of {args.repeats}), "
              f"{seconds / summary['bare']:.3f}x bare")
    save("cpu_step.json", {"batch": args.batch, "tokens": args.tokens, "median_s": summary, "all_s": results})


if __name__ == "__main__":
    main()
