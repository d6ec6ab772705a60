"""Prefill time of a prompt through ParaModel with PARA adapters vs the bare backbone: the generators' extra cost.

The engine prefills each request through ParaModel in one pass: the pass computes the prompt's vectors
layer by layer (pooling the prompt, two small matmuls per layer) while it fills the KV cache. This
times that pass against the same forward of the plain backbone (no PARA wrappers), for prompts of
128 to 2048 tokens, one prompt (the engine's case) and a batch of 8 prompts with 8 different adapters.
Both modes run the same token ids into a fresh DynamicCache and compute the last position's logits
only (as generate's prefill does); random bf16 weights on a GPU.

compute_floor_ms is the pass's matmul work (projections, causal attention, the last position's head)
at the GPU's dense BF16 peak (--peak-tflops, 989 for an H200).

Examples (from the repository root):
  python benchmarks/engine/prefill.py                               # 1.1b and smollm2, on the GPU
  python benchmarks/engine/prefill.py --shapes tiny --lengths 16 64 --steps 2 --output /tmp/prefill.json
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import torch
from transformers import DynamicCache

from measure import (H200_BF16_FLOPS, Budget, ResultFile, add_output_arguments, free_memory, log, pick_device,
                     time_steps)
from models import PARA_RANK, SHAPES, build_backbone, randomize_para_adapter
from parapeft import ParaConfig, get_para_model


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=["1.1b", "smollm2"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512, 1024, 2048], help="prompt tokens")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8],
                        help="prompts per pass; each prompt of a batch has its own adapter")
    parser.add_argument("--steps", type=int, default=10, help="timed passes per row")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=H200_BF16_FLOPS / 1e12,
                        help="dense BF16 peak for the compute floor, TFLOP/s (default: H200, 989)")
    add_output_arguments(parser, Path(__file__).with_name("prefill.json"), budget_s=170)
    return parser.parse_args()


def prefill_flops(model, rows: int, tokens: int) -> float:
    """Matmul FLOPs of one prefill pass: 2 per weight per token in the layers, causal attention scores and
    weighted values (2 · tokens² · hidden per layer and row, half of the square), the head for one position."""
    config = model.config
    layer_params = sum(p.numel() for n, p in model.named_parameters() if ".layers." in n and p.dim() == 2)
    head = model.get_output_embeddings().weight.numel()
    attention = 2 * tokens * tokens * config.num_attention_heads * (config.hidden_size // config.num_attention_heads)
    return rows * (2 * tokens * layer_params + config.num_hidden_layers * attention + 2 * head)


@torch.no_grad()
def bare_pass(model, ids: torch.Tensor, _: int):
    return model(input_ids=ids, past_key_values=DynamicCache(config=model.config), use_cache=True, logits_to_keep=1)


@torch.no_grad()
def para_pass(para, names: list[str], ids: torch.Tensor, _: int):
    return para(input_ids=ids, adapter_names=names[: ids.shape[0]], past_key_values=DynamicCache(config=para.config),
                use_cache=True, logits_to_keep=1)


def with_adapters(model, count: int):
    """Wrap ``model`` in a ParaModel with ``count`` random PARA adapters a0, a1, …; the adapter names."""
    names = [f"a{i}" for i in range(count)]
    para = get_para_model(model, ParaConfig(r=PARA_RANK), adapter_name=names[0])
    for name in names[1:]:
        para.add_adapter(name, ParaConfig(r=PARA_RANK))
    for index, name in enumerate(names):
        randomize_para_adapter(para, name, seed=index)
    return para.eval(), names


def main() -> None:
    args = parse_args()
    device, dtype = pick_device()
    budget = Budget(args.budget_s)
    header = {"dtype": str(dtype).replace("torch.", ""), "peak_flops": args.peak_tflops * 1e12, "para_rank": PARA_RANK,
              "notes": "bare: the plain backbone; para: ParaModel, each prompt of the batch with its own PARA adapter; "
                       "both into a fresh DynamicCache, logits of the last position only"}
    results = ResultFile(args.output, "prefill", header, append=args.append)
    rows: list[dict] = []
    for shape in args.shapes:
        log(budget, f"building the {shape} backbone (random weights, {header['dtype']}) on {device}")
        model = build_backbone(shape, device, dtype)
        generator = torch.Generator(device=device).manual_seed(0)
        prompts = {(b, n): torch.randint(0, model.config.vocab_size, (b, n), device=device, generator=generator)
                   for b in args.batch_sizes for n in args.lengths}
        bare_ms: dict[tuple[int, int], float] = {}
        for mode in ("bare", "para"):
            if mode == "bare":
                forward = partial(bare_pass, model)
            else:  # wrapped only now: the bare rows time the backbone without PARA's wrappers
                para, names = with_adapters(model, max(args.batch_sizes))
                forward = partial(para_pass, para, names)
            for batch in args.batch_sizes:
                for length in args.lengths:
                    if budget.exhausted():
                        log(budget, f"budget of {args.budget_s:.0f} s used up: skipping {shape} {mode} "
                                    f"batch {batch}, {length} tokens")
                        continue
                    timing = time_steps(partial(forward, prompts[batch, length]), args.steps, args.warmup, device)
                    ms = timing.pop("step_ms")
                    flops = prefill_flops(model, batch, length)
                    row = {"shape": shape, "mode": mode, "batch_size": batch,
                           "distinct_adapters": batch if mode == "para" else 0, "prompt_tokens": length,
                           "prefill_ms": ms, **timing, "tokens_per_s": round(batch * length / ms * 1000, 1),
                           "compute_floor_ms": round(flops / (args.peak_tflops * 1e12) * 1000, 4)}
                    if mode == "bare":
                        bare_ms[batch, length] = ms
                    elif (batch, length) in bare_ms:
                        row["para_over_bare"] = round(ms / bare_ms[batch, length], 4)
                    rows.append(row)
                    results.save(rows)
                    extra = f", PARA / bare {row['para_over_bare']:.3f}" if "para_over_bare" in row else ""
                    log(budget, f"{shape} {mode} batch {batch}, {length} tokens: {ms:.3f} ms "
                                f"(compute floor {row['compute_floor_ms']:.4g} ms{extra})")
        del model, para, forward, prompts
        free_memory(device)
    results.finish(rows, budget, plot=not args.no_plot)


if __name__ == "__main__":
    main()
