"""PARA's generator kernels alone: what they add to a packed prefill pass, per layout and tile choice.

A graphed prefill pass runs ``generate_multipliers`` once per layer on the layer's normalised input. This
times the kernels of every layer of one pass (the shape's layers, widths and r = 12), replayed from a CUDA
graph as the engine replays a pass, for prompts × tokens laid out as the pass's token bucket pads them
(padding prompts pool one position of the all-zero slot), for each tile choice of the pooling programs
(``--configs`` as BLOCK_D:BLOCK_T:WARPS, with ``:noskip`` computing the padding prompts too, as the kernels
did before they skipped the all-zero slot; ``128:32:4:noskip`` is the earlier tiles without the skip, with
the partial sums reduced as one tile as every choice here does).
``pass_ms`` is the time of all layers' kernels; compare it with the pass itself in ``prefill.json``.

Examples (from the repository root, on a GPU):
  python benchmarks/engine/generator_kernels.py
  python benchmarks/engine/generator_kernels.py --layouts 1x512 16x128 --configs 128:32:4:noskip 64:128:4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from measure import Budget, ResultFile, add_output_arguments, log
from models import PARA_RANK, SHAPES
from parapeft.architectures import arch_spec, layer_dims
from parapeft.config import TARGETS
from parapeft.engine.graphs import MEAN_PROMPT, PREFILL_BUCKETS

LAYOUTS = ["1x512", "2x512", "8x512", "4x128", "16x128", "32x128", "1x2048", "1x4096"]
CONFIGS = ["128:32:4:noskip", "64:128:4:noskip", "128:32:4", "64:128:4", "32:128:4"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="1.1b")
    parser.add_argument("--layouts", nargs="+", default=LAYOUTS, help="PROMPTSxTOKENS per pass")
    parser.add_argument("--configs", nargs="+", default=CONFIGS, help="BLOCK_D:BLOCK_T:WARPS[:noskip] of the pooling programs")
    parser.add_argument("--replays", type=int, default=50, help="timed graph replays per row")
    add_output_arguments(parser, Path(__file__).with_name("generator_kernels.json"), budget_s=120)
    return parser.parse_args()


def bucket_of(tokens: int) -> tuple[int, int]:
    """The (tokens, prompts) a graphed pass of ``tokens`` tokens is padded to (``PrefillGraphs``' buckets)."""
    size = next(b for b in PREFILL_BUCKETS if b >= tokens)
    return size, size // MEAN_PROMPT + 1


def main() -> None:
    args = parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("generator_kernels.py times Triton kernels replayed from CUDA graphs: it needs a CUDA GPU")
    from parapeft.engine.kernels.para_generator import generate_multipliers

    budget = Budget(args.budget_s)
    with torch.device("meta"):  # the shape's widths, without its weights
        model = LlamaForCausalLM(LlamaConfig(**SHAPES[args.shape]))
    dims = layer_dims(model, arch_spec(model)[1])
    layers, hidden, width = dims["num_layers"], dims["hidden"], sum(dims[t] for t in TARGETS)
    results = ResultFile(args.output, "generator_kernels", {"shape": args.shape, "rank": PARA_RANK})
    rows = []
    for layout in args.layouts:
        prompts, tokens = (int(v) for v in layout.split("x"))
        size, padded = bucket_of(prompts * tokens)
        slots = prompts + 1  # a distinct adapter per real prompt, and the all-zero slot for the padding ones
        gen = torch.Generator(device="cuda").manual_seed(0)
        x = torch.randn(size, hidden, device="cuda", dtype=torch.bfloat16, generator=gen)
        down = torch.randn(layers, slots, PARA_RANK, hidden, device="cuda", generator=gen) * 0.02
        up = torch.randn(layers, slots, width, PARA_RANK, device="cuda", generator=gen) * 0.02
        down[:, -1] = 0
        up[:, -1] = 0
        out = torch.ones(layers, padded + 1, width, device="cuda", dtype=torch.bfloat16)
        real = list(range(prompts))
        starts = torch.tensor([p * tokens for p in real] + [0] * (padded - prompts), device="cuda")
        pooled = torch.tensor([tokens] * prompts + [1] * (padded - prompts), device="cuda")
        codes = torch.zeros(padded, dtype=torch.int64, device="cuda")  # mean pooling, SiLU: the defaults
        slot_ids = torch.tensor(real + [slots - 1] * (padded - prompts), device="cuda")
        out_rows = torch.tensor(real + [padded] * (padded - prompts), device="cuda")
        for config in args.configs:
            if budget.exhausted():
                log(budget, "budget used up")
                break
            block_d, block_t, warps, skip = *(int(v) for v in config.split(":")[:3]), slots - 1
            if config.endswith(":noskip"):
                skip = -1  # every padding prompt computed (its multipliers come out 1): as before the skip

            def one_pass():
                for layer in range(layers):
                    generate_multipliers(x, starts, pooled, codes, codes, slot_ids, out_rows, down[layer], up[layer],
                                         out[layer], skip_slot=skip, block_d=block_d, block_t=block_t, warps=warps)

            one_pass()  # compiles
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                one_pass()
            for _ in range(5):
                graph.replay()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(args.replays):
                graph.replay()
            end.record()
            end.synchronize()
            ms = start.elapsed_time(end) / args.replays
            row = {"shape": args.shape, "layout": layout, "prompts": prompts, "prompt_tokens": tokens,
                   "bucket_tokens": size, "bucket_prompts": padded, "block_d": block_d, "block_t": block_t,
                   "warps": warps, "skip_padding": skip >= 0, "layers": layers, "pass_ms": round(ms, 4),
                   "per_layer_us": round(ms * 1000 / layers, 2)}
            rows.append(row)
            results.save(rows)
            log(budget, f"{layout} (bucket {size}/{padded}) {config}: {ms:.3f} ms per pass")
            del graph
    results.finish(rows, budget, plot=False)


if __name__ == "__main__":
    main()
