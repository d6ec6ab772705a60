"""Time of one decoding step: the engine (bare, PARA, LoRA mode) against HF peft and HF's compiled static cache.

Every row decodes one new token for each of `batch` sequences whose 256-token prompts are in the KV
cache, on a backbone with random weights (bf16 on a GPU). Modes:

  bare       the engine's decoding step, backbone only
  para       the engine with PARA: every row scales Q, V and Up by its own prompt's vectors
  lora       the engine's LoRA mode: every row applies its slot's LoRA matrices on q and v (no PARA
             multiplies), at ranks 8, 16 and the rank with PARA's parameter count
  peft_lora  HF peft, a PeftModel with 64 LoRA adapters (r=8, q and v) and mixed-batch inference
             (adapter_names: one adapter per row), a DynamicCache, eager
  hf_static  HF's bare backbone with a static cache and the compiled forward generate uses
             (torch.compile, mode "reduce-overhead"); plus a cross-check through generate itself

On a GPU the engine's step is replayed from CUDA graphs (runner "cuda_graph", what the engine serves
with) and also timed eager (runner "eager"); on a CPU it runs eager only. Where the engine has its Triton
kernels (a GPU with Triton), those runners time the fused step; --fused off|both times the PyTorch step
instead or as well, as runners "cuda_graph_unfused" and "eager_unfused" (every engine row says "fused").
The engine gathers every row's vectors or matrices by slot, so its step costs the same whatever the
number of distinct adapters: it is timed with a distinct adapter per row, plus one batch (--sweep-batch)
with 1, 8, 32 and 64 distinct adapters to show it. peft_lora is timed for every (batch, distinct ≤ batch) pair.

hbm_floor_ms is the step's memory traffic at the HBM bandwidth (--hbm-tb-s, 4.8 TB/s for an H200):
every backbone weight once (the embedding lookup excluded), the adapters' weights that the rows use
(each distinct LoRA adapter once; each row's PARA vectors) and the keys and values of the context.

Examples (from the repository root):
  python benchmarks/engine/decode_step.py --shape 1.1b --modes bare para lora peft_lora
  python benchmarks/engine/decode_step.py --shape 1.1b --modes hf_static --append
  python benchmarks/engine/decode_step.py --shape 1.1b --modes bare para --batch-sizes 64 --distinct 32 \
      --no-eager --fused both --output /tmp/fused.json                 # fused vs unfused kernels
  python benchmarks/engine/decode_step.py --shape tiny --batch-sizes 1 8 --distinct 1 8 --sweep-batch 8 \\
      --steps 3 --peft-steps 2 --output /tmp/decode.json            # a quick check anywhere
Results go to --output (JSON, rewritten after every row) and a PNG next to it.
"""

from __future__ import annotations

import argparse
import gc
import inspect
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import torch

from hf_baselines import (PEFT_RANK, hf_generate_step, hf_static_step, lora_adapter_bytes, peft_mixed_model, peft_step,
                          prepare_for_compile)
from measure import (H200_HBM_BYTES_PER_S, Budget, ResultFile, add_output_arguments, floor_ms, free_memory, kv_bytes,
                     log, pick_device, time_steps, weight_bytes)
from models import SHAPES, build_backbone, lora_parameters_per_rank, para_matched_lora_rank, random_lora
from parapeft.engine.decoder import GraphedStep, SlotDecoder

MODES = ("bare", "para", "lora", "peft_lora", "hf_static")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", "--shapes", dest="shapes", nargs="+", choices=SHAPES, default=["1.1b"],
                        help="backbone shapes, run one after the other (default: 1.1b)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="default: all")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 64, 128])
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
    parser.add_argument("--no-eager", action="store_true", help="on a GPU, skip the eager engine rows")
    parser.add_argument("--fused", choices=("on", "off", "both"), default="on",
                        help="the engine's Triton-fused step (on, where available), its PyTorch step (off, runners "
                             "*_unfused), or both in one run")
    parser.add_argument("--engine-compile", action="store_true",
                        help="on a GPU, also time the engine's graphs of torch.compile'd steps (runner "
                             "compiled_graph; one compilation per batch size and mode: minutes)")
    parser.add_argument("--no-generate-check", action="store_true",
                        help="skip hf_static's cross-check through generate (at --sweep-batch)")
    parser.add_argument("--hbm-tb-s", type=float, default=H200_HBM_BYTES_PER_S / 1e12,
                        help="HBM bandwidth for the floor, TB/s (default: H200, 4.8)")
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
class EngineSlots:
    """A SlotDecoder whose slots hold a prompt's keys and values, and PARA vectors or LoRA matrices per row.

    Slots are filled through the decoder's own loading methods (those the engine calls after a prefill),
    so the benchmark does not depend on how the decoder stores them.
    """

    def __init__(self, model, slots: int, max_len: int, prompt: int, lora_rank: int, seed: int):
        config, device = model.config, model.device
        self.dtype = model.get_input_embeddings().weight.dtype
        self.decoder = SlotDecoder(model, slots, max_len, lora_rank=lora_rank)
        self.model, self.prompt, self.lora_rank, self.seed = model, prompt, lora_rank, seed
        generator = torch.Generator(device=device).manual_seed(seed)
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        shape = (1, config.num_key_value_heads, prompt, head_dim)
        self.prompt_cache = SimpleNamespace(layers=[
            SimpleNamespace(keys=torch.randn(shape, generator=generator, device=device).to(self.dtype),
                            values=torch.randn(shape, generator=generator, device=device).to(self.dtype))
            for _ in range(config.num_hidden_layers)])
        first = model.model.layers[0]
        widths = {"q": first.self_attn.q_proj.out_features, "v": first.self_attn.v_proj.out_features,
                  "up": first.mlp.up_proj.out_features}
        # PARA vectors belong to a prompt, not to an adapter: every slot gets its own, near 1.
        self.vectors = {t: (1 + 0.1 * torch.randn(config.num_hidden_layers, slots, w, generator=generator,
                                                  device=device)).to(self.dtype) for t, w in widths.items()}
        self.loras: dict[int, dict] = {}
        self.filled_with: int | None = None

    def lora(self, adapter: int) -> dict:
        if adapter not in self.loras:
            self.loras[adapter] = random_lora(self.model.config, self.lora_rank, self.seed * 1000 + adapter,
                                              self.model.device, self.dtype)
        return self.loras[adapter]

    def fill(self, distinct: int) -> None:
        """Slot i gets adapter i mod ``distinct`` (LoRA) and its own PARA vectors."""
        key = distinct if self.lora_rank else 0  # PARA vectors do not depend on the adapter count
        if self.filled_with == key:
            return
        slots = self.vectors["q"].shape[1]
        for slot in range(slots):
            vectors = [{t: v[layer, slot].unsqueeze(0) for t, v in self.vectors.items()}
                       for layer in range(len(self.prompt_cache.layers))]
            self.decoder.load_slot(slot, self.prompt_cache, self.prompt, vectors)
            if self.lora_rank:
                self.decoder.set_lora(slot, self.lora(slot % distinct))
        self.filled_with = key


def _decode(step, rows, tokens, positions, length: int, _: int):
    return step(rows, tokens, positions, length=length)


def _supports_compile() -> bool:
    return "compile" in inspect.signature(GraphedStep.__init__).parameters


def _variants(runner: str, can_fuse: bool, choice: str) -> list[tuple[str, bool]]:
    """(runner name, fused) pairs to time: the fused step keeps the runner's name, the PyTorch step where
    the fused one exists is "<runner>_unfused"; a compiled step is always the PyTorch code."""
    if runner == "compiled_graph" or not can_fuse:
        return [(runner, False)]
    wanted = {"on": [True], "off": [False], "both": [True, False]}[choice]
    return [(runner if fused else f"{runner}_unfused", fused) for fused in wanted]


def engine_rows(run: Run, modes: list[str], lora_ranks: list[int]) -> None:
    args, model, device = run.args, run.model, run.device
    max_batch = max(args.batch_sizes)
    setups = []  # (mode, EngineSlots, para multiplies on, lora rank)
    if "bare" in modes or "para" in modes:
        base = EngineSlots(model, max_batch, run.max_len, args.prompt, 0, seed=1)
        setups += [(m, base, m == "para", None) for m in ("bare", "para") if m in modes]
    if "lora" in modes:
        setups += [("lora", EngineSlots(model, max_batch, run.max_len, args.prompt, r, seed=2 + r), False, r)
                   for r in lora_ranks]
    runners = ["cuda_graph"] if device == "cuda" else []
    if device == "cuda" and args.engine_compile:
        if not _supports_compile():
            raise SystemExit("this version of GraphedStep has no compile option")
        runners.append("compiled_graph")
    if device != "cuda" or not args.no_eager:
        runners.append("eager")
    generator = torch.Generator(device=device).manual_seed(3)
    step_tokens = {b: torch.randint(0, model.config.vocab_size, (b,), device=device, generator=generator)
                   for b in args.batch_sizes}  # the same inputs for every mode and runner
    for mode, slots, use_para, rank in setups:
        per_rank = lora_parameters_per_rank(model.config)
        variants = [(base_runner, name, fused) for base_runner in runners
                    for name, fused in _variants(base_runner, slots.decoder.fused, args.fused)]
        for runner, name, fused in variants:
            if runner == "eager" and mode == "lora" and device == "cuda":
                continue  # the LoRA mode is served from graphs; its eager step adds nothing to bare/para eager
            if runner == "cuda_graph":
                step = GraphedStep(slots.decoder, max_batch, para=use_para, fused=fused)
            elif runner == "compiled_graph":
                step = GraphedStep(slots.decoder, max_batch, para=use_para, compile=True)
            else:
                step = lambda s, t, p, length, d=slots.decoder, on=use_para, f=fused: d.step(s, t, p, para=on,
                                                                                          length=length, fused=f)
            for batch in args.batch_sizes:
                for distinct in (run.sweep(batch) if mode != "bare" else [0]):
                    if run.out_of_time(f"{mode} [{name}] batch {batch}"):
                        return
                    slots.fill(max(distinct, 1))
                    rows = torch.arange(batch, device=device)
                    tokens = step_tokens[batch]
                    positions = torch.full((batch,), args.prompt, device=device)
                    # length known on the host, as the engine passes it: no synchronisation inside the step
                    timing = time_steps(partial(_decode, step, rows, tokens, positions, args.prompt + 1),
                                        args.steps, args.warmup, device)
                    extra, adapter_bytes = {}, 0
                    if mode == "para":  # every row reads its own vectors, all layers, q + v + up
                        per_row = sum(v.shape[0] * v.shape[2] for v in slots.vectors.values())
                        adapter_bytes = batch * per_row * run.dtype.itemsize
                    elif mode == "lora":  # at least each distinct adapter's matrices once
                        adapter_bytes = distinct * rank * per_rank * run.dtype.itemsize
                        extra = {"lora_rank": rank}
                    run.record(mode, name, batch, distinct, timing, adapter_bytes, fused=fused, **extra)
    del setups
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


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
    header = {"hbm_bytes_per_s": args.hbm_tb_s * 1e12,
              "hbm_note": "floor = (weights read once, embedding lookup excluded + adapter weights used + KV cache "
                          "of the context) / HBM bandwidth",
              "dtype": str(dtype).replace("torch.", ""),
              "runners": {"cuda_graph": "engine step replayed from a CUDA graph per batch bucket (Triton-fused "
                                        "where the row says fused)",
                          "cuda_graph_unfused": "cuda_graph with the engine's PyTorch step where Triton kernels "
                                                "exist (--fused off|both)",
                          "eager_unfused": "eager with the engine's PyTorch step (--fused off|both)",
                          "compiled_graph": "engine step compiled by torch.compile, then replayed from CUDA graphs",
                          "eager": "eager PyTorch",
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
