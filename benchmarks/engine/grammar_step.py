"""What structured output costs per decoding step: ``Engine.step()`` with k of the batch's rows under a grammar.

Every row decodes one token per step for ``--batch`` sequences with 128-token prompts, on a backbone of the
given shape with random weights and the vocabulary of ``--tokenizer`` (a Hugging Face tokenizer directory
or id; the grammar's bitmask is as wide as that vocabulary). k rows carry a ``response_format`` and the
rest are free, in the same batch; k = 0 is the baseline of the same run. Two grammars:

  string      {"note": string with minLength 4000}: the row spends the run inside one JSON string, where
              most tokens are allowed (the cheap case of a grammar)
  structured  an array of at least 500 {"id": integer, "tag": "a"|"b"|"c", "ok": boolean} objects: the
              mask changes every few tokens (the expensive case)

Rows stay alive for the whole run (the grammars cannot end sooner; ``ignore_eos`` on free rows). Reported
per (grammar, k): ms per step (median of blocks), the overhead against k = 0, and the host's time to fill
the k rows' bitmasks (measured apart, on the same matchers).

  python benchmarks/engine/grammar_step.py --shape 1.1b --tokenizer PATH --batch 64 --constrained 0 8 32 64
Results go to --output (JSON) with the device and versions.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from measure import Budget, ResultFile, add_output_arguments, log, pick_device, time_steps
from models import SHAPES
from parapeft.engine import Engine, SamplingParams
from parapeft.engine.grammar import ResponseFormat

GRAMMARS = {
    "string": {"type": "object", "additionalProperties": False, "required": ["note"],
               "properties": {"note": {"type": "string", "minLength": 4000}}},
    "structured": {"type": "array", "minItems": 500, "items": {
        "type": "object", "additionalProperties": False, "required": ["id", "tag", "ok"],
        "properties": {"id": {"type": "integer"}, "tag": {"type": "string", "enum": ["a", "b", "c"]},
                       "ok": {"type": "boolean"}}}},
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="1.1b", choices=sorted(SHAPES))
    p.add_argument("--tokenizer", required=True, help="Hugging Face tokenizer directory or id")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--constrained", type=int, nargs="+", default=[0, 8, 32, 64])
    p.add_argument("--grammars", nargs="+", default=list(GRAMMARS), choices=list(GRAMMARS))
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--warmup", type=int, default=16)
    add_output_arguments(p, Path(__file__).with_name("grammar_step.json"), budget_s=600)
    return p.parse_args()


def build(shape: str, vocab: int, device: str, dtype: torch.dtype) -> LlamaForCausalLM:
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**{**SHAPES[shape], "vocab_size": vocab}))
    return model.to(dtype).eval()


def run_one(model, tokenizer, batch: int, constrained: int, grammar: str, args) -> dict:
    engine = Engine(model, tokenizer=tokenizer, max_seqs=batch, max_len=2048, kv_tokens=batch * 2048)
    fmt = ResponseFormat("json_schema", json.dumps(GRAMMARS[grammar]))
    generator = torch.Generator().manual_seed(1)
    total = args.warmup + args.steps * 3 + 8
    requests = []
    for i in range(batch):
        prompt = torch.randint(0, engine.vocab, (128,), generator=generator).tolist()
        params = SamplingParams(max_tokens=total + 16, ignore_eos=True,
                                response_format=fmt if i < constrained else None)
        requests.append(engine.submit(prompt, sampling=params))
    while any(not r.tokens for r in requests):  # every prompt prefilled: from here each step decodes them all
        engine.step()
    timing = time_steps(lambda _: engine.step(), args.steps, args.warmup, str(engine.device))
    alive = sum(not r.finished for r in requests)
    matchers = [r.matcher for r in requests if r.matcher is not None]
    fill_ms = None
    if matchers:
        started = time.perf_counter()
        for _ in range(20):
            engine.grammars.bitmask(matchers, torch.device("cpu"))
        fill_ms = (time.perf_counter() - started) / 20 * 1e3
    return {"mode": grammar, "batch_size": batch, "constrained": constrained, "rows_alive": alive,
            "step_ms": timing["step_ms"], "spread_ms": timing["spread_ms"],
            "host_fill_ms": round(fill_ms, 4) if fill_ms is not None else None}


def main() -> None:
    args = parse_args()
    budget = Budget(args.budget_s)
    device, dtype = pick_device()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    model = build(args.shape, len(tokenizer), device, dtype)
    results = ResultFile(args.output, "grammar_step", {"shape": args.shape, "tokenizer_vocab": len(tokenizer),
                                                         "batch": args.batch, "steps": args.steps,
                                                         "warmup": args.warmup}, append=args.append)
    rows: list[dict] = []
    for grammar in args.grammars:
        base = None
        for k in args.constrained:
            if budget.exhausted():
                log(budget, "out of time")
                break
            row = run_one(model, tokenizer, args.batch, k, grammar, args)
            base = row["step_ms"] if k == 0 else base
            row["over_free"] = round(row["step_ms"] / base, 4) if base else None
            rows.append(row)
            results.save(rows)
            log(budget, f"{grammar} k={k}: {row['step_ms']:.3f} ms/step, fill {row['host_fill_ms']} ms, "
                        f"alive {row['rows_alive']}/{args.batch}")
    results.finish(rows, budget, plot=False)


if __name__ == "__main__":
    main()
