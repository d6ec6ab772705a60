"""Time of one decoding step: the engine (bare, PARA, LoRA) against HF peft and HF's compiled static cache.

Every row decodes one new token for each of `batch` sequences whose 256-token prompts are in the paged KV
cache (prefilled by the engine itself), on a backbone with random weights (bf16 on a GPU). Modes:

  bare       the engine's decoding step, backbone only
  para       the engine with PARA: every row scales Q, V and Up by its own prompt's vectors
  lora       the engine with LoRA adapters on q and v (no PARA multiplies), at ranks 8, 16 and the rank with
             PARA's parameter count
  peft_lora  HF peft, a PeftModel with 64 LoRA adapters (r=8, q and v) and mixed-batch inference
             (adapter_names: one adapter per row), a DynamicCache, eager
  hf_static  HF's bare backbone with a static cache and the compiled forward generate uses
             (torch.compile, mode "reduce-overhead"); plus a cross-check through generate itself

On a GPU the engine's step is replayed from CUDA graphs (runner "cuda_graph", what the engine serves with),
through its Triton kernels (paged attention included); --fused off|both times the PyTorch operations instead
or as well ("cuda_graph_unfused"). On a CPU the step runs eager ("eager"). --engine-step B... adds runner
"engine_step": Engine.step() with every row decoding, which also pays for scheduling, the batched sampler,
the transfer to the host and the host's bookkeeping. The step reads each row's vectors or LoRA matrices by
row or adapter slot, so its cost should not depend on how many distinct adapters the batch holds: PARA and
LoRA rows are timed with a distinct adapter per row, plus one batch (--sweep-batch) with 1, 8, 32 and 64
distinct adapters. peft_lora is timed for every (batch, distinct <= batch) pair.

hbm_floor_ms is the step's memory traffic at the HBM bandwidth (--hbm-tb-s; by default the GPU's datasheet
peak: 4.8 TB/s for an H200, 3.35 for an H100):
every backbone weight once (the embedding lookup excluded), the adapters' weights that the rows use
(each distinct LoRA adapter once; each row's PARA vectors) and the keys and values of the context.

Examples (from the repository root):
  python benchmarks/engine/decode_step.py --shape 1.1b --modes bare para lora peft_lora
  python benchmarks/engine/decode_step.py --shape 1.1b --modes hf_static --append
  python benchmarks/engine/decode_step.py --shape 1.1b --modes bare para --batch-sizes 64 --distinct 32 \
      --fused both --output /tmp/fused.json                            # Triton kernels vs PyTorch operations
  python benchmarks/engine/decode_step.py --shape tiny --batch-sizes 1 8 --distinct 1 8 --sweep-batch 8 \\
      --steps 3 --peft-steps 2 --output /tmp/decode.json            # a quick check anywhere
Results go to --output (JSON, rewritten after every row) and a PNG next to it.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
from functools import partial
from pathlib import Path

import torch

from hf_baselines import (PEFT_RANK, hf_generate_step, hf_static_step, lora_adapter_bytes, peft_mixed_model, peft_step,
                          prepare_for_compile)
from measure import (Budget, ResultFile, add_output_arguments, device_peaks, floor_ms, free_memory, kv_bytes,
                     log, pick_device, time_steps, weight_bytes)
from models import (PARA_RANK, SHAPES, build_backbone, lora_parameters_per_rank, para_matched_lora_rank,
                    random_lora_dirs, random_para_tensors)
from parapeft import BASE_ADAPTER, ParaConfig
from parapeft.engine import Engine, EngineConfig, SamplingParams
from parapeft.engine.batch import DecodeBatch

MODES = ("bare", "para", "lora", "peft_lora", "hf_static")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", "--shapes", dest="shapes", nargs="+", choices=SHAPES, default=["1.1b"],
                        help="backbone shapes, run one after the other (default: 1.1b)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="default: all")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 64, 128, 256])
    parser.add_argument("--distinct", type=int, nargs="+", default=[1, 8, 32, 64],
                        help="distinct adapters in a batch, for peft_lora (every value <= batch) and the sweep")
    parser.add_argument("--sweep-batch", type=int, default=64,
                        help="batch (one of --batch-sizes) at which the engine's PARA and LoRA steps are also "
                             "timed with --distinct adapters, and hf_static is cross-checked through generate")
    parser.add_argument("--prompt", type=int, default=256, help="tokens already in every row's KV cache")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per row (engine, hf_static)")
    parser.add_argument("--peft-steps", type=int, default=6, help="timed steps per peft_lora row (slow steps)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before each row")
    parser.add_argument("--lora-ranks", type=int, nargs="*", default=None,
                        help="engine LoRA ranks (default: 8, 16 and the rank with PARA's parameter count)")
    parser.add_argument("--fused", choices=("on", "off", "both"), default="on",
                        help="the engine's Triton kernels (on, where available), its PyTorch operations (off, runners "
                             "*_unfused), or both in one run")
    parser.add_argument("--engine-step", type=int, nargs="*", default=[], metavar="BATCH",
                        help="on a GPU, also time Engine.step() with BATCH rows decoding (runner engine_step: the "
                             "forward plus scheduling, sampling and the host's bookkeeping)")
    parser.add_argument("--no-generate-check", action="store_true",
                        help="skip hf_static's cross-check through generate (at --sweep-batch)")
    parser.add_argument("--skinny-matmul-rows", type=int, default=EngineConfig().skinny_matmul_rows,
                        help="the engine's skinny_matmul_rows: matmuls of at most this many rows through its Triton "
                        "matmul (0: cuBLAS)")
    parser.add_argument("--hbm-tb-s", type=float, default=device_peaks()[0] / 1e12,
                        help="HBM bandwidth for the floor, TB/s (default: this GPU's datasheet peak, an H200's "
                        "elsewhere: %(default)s)")
    add_output_arguments(parser, Path(__file__).with_name("decode_step.json"), budget_s=170)
    return parser.parse_args()


class Run:
    """The shape being measured, its byte accounting, and where rows go."""

    def __init__(self, args, shape: str, model, device: str, results: ResultFile, rows: list, budget: Budget):
        self.args, self.shape, self.model, self.device = args, shape, model, device
        self.results, self.rows, self.budget = results, rows, budget
        self.dtype = model.get_input_embeddings().weight.dtype
        self.weight_bytes = weight_bytes(model)
        self.bandwidth = args.hbm_tb_s * 1e12
        self.max_len = args.prompt + max(64, args.warmup + args.steps + 8)  # one padded context for every runner

    def record(self, mode: str, runner: str, batch: int, distinct: int, timing: dict, adapter_bytes: int = 0,
               **extra) -> None:
        kv = kv_bytes(self.model.config, batch, self.args.prompt + 1, self.dtype.itemsize)
        total = self.weight_bytes + adapter_bytes + kv
        row = {"shape": self.shape, "mode": mode, "runner": runner, "batch_size": batch, "distinct_adapters": distinct,
               **extra, **timing, "hbm_floor_ms": floor_ms(total, self.bandwidth),
               "bytes": {"weights": self.weight_bytes, "adapters": adapter_bytes, "kv_cache": kv},
               "prompt_tokens": self.args.prompt}
        self.rows.append(row)
        self.results.save(self.rows)
        rank = f" r={extra['lora_rank']}" if "lora_rank" in extra else ""
        log(self.budget, f"{self.shape} {mode}{rank} [{runner}] batch {batch}, {distinct} distinct: "
                         f"{timing['step_ms']:.3f} ms (floor {row['hbm_floor_ms']:.4g} ms)")

    def attempt(self, name: str, measure, *args) -> None:
        """Run one group of modes; if it fails, record the error and go on (the other modes' rows still count)."""
        try:
            measure(*args)
        except Exception as err:  # noqa: BLE001 - a failing baseline must not cost the rest of a one-shot run
            log(self.budget, f"{self.shape} {name} failed: {type(err).__name__}: {err}")
            self.results.header.setdefault("errors", []).append(
                {"shape": self.shape, "modes": name, "error": f"{type(err).__name__}: {err}"})
            self.results.save(self.rows)
            gc.collect()
            if self.device == "cuda":
                torch.cuda.empty_cache()

    def out_of_time(self, what: str) -> bool:
        if self.budget.exhausted():
            log(self.budget, f"budget of {self.args.budget_s:.0f} s used up: skipping {what}")
            return True
        return False

    def sweep(self, batch: int) -> list[int]:
        """Distinct-adapter counts to time at ``batch`` for the engine's adapter modes."""
        counts = [batch] + ([d for d in self.args.distinct if d < batch] if batch == self.args.sweep_batch else [])
        return sorted(set(counts))


# ---------------------------------------------------------------------------------------------- engine
class EngineBatch:
    """An engine holding ``rows`` sequences with ``prompt``-token prompts prefilled by the engine itself, each
    with its adapter (PARA: its own prompt's vectors; LoRA: adapter i mod ``distinct``; bare: none)."""

    def __init__(self, model, mode: str, rows: int, max_len: int, prompt: int, lora_rank: int, distinct: int,
                 fused: bool, lora_dirs: list[Path], skinny_rows: int = 0):
        self.mode, self.rows, self.prompt, self.distinct = mode, rows, prompt, distinct
        config = EngineConfig(max_len=max_len, max_seqs=rows, kv_tokens=rows * (max_len + 16),
                              max_step_tokens=rows * (prompt + 1), device_adapters=max(distinct, 1),
                              lora_rank=lora_rank if mode == "lora" else 0, fused_kernels=None if fused else False,
                              skinny_matmul_rows=skinny_rows if fused else 0)
        self.engine = engine = Engine(model, config)
        self.names = [BASE_ADAPTER] * rows
        if mode == "para":
            for index in range(distinct):
                engine.add_adapter(f"p{index}", ParaConfig(r=PARA_RANK), random_para_tensors(engine, PARA_RANK, index))
            self.names = [f"p{i % distinct}" for i in range(rows)]
        elif mode == "lora":
            for index, directory in enumerate(lora_dirs[:distinct]):
                engine.load_adapter(f"l{index}", directory)
            self.names = [f"l{i % distinct}" for i in range(rows)]
        generator = torch.Generator().manual_seed(11)
        vocab = model.config.vocab_size
        self.requests = [engine.submit(torch.randint(3, vocab, (prompt,), generator=generator).tolist(), name,
                                       SamplingParams(max_tokens=max_len - prompt, ignore_eos=True))
                         for name in self.names]
        engine.step()  # one packed prefill of every prompt (each sequence now holds prompt + 1 tokens)
        assert all(len(r.tokens) == 1 for r in self.requests), "not every prompt was prefilled in one step"
        for request in self.requests:  # blocks for the whole run, so the timed steps never allocate
            engine.cache.note_blocks(request.row, engine.blocks.grow(request.blocks, max_len))
        engine.cache.flush()
        self.row_ids = torch.tensor([r.row for r in self.requests], device=engine.device)

    def decode(self, batch: int, graphs: bool):
        """One decoding step of the first ``batch`` sequences (the model's forward: no sampling)."""
        engine, rows = self.engine, self.row_ids[:batch]
        para, lora = self.mode == "para", self.mode == "lora"
        engine.cache.seq_lens[rows] = self.prompt  # every timed step decodes at the same position
        if graphs:
            return engine.graphs(rows, para, lora)
        return engine.executor.decode(DecodeBatch(rows, para, lora))


def _decode(runner: EngineBatch, batch: int, graphs: bool, _: int):
    return runner.decode(batch, graphs)


def _engine_step(engine: Engine, _: int):
    return engine.step()


def engine_step_timing(model, mode: str, batch: int, run: Run, lora_rank: int, lora_dirs: list[Path]) -> dict:
    """What the engine's loop pays per token: ``Engine.step()`` with ``batch`` sequences decoding (scheduler,
    the graph-replayed forward, the batched sampler, the host transfer and the host's bookkeeping)."""
    args = run.args
    runner = EngineBatch(model, mode, batch, run.max_len, args.prompt, lora_rank, batch, True, lora_dirs,
                         args.skinny_matmul_rows)
    timing = time_steps(partial(_engine_step, runner.engine), args.steps, args.warmup, run.device)
    assert all(len(r.tokens) > args.steps for r in runner.requests)
    return timing


def engine_rows(run: Run, modes: list[str], lora_ranks: list[int]) -> None:
    args, model, device = run.args, run.model, run.device
    max_batch = max(args.batch_sizes)
    per_rank = lora_parameters_per_rank(model.config)
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    para_width = config.num_hidden_layers * (config.num_attention_heads * head_dim
                                             + config.num_key_value_heads * head_dim + config.intermediate_size)
    graphs = device == "cuda"
    fused_choices = {"on": [True], "off": [False], "both": [True, False]}[args.fused]
    setups = [(m, None) for m in ("bare", "para") if m in modes] + [("lora", r) for r in lora_ranks if "lora" in modes]
    with tempfile.TemporaryDirectory(prefix="para-decode-") as tmp:
        for mode, rank in setups:
            needed = max(max(args.batch_sizes), max(args.distinct))
            lora_dirs = random_lora_dirs(model, rank, needed, Path(tmp) / f"r{rank}") if mode == "lora" else []
            for fused in fused_choices:
                name = ("cuda_graph" if graphs else "eager") + ("" if fused else "_unfused")
                counts = sorted({d for b in args.batch_sizes for d in run.sweep(b)}) if mode != "bare" else [1]
                for distinct in counts:
                    if run.out_of_time(f"{mode} [{name}] {distinct} distinct"):
                        return
                    runner = EngineBatch(model, mode, max_batch, run.max_len, args.prompt, rank or 0,
                                         min(distinct, max_batch), fused, lora_dirs, args.skinny_matmul_rows)
                    fused_on = runner.engine.executor.ops.name == "triton"
                    for batch in args.batch_sizes:
                        if mode != "bare" and distinct not in run.sweep(batch):
                            continue
                        timing = time_steps(partial(_decode, runner, batch, graphs), args.steps, args.warmup, device)
                        extra, adapter_bytes = {}, 0
                        shown = 0 if mode == "bare" else min(distinct, batch)
                        if mode == "para":  # every row reads its own vectors, all layers, q + v + up
                            adapter_bytes = batch * para_width * run.dtype.itemsize
                        elif mode == "lora":  # at least each distinct adapter's matrices once
                            adapter_bytes = shown * rank * per_rank * run.dtype.itemsize
                            extra = {"lora_rank": rank}
                        run.record(mode, name, batch, shown, timing, adapter_bytes, fused=fused_on, **extra)
                    del runner
                    free_memory(device)
            if device == "cuda":
                for batch in args.engine_step:
                    if run.out_of_time(f"{mode} [engine_step] batch {batch}"):
                        return
                    timing = engine_step_timing(model, mode, batch, run, rank or 0, lora_dirs)
                    run.record(mode, "engine_step", batch, 0 if mode == "bare" else batch, timing, fused=True,
                               **({"lora_rank": rank} if rank else {}))
                    free_memory(device)


# --------------------------------------------------------------------------------------- HF baselines
def peft_rows(run: Run) -> None:
    args, device = run.args, run.device
    if run.out_of_time("peft_lora"):
        return
    import copy

    adapters = max(args.distinct)
    log(run.budget, f"peft_lora: loading {adapters} LoRA adapters (r={PEFT_RANK}) into a PeftModel")
    peft_model = peft_mixed_model(copy.deepcopy(run.model), adapters, seed=4)  # peft wraps the layers in place
    per_adapter = lora_adapter_bytes(peft_model)
    for batch in args.batch_sizes:
        for distinct in [d for d in args.distinct if d <= batch]:
            if run.out_of_time(f"peft_lora batch {batch}, {distinct} distinct"):
                break
            timing = peft_step(peft_model, batch, distinct, args.prompt, args.peft_steps, min(args.warmup, 2),
                               device, seed=5)
            run.record("peft_lora", "eager", batch, distinct, timing, distinct * per_adapter, lora_rank=PEFT_RANK,
                       adapters_loaded=adapters)
    del peft_model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def hf_static_rows(run: Run) -> None:
    args, device = run.args, run.device
    prepare_for_compile()
    runner = "compiled_forward" if device == "cuda" else "compiled_forward_cpu"
    for batch in args.batch_sizes:
        if run.out_of_time(f"hf_static batch {batch}"):
            return
        log(run.budget, f"hf_static batch {batch}: prefill, then compile (first batch sizes take a while)")
        timing = hf_static_step(run.model, batch, args.prompt, run.max_len, args.steps, max(args.warmup, 3),
                                device, seed=6)
        run.record("hf_static", runner, batch, 0, timing)
    if not args.no_generate_check and not run.out_of_time("hf_static generate cross-check"):
        new_tokens = min(32, run.max_len - args.prompt - 2)
        batch = args.sweep_batch if args.sweep_batch in args.batch_sizes else max(args.batch_sizes)
        timing = hf_generate_step(run.model, batch, args.prompt, run.max_len, new_tokens, device, seed=7)
        # generate compiles its decoding forward only on accelerators; on a CPU this row is eager
        run.record("hf_static", "generate" if device == "cuda" else "generate_eager", batch, 0, timing)


def main() -> None:
    args = parse_args()
    device, dtype = pick_device()
    budget = Budget(args.budget_s)
    header = {"hbm_bytes_per_s": args.hbm_tb_s * 1e12, "skinny_matmul_rows": args.skinny_matmul_rows,
              "hbm_note": "floor = (weights read once, embedding lookup excluded + adapter weights used + KV cache "
                          "of the context) / HBM bandwidth",
              "dtype": str(dtype).replace("torch.", ""),
              "runners": {"cuda_graph": "engine step replayed from a CUDA graph per batch bucket (Triton kernels "
                                        "where the row says fused)",
                          "cuda_graph_unfused": "cuda_graph with the engine's PyTorch operations (--fused off|both)",
                          "eager": "the engine's step, eager (CPU)",
                          "engine_step": "Engine.step() with every row decoding: scheduler, graph-replayed step, "
                                         "batched sampler, one transfer to the host, host bookkeeping",
                          "compiled_forward": "HF forward compiled as generate does (inductor, reduce-overhead), "
                                              "static cache, inputs from prepare_inputs_for_generation",
                          "generate": "HF generate with a static cache: (1 + n tokens - 1 token) / n"}}
    results = ResultFile(args.output, "decode_step", header, append=args.append)
    rows: list[dict] = []
    for shape in args.shapes:
        log(budget, f"building the {shape} backbone (random weights, {header['dtype']}) on {device}")
        model = build_backbone(shape, device, dtype)
        run = Run(args, shape, model, device, results, rows, budget)
        matched = para_matched_lora_rank(model)
        ranks = args.lora_ranks if args.lora_ranks is not None else sorted({8, 16, matched})
        log(budget, f"weights read per step: {run.weight_bytes / 1e9:.3f} GB; engine LoRA ranks {ranks} "
                    f"(PARA-matched: {matched})")
        engine_modes = [m for m in args.modes if m in ("bare", "para", "lora")]
        if engine_modes:
            run.attempt(", ".join(engine_modes), engine_rows, run, engine_modes, ranks)
        if "peft_lora" in args.modes:
            run.attempt("peft_lora", peft_rows, run)
        if "hf_static" in args.modes:  # last: compilation time is the least predictable
            run.attempt("hf_static", hf_static_rows, run)
        del model, run
        free_memory(device)
    results.finish(rows, budget, plot=not args.no_plot)


if __name__ == "__main__":
    main()
