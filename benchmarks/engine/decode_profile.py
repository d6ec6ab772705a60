"""Where one decoding step's time goes: its kernels, by kind, against the step's wall time and the HBM floor.

The engine's decoding step for --batch sequences with --prompt-token contexts, bare and with PARA (a
distinct adapter per row), is timed replayed from its CUDA graph (as it serves), then its kernels are profiled
with torch.profiler over --steps runs of the same step launched eagerly (the same kernels; a profiler may
not see inside a graph). Each kernel's GPU time is summed per step and grouped by kind (the matmuls, paged
attention, norms, rotary + cache write, SiLU-multiply, small copies and indexing, the rest).
``gaps_ms`` is the step's wall time minus its kernels' time: time the GPU spends between kernels.
``matmul_tb_s`` is the weights' bytes over the matmuls' time: how close the projections run to HBM speed.

Example (from the repository root, on a GPU):
  python benchmarks/engine/decode_profile.py --shape 1.1b --batch 64
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from functools import partial
from pathlib import Path

import torch

from decode_step import EngineBatch, _decode
from measure import (Budget, ResultFile, add_output_arguments, device_peaks, floor_ms, free_memory, kv_bytes,
                     log, time_steps, weight_bytes)
from models import SHAPES, build_backbone

# Kernel name -> kind, first match wins (cuBLAS / CUTLASS matmul kernels have many names).
KINDS = [("paged_attention", r"paged|decode_attention|_attention"), ("norm", r"rms_norm"),
         ("rotary_cache", r"rotary"), ("silu_mul", r"silu"),
         ("matmul", r"gemm|gemv|cutlass|nvjet|sm90|sm80|cublas|splitKreduce|xmma|_linear_kernel|_reduce_kernel"),
         ("copy_index", r"index|gather|copy|fill|elementwise|vectorized|reduce|cat|arange")]


def kind_of(name: str) -> str:
    return next((kind for kind, pattern in KINDS if re.search(pattern, name, re.IGNORECASE)), "other")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="1.1b")
    parser.add_argument("--modes", nargs="+", choices=("bare", "para"), default=["bare", "para"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--distinct", type=int, default=32, help="distinct PARA adapters among the rows")
    parser.add_argument("--prompt", type=int, default=256, help="tokens already in every row's KV cache")
    parser.add_argument("--steps", type=int, default=20, help="profiled (and timed) replays")
    parser.add_argument("--skinny-matmul-rows", type=int, default=0,
                        help="the engine's skinny_matmul_rows (matmuls of at most this many rows through its Triton "
                        "matmul; 0: cuBLAS)")
    add_output_arguments(parser, Path(__file__).with_name("decode_profile.json"), budget_s=120)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("decode_profile.py profiles the CUDA-graph decoding step: it needs a CUDA GPU")
    budget = Budget(args.budget_s)
    model = build_backbone(args.shape, "cuda", torch.bfloat16)
    max_len = args.prompt + 4 * args.steps + 16
    weights = weight_bytes(model)
    kv = kv_bytes(model.config, args.batch, args.prompt + 1, 2)
    results = ResultFile(args.output, "decode_profile", {"shape": args.shape, "batch_size": args.batch,
                                                         "prompt_tokens": args.prompt,
                                                         "skinny_matmul_rows": args.skinny_matmul_rows})
    rows = []
    for mode in args.modes:
        runner = EngineBatch(model, mode, args.batch, max_len, args.prompt, 0, args.distinct if mode == "para" else 0,
                             True, [], args.skinny_matmul_rows)
        timing = time_steps(partial(_decode, runner, args.batch, True), args.steps, 5, "cuda")
        eager = partial(_decode, runner, args.batch, False)
        for i in range(3):
            eager(i)
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profiler:
            for i in range(args.steps):
                eager(i)
            torch.cuda.synchronize()
        per_kernel: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        for event in profiler.events():
            if event.device_type == torch.autograd.DeviceType.CUDA and event.device_time > 0:
                entry = per_kernel[event.name]
                entry[0] += event.device_time / 1000 / args.steps  # ms per step
                entry[1] += 1 / args.steps
        kinds: dict[str, dict] = defaultdict(lambda: {"ms": 0.0, "kernels": 0.0})
        for name, (ms, count) in per_kernel.items():
            kinds[kind_of(name)]["ms"] += ms
            kinds[kind_of(name)]["kernels"] += count
        kernel_ms = sum(ms for ms, _ in per_kernel.values())
        matmul_ms = kinds["matmul"]["ms"] if "matmul" in kinds else 0.0
        top = sorted(per_kernel.items(), key=lambda item: -item[1][0])[:15]
        row = {"shape": args.shape, "mode": mode, "batch_size": args.batch, "prompt_tokens": args.prompt,
               "distinct_adapters": args.distinct if mode == "para" else 0, **timing,
               "kernel_ms": round(kernel_ms, 4), "kernels_per_step": round(sum(c for _, c in per_kernel.values()), 1),
               "gaps_ms": round(timing["step_ms"] - kernel_ms, 4),
               "hbm_floor_ms": floor_ms(weights + kv, device_peaks()[0]),
               "matmul_tb_s": round(weights / (matmul_ms / 1000) / 1e12, 2) if matmul_ms else None,
               "by_kind": {k: {"ms": round(v["ms"], 4), "kernels": round(v["kernels"], 1)}
                           for k, v in sorted(kinds.items(), key=lambda kv_: -kv_[1]["ms"])},
               "top_kernels": [{"name": name[:120], "ms": round(ms, 4), "per_step": round(count, 1)}
                               for name, (ms, count) in top]}
        rows.append(row)
        results.save(rows)
        log(budget, f"{mode}: step {timing['step_ms']:.3f} ms, kernels {kernel_ms:.3f} ms "
                    f"({row['kernels_per_step']} per step), gaps {row['gaps_ms']:.3f} ms; "
                    + ", ".join(f"{k} {v['ms']:.3f}" for k, v in row["by_kind"].items()))
        del runner
        free_memory("cuda")
    results.finish(rows, budget, plot=False)


if __name__ == "__main__":
    main()
