"""Multi-tenant serving trace through the in-process Engine: PARA adapters vs the LoRA mode vs the bare backbone.

A workload of requests arrives as a Poisson process at a given rate (requests per second) for
--duration seconds. Each request picks one of --adapters adapters with Zipf popularity (s = 1.1:
a few adapters take most requests, a long tail takes the rest), a prompt length uniform in
--prompt-tokens and an output length uniform in --output-tokens (greedy, end-of-sequence ignored so
every request produces exactly its output length). The same workload (fixed seed per rate) is
replayed in three modes:

  bare  every request without an adapter (the reference)
  para  every request with its PARA adapter (random non-zero generator weights; the engine keeps at
        most --device-adapters of them attached and reloads the others from CPU memory on demand)
  lora  every request with its LoRA adapter in the engine's LoRA mode (q and v, the rank with PARA's
        parameter count unless --lora-rank is given; random non-zero weights)

One thread drives the engine: it submits each request when the wall clock reaches its arrival time,
then calls engine.step(), which admits waiting requests into free slots (one prefill each) and
decodes one token for every running request. A request's time to first token (TTFT) runs from its
arrival time to the end of the step that produced its first token, so it includes queueing; its
time per output token (TPOT) is (last token − first token) / (tokens − 1). After the arrival window
the engine gets --drain more seconds; requests still unfinished then are counted and cancelled.
Throughput is output tokens (of finished and unfinished requests) per second of the run, which lasts
at least --duration.

Before each mode's runs the engine's CUDA graphs are captured for every batch and context bucket,
and requests of every prompt length the runs will use are prefilled once, so no run pays a one-time
cost (in an earlier version only a few lengths were, and the first mode paid for the rest).

Examples (from the repository root):
  python benchmarks/engine/trace.py                       # 1.1b, rates 2, 8 and 32 per second, on the GPU
  python benchmarks/engine/trace.py --shape tiny --rates 4 16 --duration 2 --drain 3 --adapters 10 \\
      --prompt-tokens 8 32 --output-tokens 4 8 --slots 8 --output /tmp/trace.json   # a quick check anywhere
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from measure import Budget, ResultFile, add_output_arguments, free_memory, log, percentile, pick_device
from models import (PARA_RANK, SHAPES, build_backbone, para_matched_lora_rank, random_lora, randomize_para_adapter,
                    save_peft_lora)
from parapeft import BASE_ADAPTER, ParaConfig, get_para_model
from parapeft.engine import Engine, SamplingParams
from parapeft.engine.decoder import GraphedStep

MODES = ("bare", "para", "lora")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="1.1b")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--rates", type=float, nargs="+", default=[2, 8, 32], help="arrivals per second")
    parser.add_argument("--duration", type=float, default=8, help="seconds of arrivals per run")
    parser.add_argument("--drain", type=float, default=4,
                        help="seconds allowed after the arrival window to finish the requests")
    parser.add_argument("--adapters", type=int, default=100, help="adapters per mode (PARA or LoRA)")
    parser.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of adapter popularity")
    parser.add_argument("--prompt-tokens", type=int, nargs=2, default=[64, 512], metavar=("MIN", "MAX"),
                        help="prompt length, uniform in [MIN, MAX]")
    parser.add_argument("--output-tokens", type=int, nargs=2, default=[16, 128], metavar=("MIN", "MAX"),
                        help="output length, uniform in [MIN, MAX]")
    parser.add_argument("--slots", type=int, default=64, help="the engine's KV-cache slots (largest decoding batch)")
    parser.add_argument("--device-adapters", type=int, default=64,
                        help="PARA adapters the engine keeps attached on the device (the rest wait in CPU memory)")
    parser.add_argument("--lora-rank", type=int, default=None, help="default: the rank with PARA's parameter count")
    parser.add_argument("--seed", type=int, default=0)
    add_output_arguments(parser, Path(__file__).with_name("trace.json"), budget_s=175)
    return parser.parse_args()


@dataclass
class Arrival:
    time: float  # seconds after the start of the run
    prompt: list[int]
    output_tokens: int
    adapter: int  # popularity rank, 0 = most popular


def workload(args, rate: float, vocab: int) -> list[Arrival]:
    """The requests of one run: Poisson arrivals, Zipf adapters, uniform lengths; the same for every mode."""
    rng = random.Random(f"{args.seed}-{rate}")
    popularity = [1 / (k + 1) ** args.zipf for k in range(args.adapters)]
    arrivals, now = [], rng.expovariate(rate)
    while now < args.duration:
        length = rng.randint(*args.prompt_tokens)
        arrivals.append(Arrival(now, [rng.randrange(3, vocab) for _ in range(length)], rng.randint(*args.output_tokens),
                                rng.choices(range(args.adapters), popularity)[0]))
        now += rng.expovariate(rate)
    return arrivals


def capture_graphs(engine: Engine) -> int:
    """Record the engine's CUDA graphs for every (batch bucket, context bucket) before timing anything.

    Graphs are otherwise recorded the first time a bucket occurs, which would put a one-time stall
    into the trace. Decoding into empty slots at position 0 leaves no trace once requests arrive.
    """
    step = getattr(engine, "_decode", None)
    if not isinstance(step, GraphedStep):
        return 0
    device = engine.decoder.keys.device
    for rows in step.buckets:
        for length in step.lengths:
            slots = torch.arange(rows, device=device)
            zeros = torch.zeros(rows, dtype=torch.long, device=device)
            step(slots, zeros, zeros, length=length)
    torch.cuda.synchronize()
    return len(step.graphs)


def warm_up(engine: Engine, adapter_name, args, lengths: set[int]) -> None:
    """Requests through prefill, decoding and sampling before any timing: a few full ones, then one
    one-token request per prompt length the runs will use. Eager prefill pays one-time costs for each new
    sequence length (kernel selection, allocator growth); without this, whichever mode ran first would
    pay them inside its timed runs and the modes would not be comparable."""
    rng = random.Random(-1)
    for index, length in enumerate((args.prompt_tokens[0], args.prompt_tokens[1], args.prompt_tokens[0])):
        prompt = [rng.randrange(3, 100) for _ in range(length)]
        engine.submit(prompt, adapter_name(index), SamplingParams(max_tokens=args.output_tokens[0], ignore_eos=True))
    for index, length in enumerate(sorted(lengths)):
        prompt = [rng.randrange(3, 100) for _ in range(length)]
        engine.submit(prompt, adapter_name(index % args.adapters), SamplingParams(max_tokens=1, ignore_eos=True))
    engine.run_until_done()


def replay(engine: Engine, arrivals: list[Arrival], adapter_name, args) -> dict:
    """Drive the engine through one run of arrivals against the wall clock; latency and throughput figures."""
    pending = list(reversed(arrivals))  # pop() takes the next arrival
    submitted: list[tuple[Arrival, object]] = []
    first_token: dict[int, float] = {}
    finished_at: dict[int, float] = {}
    tokens_per_step: list[int] = []
    cutoff = args.duration + args.drain
    start = time.perf_counter()
    while True:
        now = time.perf_counter() - start
        while pending and pending[-1].time <= now:
            arrival = pending.pop()
            request = engine.submit(arrival.prompt, adapter_name(arrival.adapter),
                                    SamplingParams(max_tokens=arrival.output_tokens, ignore_eos=True))
            submitted.append((arrival, request))
        busy = engine.waiting or engine.running
        if not busy:
            if not pending:
                break
            time.sleep(max(0.0, pending[-1].time - (time.perf_counter() - start)))  # idle until the next arrival
            continue
        if now > cutoff:
            break
        touched = engine.step()
        done = time.perf_counter() - start
        tokens_per_step.append(len(touched))  # prefilled plus decoded requests
        for request in touched:
            first_token.setdefault(request.id, done)
            if request.finished:
                finished_at[request.id] = done
    elapsed = time.perf_counter() - start
    unfinished = [r for _, r in submitted if not r.finished]
    for request in unfinished:
        engine.cancel(request)
    tokens = sum(len(r.tokens) for _, r in submitted)
    ttft = [(first_token[r.id] - a.time) * 1000 for a, r in submitted if r.id in first_token]
    tpot = [(finished_at[r.id] - first_token[r.id]) * 1000 / (len(r.tokens) - 1)
            for _, r in submitted if r.id in finished_at and len(r.tokens) > 1]

    def stat(values, q):
        value = percentile(values, q)
        return None if value is None else round(value, 2)

    return {"requests_submitted": len(submitted), "requests_finished": len(finished_at),
            "requests_unfinished": len(unfinished), "output_tokens": tokens, "elapsed_s": round(elapsed, 3),
            # the arrivals span --duration even when the last request finishes earlier
            "throughput_tok_s": round(tokens / max(elapsed, args.duration), 1),
            "throughput_req_s": round(len(finished_at) / max(elapsed, args.duration), 3),
            "ttft_ms_p50": stat(ttft, 50), "ttft_ms_p99": stat(ttft, 99),
            "tpot_ms_p50": stat(tpot, 50), "tpot_ms_p99": stat(tpot, 99),
            "engine_steps": len(tokens_per_step),
            "mean_tokens_per_step": round(sum(tokens_per_step) / len(tokens_per_step), 2) if tokens_per_step else 0,
            "peak_tokens_per_step": max(tokens_per_step, default=0)}


def prepare_para_adapters(para, count: int, directory: Path) -> list[Path]:
    """Save ``count`` random PARA adapters (one attached at a time, so the device holds only the engine's)."""
    paths = []
    for index in range(count):
        name = f"p{index}"
        if index:
            para.add_adapter(name, ParaConfig(r=PARA_RANK))
        randomize_para_adapter(para, name, seed=index)
        paths.append(directory / name)
        para.save_pretrained(paths[-1], adapter_name=name)
        if index:
            para.delete_adapter(name)
    return paths


def build_engine(mode: str, para, model, args, lora_rank: int, max_len: int, directory: Path, budget: Budget):
    """The engine for ``mode`` with its adapters registered, and the adapter name of a popularity rank."""
    if mode == "para":
        log(budget, f"para: writing {args.adapters} random PARA adapters (r={PARA_RANK}) to register them")
        paths = prepare_para_adapters(para, args.adapters, directory / "para")
    engine = Engine(para, slots=args.slots, max_len=max_len, device_adapters=args.device_adapters,
                    lora_rank=lora_rank if mode == "lora" else 0)
    if mode == "para":
        for index, path in enumerate(paths):
            if f"p{index}" not in engine.adapters:  # p0 came attached to the model
                engine.adapters.register(f"p{index}", path)
        return engine, lambda k: f"p{k}"
    if mode == "lora":
        log(budget, f"lora: writing {args.adapters} random LoRA adapters (r={lora_rank}, q and v) to register them")
        dtype = model.get_input_embeddings().weight.dtype
        for index in range(args.adapters):
            lora = random_lora(model.config, lora_rank, seed=10_000 + index, device="cpu", dtype=dtype)
            engine.register_lora(f"l{index}", save_peft_lora(directory / "lora" / f"l{index}", lora, lora_rank))
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
    para = get_para_model(model, ParaConfig(r=PARA_RANK), adapter_name="p0").eval()
    settings = {"shape": args.shape, "rates_rps": args.rates, "duration_s": args.duration, "drain_s": args.drain,
                "adapters": args.adapters, "zipf_s": args.zipf,
                "prompt_tokens": f"uniform integer in [{args.prompt_tokens[0]}, {args.prompt_tokens[1]}]",
                "output_tokens": f"uniform integer in [{args.output_tokens[0]}, {args.output_tokens[1]}], eos ignored",
                "arrivals": "Poisson", "sampling": "greedy", "slots": args.slots, "max_len": max_len,
                "device_adapters": args.device_adapters, "para_rank": PARA_RANK, "lora_rank": lora_rank,
                "seed": args.seed, "dtype": str(dtype).replace("torch.", ""),
                "throughput": "output tokens / max(run duration, time of the last step)"}
    header = {"settings": settings}
    results = ResultFile(args.output, "trace", header, append=args.append)
    rows: list[dict] = []
    workloads = {rate: workload(args, rate, model.config.vocab_size) for rate in args.rates}
    with tempfile.TemporaryDirectory(prefix="para-trace-") as tmp:
        for mode in [m for m in ("bare", "lora", "para") if m in args.modes]:  # para last: its engine evicts adapters
            if budget.exhausted():
                log(budget, f"budget of {args.budget_s:.0f} s used up: skipping {mode}")
                continue
            engine = None
            try:
                engine, adapter_name = build_engine(mode, para, model, args, lora_rank, max_len, Path(tmp), budget)
                graphs = capture_graphs(engine)
                warm_up(engine, adapter_name, args, {len(a.prompt) for w in workloads.values() for a in w})
                log(budget, f"{mode}: engine ready ({graphs} CUDA graphs recorded)")
                for rate in args.rates:
                    if budget.exhausted():
                        log(budget, f"budget of {args.budget_s:.0f} s used up: skipping {mode} at {rate}/s")
                        continue
                    loads = engine.adapters.loads
                    figures = replay(engine, workloads[rate], adapter_name, args)
                    row = {"shape": args.shape, "mode": mode, "rate_rps": rate, **figures,
                           "offered_tok_s": round(sum(a.output_tokens for a in workloads[rate]) / args.duration, 1)}
                    if mode == "para":
                        row["adapter_loads"] = engine.adapters.loads - loads
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
            del engine
            free_memory(device)
    results.finish(rows, budget, plot=not args.no_plot)


if __name__ == "__main__":
    main()
