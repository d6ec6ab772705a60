"""The decoding step's projections alone: cuBLAS against the engine's skinny Triton matmul (``decode_linear``).

For each projection of the --shape backbone (q/k/v fused, o, gate/up fused, down, the output head) and each
batch size, --copies distinct weight matrices (so that the weights stream from HBM, not from L2, as in a
step through every layer) are multiplied by one [batch, K] input, back to back, replayed from a CUDA graph.
Figures are microseconds per matmul and the weights' bytes over that time (TB/s). Candidates: cuBLAS through
``F.linear`` (the engine before), the tiles ``decode_linear.plan`` picks, and a sweep of tiles (block sizes and
K splits at 4 warps and 4 stages first, then warps and pipeline depth around the best three); ``best`` is
the fastest of all Triton candidates, ``plan_over_best`` how far the picker is from it.

Example (from the repository root, on a GPU):
  python benchmarks/engine/decode_gemm.py --shape 1.1b --batch-sizes 1 16 64 128 256
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from measure import Budget, ResultFile, add_output_arguments, device_peaks, log
from models import SHAPES

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from parapeft.engine.kernels.decode_linear import LinearPlan, decode_linear, plan  # noqa: E402


def projections(shape: str) -> dict[str, tuple[int, int]]:
    """(N outputs, K inputs) of each matmul one decoding step runs per layer, and the head's."""
    config = SHAPES[shape]
    hidden, ffn = config["hidden_size"], config["intermediate_size"]
    head_dim = hidden // config["num_attention_heads"]
    kv = config["num_key_value_heads"] * head_dim
    return {"qkv": (hidden + 2 * kv, hidden), "o": (hidden, hidden), "gate_up": (2 * ffn, hidden),
            "down": (hidden, ffn), "head": (config["vocab_size"], hidden)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="1.1b")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64, 128, 256])
    parser.add_argument("--projections", nargs="+", choices=("gate_up", "down", "qkv", "o", "head"),
                        default=["gate_up", "down", "qkv", "o", "head"], help="which matmuls, in this order")
    parser.add_argument("--copies", type=int, default=16, help="distinct weight matrices per graph (the layers)")
    parser.add_argument("--replays", type=int, default=30, help="timed graph replays per candidate")
    parser.add_argument("--no-sweep", dest="sweep", action="store_false", help="cuBLAS and the picker's tiles only")
    add_output_arguments(parser, Path(__file__).with_name("decode_gemm.json"), budget_s=300)
    return parser.parse_args()


def graph_time_us(run, copies: int, replays: int) -> float:
    """Microseconds per matmul of ``run()`` (``copies`` matmuls) replayed from a CUDA graph: the median of
    ``replays`` replays, each between two events."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            run()  # compiles and warms outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run()
    for _ in range(3):
        graph.replay()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000 / copies)
    del graph
    return statistics.median(times)


def sweep_plans(rows: int, n: int, k: int) -> list[LinearPlan]:
    block_ms = [min(64, max(16, 1 << (rows - 1).bit_length()))] + ([128] if rows >= 128 else [])
    plans = []
    for block_n, block_m, block_k, split in itertools.product((64, 128), block_ms, (64, 128, 256), (1, 2, 4, 8, 16)):
        candidate = LinearPlan(block_n, block_m, block_k, split)
        if k % (split * block_k) == 0 and k // split >= block_k:
            plans.append(candidate)
    return plans


def main() -> None:
    args = parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("decode_gemm.py times GPU kernels: it needs a CUDA GPU")
    budget = Budget(args.budget_s)
    hbm, _ = device_peaks()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    results = ResultFile(args.output, "decode_gemm", {"shape": args.shape, "copies": args.copies,
                                                      "hbm_bytes_per_s": hbm, "sms": sms}, args.append)
    rows = []
    torch.manual_seed(0)
    shapes = projections(args.shape)
    weights = {name: [torch.randn(*shapes[name], device="cuda", dtype=torch.bfloat16) * 0.02
                      for _ in range(args.copies)] for name in args.projections}
    for batch, name in itertools.product(args.batch_sizes, args.projections):  # every matmul at a batch size first
        n, k = shapes[name]
        nbytes = n * k * 2
        if budget.exhausted():
            log(budget, "budget used up; skipping the rest")
            break
        x = torch.randn(batch, k, device="cuda", dtype=torch.bfloat16)
        reference = F.linear(x, weights[name][0]).float()

        def timed(fn) -> float:
            return graph_time_us(lambda: [fn(x, w) for w in weights[name]], args.copies, args.replays)

        row = {"shape": args.shape, "mode": name, "batch_size": batch, "n": n, "k": k, "weight_bytes": nbytes}
        row["cublas_us"] = round(timed(F.linear), 2)
        picked = plan(batch, n, k, sms)
        error = (decode_linear(x, weights[name][0], tiles=picked).float() - reference).abs().max().item()
        row["plan"], row["plan_max_abs_error"] = vars(picked), error
        row["plan_us"] = round(timed(lambda a, w: decode_linear(a, w, tiles=picked)), 2)
        candidates = {}

        def attempt(tiles: LinearPlan) -> None:
            if tiles in candidates:
                return
            try:
                candidates[tiles] = timed(lambda a, w: decode_linear(a, w, tiles=tiles))
            except Exception as err:  # noqa: BLE001 - deep pipelines of large tiles need too much shared memory
                log(budget, f"  {tiles} failed: {type(err).__name__}")

        if args.sweep:
            for tiles in sweep_plans(batch, n, k):
                attempt(tiles)
            for base, warps, stages in itertools.product(sorted(candidates, key=candidates.get)[:2], (4, 8),
                                                         (3, 5, 6)):
                attempt(LinearPlan(base.block_n, base.block_m, base.block_k, base.split_k, warps, stages))
        candidates[picked] = min(candidates.get(picked, row["plan_us"]), row["plan_us"])
        best = min(candidates, key=candidates.get)
        row["best"], row["best_us"] = vars(best), round(candidates[best], 2)
        for key in ("cublas", "plan", "best"):
            row[f"{key}_tb_s"] = round(nbytes / (row[f"{key}_us"] * 1e-6) / 1e12, 3)
        row["best_over_cublas"] = round(row["best_us"] / row["cublas_us"], 3)
        row["plan_over_best"] = round(row["plan_us"] / row["best_us"], 3)
        row["sweep"] = sorted(([vars(t), round(us, 2)] for t, us in candidates.items()), key=lambda e: e[1])[:8]
        rows.append(row)
        results.save(rows)
        log(budget, f"{name:8s} M={batch:4d}: cuBLAS {row['cublas_us']:7.2f} us ({row['cublas_tb_s']:.2f} TB/s)  "
                    f"plan {row['plan_us']:7.2f}  best {row['best_us']:7.2f} ({row['best_tb_s']:.2f} TB/s) {best}")
    results.finish(rows, budget, plot=False)


if __name__ == "__main__":
    main()
