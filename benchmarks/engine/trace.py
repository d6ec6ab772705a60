"""Multi-tenant serving trace through the in-process Engine: PARA adapters vs LoRA adapters vs the bare backbone.

A workload of requests arrives as a Poisson process at a given rate (requests per second) for
--duration seconds (longer at a low rate, until --min-requests are expected, so that its p99 rests on enough
requests). Each request picks one of --adapters adapters with Zipf popularity (s = 1.1:
a few adapters take most requests, a long tail takes the rest), a prompt length uniform in
--prompt-tokens and an output length uniform in --output-tokens (greedy, end-of-sequence ignored so
every request produces exactly its output length). The same workload (fixed seed per rate) is
replayed in three modes:

  bare  every request without an adapter (the reference)
  para  every request with its PARA adapter (random non-zero generator weights; the engine keeps at
        most --device-adapters of them resident and reloads the others from CPU memory on demand)
  lora  every request with its LoRA adapter (q and v, the rank with PARA's parameter count unless
        --lora-rank is given; random non-zero weights), on the same paths

One thread drives the engine: it submits each request when the wall clock reaches its arrival time,
then calls engine.step(), which admits waiting requests under its token budget (their prompts packed
into one prefill pass) and decodes one token for every running request. A request's time to first
token (TTFT) runs from its arrival time to the end of the step that produced its first token, so it
includes queueing; its time per output token (TPOT) is (last token − first token) / (tokens − 1). After
the arrival window the engine gets --drain more seconds; requests still unfinished then are counted and
cancelled. Throughput is output tokens (of finished and unfinished requests) per second of the run,
which lasts at least --duration.

Before each mode's runs the engine records its CUDA graphs for every batch bucket and runs bursts of
requests at the shortest and longest prompt lengths, so no timed run pays a one-time cost; then, as
`para engine` does once it is ready, the heap built so far is frozen out of the garbage collector's reach.
Each row also says where the slowest 1 % of first tokens spent their time (queued, the step that gave the
token, its adapter loads, collector pauses) and how often the collector ran. For modes
compared on equal terms, run each mode in a fresh process (--modes bare, then --modes para --append, ...).

Examples (from the repository root):
  python benchmarks/engine/trace.py --modes bare           # 1.1b, 8 to 256 requests per second, on the GPU
  python benchmarks/engine/trace.py --shape tiny --rates 4 16 --duration 2 --drain 3 --adapters 10 \\
      --prompt-tokens 8 32 --output-tokens 4 8 --slots 8 --output /tmp/trace.json   # a quick check anywhere
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from measure import Budget, ResultFile, add_output_arguments, free_memory, log, percentile, pick_device
from models import PARA_RANK, SHAPES, build_backbone, para_matched_lora_rank, random_lora_dirs, random_para_tensors
from parapeft import BASE_ADAPTER, ParaConfig
from parapeft.engine import Engine, EngineConfig, SamplingParams

MODES = ("bare", "para", "lora")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="1.1b")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--rates", type=float, nargs="+", default=[8, 32, 64, 128, 256], help="arrivals per second")
    parser.add_argument("--duration", type=float, default=6, help="seconds of arrivals per run")
    parser.add_argument("--min-requests", type=int, default=200,
                        help="a low rate's arrivals last longer than --duration, until this many are expected, so its "
                        "p99 rests on enough requests")
    parser.add_argument("--drain", type=float, default=4,
                        help="seconds allowed after the arrival window to finish the requests")
    parser.add_argument("--adapters", type=int, default=100, help="adapters per mode (PARA or LoRA)")
    parser.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of adapter popularity")
    parser.add_argument("--prompt-tokens", type=int, nargs=2, default=[64, 512], metavar=("MIN", "MAX"),
                        help="prompt length, uniform in [MIN, MAX]")
    parser.add_argument("--output-tokens", type=int, nargs=2, default=[16, 128], metavar=("MIN", "MAX"),
                        help="output length, uniform in [MIN, MAX]")
    parser.add_argument("--prefill-wait-ms", type=float, default=15.0,
                        help="the engine's prefill_wait_ms: new prompts gather this long for one prefill pass")
    parser.add_argument("--slots", "--max-seqs", dest="slots", type=int, default=512,
                        help="sequences decoding at once (the largest decoding batch)")
    parser.add_argument("--kv-memory", type=float, default=0.5, help="fraction of free GPU memory for the KV cache")
    parser.add_argument("--max-step-tokens", type=int, default=8192, help="tokens per engine step")
    parser.add_argument("--device-adapters", type=int, default=64,
                        help="adapters of each kind resident on the device (the rest wait in CPU memory)")
    parser.add_argument("--lora-rank", type=int, default=None, help="default: the rank with PARA's parameter count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overlap-steps", action="store_true",
                        help="the engine's overlap_steps: each step launched before the last one's results are taken")
    parser.add_argument("--skinny-matmul-rows", type=int, default=EngineConfig().skinny_matmul_rows,
                        help="the engine's skinny_matmul_rows: matmuls of at most this many rows (decoding steps) "
                        "through its split-K Triton matmul (0: cuBLAS)")
    parser.add_argument("--no-gc-freeze", dest="gc_freeze", action="store_false",
                        help="leave the startup heap to the garbage collector (para engine freezes it, as the "
                        "trace does by default)")
    add_output_arguments(parser, Path(__file__).with_name("trace.json"), budget_s=175)
    return parser.parse_args()


@dataclass
class Arrival:
    time: float  # seconds after the start of the run
    prompt: list[int]
    output_tokens: int
    adapter: int  # popularity rank, 0 = most popular


def arrival_window(args, rate: float) -> float:
    """Seconds of arrivals at ``rate``: --duration, or longer until --min-requests are expected."""
    return max(args.duration, args.min_requests / rate)


def workload(args, rate: float, vocab: int) -> list[Arrival]:
    """The requests of one run: Poisson arrivals, Zipf adapters, uniform lengths; the same for every mode."""
    duration = arrival_window(args, rate)
    rng = random.Random(f"{args.seed}-{rate}")
    popularity = [1 / (k + 1) ** args.zipf for k in range(args.adapters)]
    arrivals, now = [], rng.expovariate(rate)
    while now < duration:
        length = rng.randint(*args.prompt_tokens)
        arrivals.append(Arrival(now, [rng.randrange(3, vocab) for _ in range(length)], rng.randint(*args.output_tokens),
                                rng.choices(range(args.adapters), popularity)[0]))
        now += rng.expovariate(rate)
    return arrivals


def warm_up(engine: Engine, adapter_name, args) -> int:
    """Before any timing: the decoding step's CUDA graphs for every batch bucket (with and without PARA or
    LoRA rows), then bursts of requests through packed prefill, decoding and sampling at the shortest and
    longest prompt lengths, so Triton's kernels are compiled and the allocator has grown. The engine's own
    prefill runs no per-length compilation, so a few lengths stand for all of them. Returns the graphs."""
    graphs = engine.capture_graphs(para=engine.para.names() != [], lora=engine.lora.names() != [])
    rng = random.Random(-1)
    for burst in range(3):
        for index in range(min(32, args.slots)):
            length = args.prompt_tokens[index % 2]
            prompt = [rng.randrange(3, 100) for _ in range(length)]
            engine.submit(prompt, adapter_name((burst * 32 + index) % args.adapters),
                          SamplingParams(max_tokens=args.output_tokens[0], ignore_eos=True))
        engine.run_until_done()
    if args.gc_freeze:  # as `para engine` does once it is ready
        gc.collect()
        gc.freeze()
    return graphs


class CollectorPauses:
    """The garbage collector's pauses while installed: (start, seconds, generation) on the perf_counter clock."""

    def __init__(self):
        self.pauses: list[tuple[float, float, int]] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((self._started, time.perf_counter() - self._started, info["generation"]))

    def __enter__(self):
        gc.callbacks.append(self)
        return self

    def __exit__(self, *_):
        gc.callbacks.remove(self)

    def within(self, start: float, end: float) -> float:
        """Seconds of pauses overlapping [start, end]."""
        return sum(max(0.0, min(end, p + d) - max(start, p)) for p, d, _ in self.pauses)

    def summary(self) -> dict:
        counts = [sum(1 for *_, g in self.pauses if g == generation) for generation in range(3)]
        return {"collections_by_generation": counts,
                "pause_ms_total": round(sum(d for _, d, _ in self.pauses) * 1000, 2),
                "pause_ms_max": round(max((d for _, d, _ in self.pauses), default=0.0) * 1000, 2)}


@dataclass
class StepRecord:
    start: float  # seconds after the run's start
    launched: float  # the step's GPU work queued (scheduling, batch construction, launches done)
    end: float  # its results taken on the host
    rows: int  # requests in the step (prefilled and decoding)
    prefill_tokens: int
    adapter_loads: int


def slowest_first_tokens(ttfts, steps: list[StepRecord], collector: CollectorPauses, start: float) -> list[dict]:
    """Where the slowest 1 % of first tokens (at least 3) spent their time: (ttft ms, arrival, step index) in."""
    slowest = sorted(ttfts, key=lambda t: -t[0])[:max(3, math.ceil(len(ttfts) / 100))]
    rows = []
    for ttft, arrival, index in slowest:
        step = steps[index]
        rows.append({"ttft_ms": round(ttft, 2), "queued_ms": round((step.start - arrival) * 1000, 2),
                     "step_ms": round((step.end - step.start) * 1000, 2),
                     "step_host_ms": round((step.launched - step.start) * 1000, 2),
                     "step_rows": step.rows, "step_prefill_tokens": step.prefill_tokens,
                     "step_adapter_loads": step.adapter_loads, "steps_waited": sum(
                         1 for s in steps[:index] if s.end > arrival),
                     "gc_pause_ms": round(collector.within(start + arrival, start + step.end) * 1000, 2)})
    return rows


def replay(engine: Engine, arrivals: list[Arrival], adapter_name, args, duration: float) -> dict:
    """Drive the engine through one run of arrivals against the wall clock; latency and throughput figures."""
    pending = list(reversed(arrivals))  # pop() takes the next arrival
    submitted: list[tuple[Arrival, object]] = []
    first_token: dict[int, tuple[float, int]] = {}  # request id -> (time, index of the step that gave it)
    finished_at: dict[int, float] = {}
    steps: list[StepRecord] = []
    tokens_per_step: list[int] = []
    cutoff = duration + args.drain

    def adapter_loads() -> int:
        return engine.para.loads + engine.lora.loads

    with CollectorPauses() as collector:
        start = time.perf_counter()
        in_flight = None  # with --overlap-steps: the step launched ahead, finished in the next iteration
        launches: dict[int, tuple[float, float, int]] = {}  # id(step) -> (begun, launched, adapter loads)

        def launch(ahead_of=None):
            loads, begun = adapter_loads(), time.perf_counter() - start
            step = engine.launch_ahead(ahead_of) if ahead_of is not None else engine.launch()
            if step is not None:
                launches[id(step)] = (begun, time.perf_counter() - start, adapter_loads() - loads)
            return step

        def take(step) -> None:
            touched = engine.finish(step)
            done = time.perf_counter() - start
            if step is not None:
                begun, launched, loads = launches.pop(id(step))
                steps.append(StepRecord(begun, launched, done, len(step.requests), step.prefilled, loads))
            tokens_per_step.append(len(touched))  # prefilled plus decoded requests
            for request in touched:
                first_token.setdefault(request.id, (done, len(steps) - 1))
                if request.finished:
                    finished_at[request.id] = done

        while True:
            now = time.perf_counter() - start
            while pending and pending[-1].time <= now:
                arrival = pending.pop()
                request = engine.submit(arrival.prompt, adapter_name(arrival.adapter),
                                        SamplingParams(max_tokens=arrival.output_tokens, ignore_eos=True))
                submitted.append((arrival, request))
            busy = engine.waiting or engine.running or in_flight is not None
            if not busy:
                if not pending:
                    break
                time.sleep(max(0.0, pending[-1].time - (time.perf_counter() - start)))  # idle until the next arrival
                continue
            if now > cutoff:
                break
            if in_flight is None:
                step = launch()  # engine.step() in its two halves, to see where a step's time goes
                if args.overlap_steps and step is not None:
                    in_flight = step
                    continue
                take(step)
            else:  # the next step goes first, then the host takes the results of the one before it
                ahead = launch(ahead_of=in_flight)
                take(in_flight)
                in_flight = ahead
        if in_flight is not None:
            take(in_flight)
        elapsed = time.perf_counter() - start
    unfinished = [r for _, r in submitted if not r.finished]
    for request in unfinished:
        engine.cancel(request)
    tokens = sum(len(r.tokens) for _, r in submitted)
    ttfts = [((first_token[r.id][0] - a.time) * 1000, a.time, first_token[r.id][1])
             for a, r in submitted if r.id in first_token]
    ttft = [t for t, _, _ in ttfts]
    tpot = [(finished_at[r.id] - first_token[r.id][0]) * 1000 / (len(r.tokens) - 1)
            for _, r in submitted if r.id in finished_at and len(r.tokens) > 1]

    def stat(values, q):
        value = percentile(values, q)
        return None if value is None else round(value, 2)

    return {"requests_submitted": len(submitted), "requests_finished": len(finished_at),
            "requests_unfinished": len(unfinished), "output_tokens": tokens, "arrivals_s": round(duration, 3),
            "elapsed_s": round(elapsed, 3),
            # the arrivals span their window even when the last request finishes earlier
            "throughput_tok_s": round(tokens / max(elapsed, duration), 1),
            "throughput_req_s": round(len(finished_at) / max(elapsed, duration), 3),
            "ttft_ms_p50": stat(ttft, 50), "ttft_ms_p99": stat(ttft, 99),
            "tpot_ms_p50": stat(tpot, 50), "tpot_ms_p99": stat(tpot, 99),
            "engine_steps": len(tokens_per_step),
            "mean_tokens_per_step": round(sum(tokens_per_step) / len(tokens_per_step), 2) if tokens_per_step else 0,
            "peak_tokens_per_step": max(tokens_per_step, default=0),
            "slowest_first_tokens": slowest_first_tokens(ttfts, steps, collector, start),
            "gc": collector.summary()}


def build_engine(mode: str, model, args, lora_rank: int, max_len: int, directory: Path, budget: Budget):
    """The engine for ``mode`` with its adapters registered, and the adapter name of a popularity rank."""
    config = EngineConfig(max_len=max_len, max_seqs=args.slots, kv_memory=args.kv_memory,
                          max_step_tokens=args.max_step_tokens, device_adapters=args.device_adapters,
                          prefill_wait_ms=args.prefill_wait_ms, overlap_steps=args.overlap_steps,
                          skinny_matmul_rows=args.skinny_matmul_rows,
                          lora_rank=lora_rank if mode == "lora" else 0)
    engine = Engine(model, config)
    if mode == "para":
        log(budget, f"para: registering {args.adapters} random PARA adapters (r={PARA_RANK})")
        for index in range(args.adapters):
            engine.add_adapter(f"p{index}", ParaConfig(r=PARA_RANK), random_para_tensors(engine, PARA_RANK, index))
        return engine, lambda k: f"p{k}"
    if mode == "lora":
        log(budget, f"lora: writing {args.adapters} random LoRA adapters (r={lora_rank}, q and v) to register them")
        for index, path in enumerate(random_lora_dirs(model, lora_rank, args.adapters, directory / "lora")):
            engine.load_adapter(f"l{index}", path)
        return engine, lambda k: f"l{k}"
    return engine, lambda k: BASE_ADAPTER


def main() -> None:
    args = parse_args()
    device, dtype = pick_device()
    budget = Budget(args.budget_s)
    max_len = args.prompt_tokens[1] + args.output_tokens[1]
    log(budget, f"building the {args.shape} backbone (random weights, {str(dtype).replace('torch.', '')}) on {device}")
    model = build_backbone(args.shape, device, dtype)
    lora_rank = args.lora_rank or para_matched_lora_rank(model)
    settings = {"shape": args.shape, "rates_rps": args.rates, "duration_s": args.duration,
                "min_requests": args.min_requests, "gc_freeze": args.gc_freeze, "overlap_steps": args.overlap_steps,
                "skinny_matmul_rows": args.skinny_matmul_rows,
                "drain_s": args.drain,
                "adapters": args.adapters, "zipf_s": args.zipf,
                "prompt_tokens": f"uniform integer in [{args.prompt_tokens[0]}, {args.prompt_tokens[1]}]",
                "output_tokens": f"uniform integer in [{args.output_tokens[0]}, {args.output_tokens[1]}], eos ignored",
                "arrivals": "Poisson", "sampling": "greedy", "max_seqs": args.slots, "max_len": max_len,
                "kv_memory": args.kv_memory, "max_step_tokens": args.max_step_tokens,
                "prefill_wait_ms": args.prefill_wait_ms,
                "device_adapters": args.device_adapters, "para_rank": PARA_RANK, "lora_rank": lora_rank,
                "seed": args.seed, "dtype": str(dtype).replace("torch.", ""),
                "throughput": "output tokens / max(run duration, time of the last step)"}
    header = {"settings": settings}
    results = ResultFile(args.output, "trace", header, append=args.append)
    rows: list[dict] = []
    workloads = {rate: workload(args, rate, model.config.vocab_size) for rate in args.rates}
    with tempfile.TemporaryDirectory(prefix="para-trace-") as tmp:
        for mode in [m for m in MODES if m in args.modes]:
            if budget.exhausted():
                log(budget, f"budget of {args.budget_s:.0f} s used up: skipping {mode}")
                continue
            engine = None
            try:
                engine, adapter_name = build_engine(mode, model, args, lora_rank, max_len, Path(tmp), budget)
                graphs = warm_up(engine, adapter_name, args)
                log(budget, f"{mode}: engine ready ({graphs} CUDA graphs recorded, KV cache {engine.cache.tokens} "
                            f"tokens)")
                for rate in args.rates:
                    if budget.exhausted():
                        log(budget, f"budget of {args.budget_s:.0f} s used up: skipping {mode} at {rate}/s")
                        continue
                    loads, preemptions = engine.para.loads + engine.lora.loads, engine.scheduler.preemptions
                    figures = replay(engine, workloads[rate], adapter_name, args, arrival_window(args, rate))
                    row = {"shape": args.shape, "mode": mode, "rate_rps": rate, **figures,
                           "offered_tok_s": round(sum(a.output_tokens for a in workloads[rate])
                                                  / arrival_window(args, rate), 1)}
                    row["adapter_loads"] = engine.para.loads + engine.lora.loads - loads
                    row["preemptions"] = engine.scheduler.preemptions - preemptions
                    if mode == "lora":
                        row["lora_rank"] = lora_rank
                    rows.append(row)
                    results.save(rows)
                    log(budget, f"{mode} at {rate:g}/s: {figures['requests_finished']}/{figures['requests_submitted']} "
                                f"finished, {figures['throughput_tok_s']} tok/s, TTFT p50 {figures['ttft_ms_p50']} ms "
                                f"p99 {figures['ttft_ms_p99']} ms, TPOT p50 {figures['tpot_ms_p50']} ms "
                                f"p99 {figures['tpot_ms_p99']} ms")
            except Exception as err:  # noqa: BLE001 - one failing mode must not cost the others' rows
                log(budget, f"{mode} failed: {type(err).__name__}: {err}")
                header.setdefault("errors", []).append({"mode": mode, "error": f"{type(err).__name__}: {err}"})
                results.save(rows)
            gc.unfreeze()  # the frozen heap holds the engine (it sits in reference cycles): let it go
            del engine
            free_memory(device)
    results.finish(rows, budget, plot=not args.no_plot)


if __name__ == "__main__":
    main()
