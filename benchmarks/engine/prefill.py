"""Packed prefill through the engine: many prompts in one pass, bare vs a distinct PARA adapter per prompt.

Each row times one engine step that prefills ``batch_size`` prompts of ``prompt_tokens`` tokens packed
into one pass (``pass_tokens`` in all) and samples each prompt's first token: the scheduler's admission,
the batch's construction, the executor's pass (PARA's generators pool every prompt over its own positions
inside it), the batched sampler and the one transfer to the host. Modes run the same token ids:

  bare  no adapter: the backbone through the engine's executor
  para  each prompt with its own PARA adapter (r=12, random weights), all resident on the device
  lora  each prompt with its own LoRA adapter at PARA's parameter count (q and v), for comparison

The modes' engines are built side by side and take turns step by step, so a drift of the machine's speed
during a row reaches every mode alike; <mode>_over_bare is the median of the step-by-step ratios (each step
against the bare step of the same turn), with their range.

compute_floor_ms is the pass's matmul work (projections, causal attention within each prompt, the head for
each prompt's last position) at the GPU's dense BF16 peak (--peak-tflops, 989 for an H100 or H200).

Examples (from the repository root):
  python benchmarks/engine/prefill.py                               # 1.1b, 512-16k tokens per pass, on the GPU
  python benchmarks/engine/prefill.py --shapes tiny --pass-tokens 64 256 --prompt-tokens 16 32 --steps 2 \\
      --output /tmp/prefill.json                                   # a quick check anywhere
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from measure import Budget, ResultFile, add_output_arguments, device_peaks, free_memory, log, pick_device, synchronize
from models import PARA_RANK, SHAPES, build_backbone, para_matched_lora_rank, random_lora_dirs, random_para_tensors
from parapeft import BASE_ADAPTER, ParaConfig
from parapeft.engine import Engine, EngineConfig, SamplingParams

MODES = ("bare", "para", "lora")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=["1.1b"])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=["bare", "para"])
    parser.add_argument("--pass-tokens", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192, 16384],
                        help="tokens per packed pass")
    parser.add_argument("--prompt-tokens", type=int, nargs="+", default=[128, 512], help="tokens per prompt")
    parser.add_argument("--steps", type=int, default=8, help="timed passes per row")
    parser.add_argument("--warmup", type=int, default=2, help="untimed passes first (the first records the CUDA graph)")
    parser.add_argument("--prefill-graph-tokens", type=int, default=EngineConfig().prefill_graph_tokens,
                        help="passes of up to this many tokens replay from CUDA graphs on a GPU (0: every pass eager)")
    parser.add_argument("--peak-tflops", type=float, default=device_peaks()[1] / 1e12,
                        help="dense BF16 peak for the compute floor, TFLOP/s (default: this GPU's datasheet peak, "
                        "989 for an H100 or H200: %(default)s)")
    add_output_arguments(parser, Path(__file__).with_name("prefill.json"), budget_s=170)
    return parser.parse_args()


def prefill_flops(model, prompts: int, tokens: int) -> float:
    """Matmul FLOPs of ``prompts`` prompts of ``tokens`` tokens: 2 per weight per token in the layers, causal
    attention scores and weighted values (2 · tokens² · heads · head_dim per layer and prompt, half of the
    square), the head for one position per prompt."""
    config = model.config
    layer_params = sum(p.numel() for n, p in model.named_parameters() if ".layers." in n and p.dim() == 2)
    head = model.get_output_embeddings().weight.numel()
    attention = 2 * tokens * tokens * config.num_attention_heads * (config.hidden_size // config.num_attention_heads)
    return prompts * (2 * tokens * layer_params + config.num_hidden_layers * attention + 2 * head)


def build_engine(model, mode: str, prompts: int, length: int, lora_rank: int, graph_tokens: int,
                 tmp: Path) -> tuple[Engine, list[str]]:
    config = EngineConfig(max_len=length + 1, max_seqs=prompts, kv_tokens=prompts * (length + 16),
                          max_step_tokens=prompts * length + prompts, device_adapters=max(prompts, 1),
                          lora_rank=lora_rank if mode == "lora" else 0, prefill_graph_tokens=graph_tokens)
    engine = Engine(model, config)
    names = [BASE_ADAPTER] * prompts
    if mode == "para":
        names = [f"p{i}" for i in range(prompts)]
        for index, name in enumerate(names):
            engine.add_adapter(name, ParaConfig(r=PARA_RANK), random_para_tensors(engine, PARA_RANK, seed=index))
    elif mode == "lora":
        names = [f"l{i}" for i in range(prompts)]
        for name, directory in zip(names, random_lora_dirs(model, lora_rank, prompts, tmp)):
            engine.load_adapter(name, directory)
    return engine, names


def prefill_step_ms(engine: Engine, names: list[str], ids: torch.Tensor, device: str) -> float:
    """Milliseconds of one engine step that prefills every prompt (and samples its first token)."""
    requests = [engine.submit(row.tolist(), name, SamplingParams(max_tokens=1, ignore_eos=True))
                for row, name in zip(ids, names)]
    synchronize(device)
    started = time.perf_counter()
    engine.step()  # ends with the host reading the sampled tokens
    elapsed = (time.perf_counter() - started) * 1000
    assert all(r.finished for r in requests), "a prompt was not prefilled in the pass"
    return elapsed


def time_interleaved(engines: dict[str, tuple[Engine, list[str]]], ids: torch.Tensor, steps: int, warmup: int,
                     device: str) -> dict[str, list[float]]:
    """Each mode's step times, the modes taking turns step by step (bare, para, bare, para, ...), so that a
    drift of the machine's speed during the row reaches every mode alike."""
    times: dict[str, list[float]] = {mode: [] for mode in engines}
    for index in range(warmup + steps):
        for mode, (engine, names) in engines.items():
            elapsed = prefill_step_ms(engine, names, ids, device)
            if index >= warmup:
                times[mode].append(elapsed)
    return times


def main() -> None:
    args = parse_args()
    device, dtype = pick_device()
    budget = Budget(args.budget_s)
    header = {"dtype": str(dtype).replace("torch.", ""), "peak_flops": args.peak_tflops * 1e12, "para_rank": PARA_RANK,
              "notes": "one engine step prefilling every prompt packed into one pass, sampling included; "
                       "para: a distinct PARA adapter per prompt; lora: a distinct LoRA adapter per prompt"}
    results = ResultFile(args.output, "prefill", header, append=args.append)
    rows: list[dict] = []
    for shape in args.shapes:
        log(budget, f"building the {shape} backbone (random weights, {header['dtype']}) on {device}")
        model = build_backbone(shape, device, dtype)
        lora_rank = para_matched_lora_rank(model)
        generator = torch.Generator(device="cpu").manual_seed(0)
        for length in args.prompt_tokens:
            for total in args.pass_tokens:
                prompts = total // length
                if prompts < 1:
                    continue
                ids = torch.randint(3, model.config.vocab_size, (prompts, length), generator=generator)
                if budget.exhausted():
                    log(budget, f"budget of {args.budget_s:.0f} s used up: skipping {shape} {prompts}×{length}")
                    continue
                with tempfile.TemporaryDirectory(prefix="para-prefill-") as tmp:
                    engines = {mode: build_engine(model, mode, prompts, length, lora_rank, args.prefill_graph_tokens,
                                                  Path(tmp)) for mode in args.modes}
                    times = time_interleaved(engines, ids, args.steps, args.warmup, device)
                    graphed = {mode: engine.prefill_graphs is not None and engine.prefill_graphs.replays > 0
                               for mode, (engine, _) in engines.items()}
                del engines
                floor = prefill_flops(model, prompts, length) / (args.peak_tflops * 1e12) * 1000
                for mode in args.modes:
                    ms = statistics.median(times[mode])
                    row = {"shape": shape, "mode": mode, "batch_size": prompts, "prompt_tokens": length,
                           "pass_tokens": prompts * length, "distinct_adapters": prompts if mode != "bare" else 0,
                           "prefill_graph": graphed[mode], "prefill_ms": round(ms, 4),
                           "spread_ms": round(max(times[mode]) - min(times[mode]), 4), "timed_steps": args.steps,
                           "tokens_per_s": round(prompts * length / ms * 1000, 1),
                           "compute_floor_ms": round(floor, 5), "over_floor": round(ms / floor, 3)}
                    if mode == "lora":
                        row["lora_rank"] = lora_rank
                    if mode != "bare" and "bare" in times:
                        # the median of step-by-step ratios: each step against the bare step of the same turn
                        ratios = [t / b for t, b in zip(times[mode], times["bare"])]
                        row[f"{mode}_over_bare"] = round(statistics.median(ratios), 4)
                        row[f"{mode}_over_bare_range"] = [round(min(ratios), 4), round(max(ratios), 4)]
                    rows.append(row)
                    results.save(rows)
                    extra = f", {mode} / bare {row[f'{mode}_over_bare']:.3f}" if f"{mode}_over_bare" in row else ""
                    log(budget, f"{shape} {mode} {prompts} × {length} tokens: {ms:.3f} ms "
                                f"({row['over_floor']:.2f}× the compute floor{extra})")
                free_memory(device)
        del model
        free_memory(device)
    results.finish(rows, budget, plot=not args.no_plot)


if __name__ == "__main__":
    main()
