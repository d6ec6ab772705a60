"""The engine on the real SmolLM2-135M-Instruct with the committed PARA adapters: its greedy tokens against
``ParaModel.generate``, for the PyTorch decoding step and the fused (Triton) one.

Random-weight backbones (``engine_check.py``) have nearly tied logits, so there the fused and PyTorch steps
pick different greedy tokens for a good part of the rows from rounding alone; a trained model's logits are
not tied, so its tokens are the convincing check. One batch mixes every committed adapter (``--adapters``:
copa, boolq, squad, spider, gsm8k, whichever exist), each on ``--per-task`` prompts of its task's dev split
formatted as ``para eval`` formats them, plus ``--bare`` (default: ``--per-task``) bare-backbone rows (the
same prompts, round-robin over the tasks). Every row decodes greedily up to ``--max-new-tokens`` tokens,
stopping at eos, three ways:

  reference   ``ParaModel.generate`` for each row alone (as tests/test_engine.py obtains the reference)
  unfused     ``Engine(fused_kernels=False)``: every row in one batch, the PyTorch operations (CUDA graphs on a GPU)
  fused       ``Engine(fused_kernels=True)``: the same with the Triton kernels; only with CUDA and Triton

For each engine path against the reference, and fused against unfused: the fraction of rows whose token
sequences are identical, and the fraction of tokens before the first divergence (per row: common prefix
/ the longer sequence's length, averaged over rows), for all rows, the PARA rows and the bare rows. Also the
first decoding step's logits, fused against unfused (the same inputs: the prefill is shared code), and
the task metric of each path's answers (cut at --max-new-tokens: below the task's own limit for squad, spider
and gsm8k, so those scores are low for every path alike).
bf16 on a GPU and float32 on a CPU unless --dtype says otherwise.

Each part runs on its own: one that fails records its error in the JSON and the others still run.
From the repository root:
  python benchmarks/engine/real_model_check.py --output /tmp/real_model_check.json
  python benchmarks/engine/real_model_check.py --per-task 2 --max-new-tokens 8   # a quick run on a CPU
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import environment, free_memory

from parapeft import BASE_ADAPTER

REPO = Path(__file__).resolve().parents[2]
TASKS = ("copa", "boolq", "squad", "spider", "gsm8k")
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
MAX_LENGTH = 1024  # para eval's default --max-length: prompts are cut to fit it the same way


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="named model, HF id or local path")
    parser.add_argument("--adapters", type=Path, default=REPO / "adapters" / "smollm2-135m",
                        help="folder of PARA adapters named after their tasks")
    parser.add_argument("--data", help="data root, as para eval's --data (default: ../shared/data)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--per-task", type=int, default=8, help="prompts per adapter")
    parser.add_argument("--bare", type=int, help="bare-backbone rows (default: --per-task), the adapters' prompts "
                        "taken round-robin over the tasks")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--dtype", choices=("auto", *DTYPES), default="auto",
                        help="auto: bfloat16 on a GPU, float32 on a CPU")
    parser.add_argument("--no-cuda-graphs", action="store_true", help="decode eagerly on a GPU too")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("real_model_check.json"))
    return parser.parse_args()


# ---------------------------------------------------------------------------------------------- setup
def build_rows(tokenizer, adapters: list[str], args) -> list[dict]:
    """Per adapter ``--per-task`` dev prompts, then ``--bare`` bare rows reusing them round-robin over the tasks."""
    from parapeft.tasks import get_task
    from parapeft.training.batching import encode_prompt

    rows, by_task = [], {}
    for name in adapters:
        task = get_task(name)
        examples = task.examples(args.split, args.data, limit=args.per_task)
        by_task[name] = examples
        for example in examples:
            ids = encode_prompt(tokenizer, example, MAX_LENGTH - args.max_new_tokens + 1)  # as generate_answers
            rows.append({"task": name, "adapter": name, "example": example, "prompt": ids})
    bare = args.per_task if args.bare is None else args.bare
    for i in range(bare):
        name = list(by_task)[i % len(by_task)]
        examples = by_task[name]
        if not examples:
            continue
        example = examples[(i // len(by_task)) % len(examples)]
        ids = encode_prompt(tokenizer, example, MAX_LENGTH - args.max_new_tokens + 1)
        rows.append({"task": name, "adapter": BASE_ADAPTER, "example": example, "prompt": ids})
    return rows


def load(args, device: str, dtype: torch.dtype):
    from parapeft.backbones import load_base_model
    from parapeft.model import ParaModel
    from parapeft.tasks import get_task

    model, tokenizer = load_base_model(args.model, dtype=dtype, device=device)
    found = [t for t in TASKS if (args.adapters / t / "adapter_config.json").is_file()]
    usable, skipped = [], {}
    for name in found:  # an adapter whose task data is missing is left out, not fatal
        try:
            get_task(name).examples(args.split, args.data, limit=1)
            usable.append(name)
        except Exception as err:  # noqa: BLE001
            skipped[name] = f"{type(err).__name__}: {err}"
    if not usable:
        raise RuntimeError(f"no usable adapters under {args.adapters} (skipped: {skipped or 'none found'})")
    para = ParaModel.from_pretrained(model, args.adapters / usable[0], adapter_name=usable[0])
    for name in usable[1:]:
        para.load_adapter(args.adapters / name, name)
    return para.eval(), tokenizer, usable, skipped


# --------------------------------------------------------------------------------------------- paths
@torch.no_grad()
def reference(para, rows: list[dict], args, device: str) -> list[list[int]]:
    """ParaModel.generate for each row alone: greedy, stopping at eos like the engine."""
    out = []
    for row in rows:
        prompt = row["prompt"]
        ids = para.generate(input_ids=torch.tensor([prompt], device=device), adapter_names=[row["adapter"]],
                            max_new_tokens=args.max_new_tokens, do_sample=False, pad_token_id=0)
        out.append(ids[0, len(prompt):].tolist())
    return out


def engine_tokens(para, rows: list[dict], args, fused: bool, device: str) -> tuple[list[list[int]], dict]:
    """All rows submitted together and prefilled in the first step, so every decoding step mixes them all."""
    from parapeft.engine import Engine, SamplingParams

    max_len = max(len(r["prompt"]) for r in rows) + args.max_new_tokens
    graphs = False if args.no_cuda_graphs or device != "cuda" else None  # None: the engine's default
    engine = Engine(para, max_seqs=len(rows), max_len=max_len, cuda_graphs=graphs, fused_kernels=fused,
                    max_step_tokens=sum(len(r["prompt"]) for r in rows) + len(rows))
    first = {}
    decode = engine._decode

    def recording(decoding):
        logits, rows_on_device = decode(decoding)
        if not first:
            first["logits"] = logits.detach().float().clone()
            first["slots"] = [r.row for r in decoding]
        return logits, rows_on_device

    engine._decode = recording
    requests = [engine.submit(r["prompt"], r["adapter"], SamplingParams(max_tokens=args.max_new_tokens))
                for r in rows]
    engine.run_until_done()
    info = {"fused": engine.executor.ops.name == "triton", "cuda_graphs": engine.graphs is not None,
            "max_len": max_len, "peak_batch": list(engine.peak_batch)}
    tokens = [r.tokens for r in requests]
    del engine, requests
    first["info"] = info
    return tokens, first


# ------------------------------------------------------------------------------------------ compare
def _prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def agreement(got: list[list[int]], expected: list[list[int]], rows: list[dict]) -> dict:
    """Identical rows and tokens before the first divergence, for all rows, the PARA rows and the bare rows."""
    out = {}
    groups = {"all": range(len(rows)), "para": [i for i, r in enumerate(rows) if r["adapter"] != BASE_ADAPTER],
              "bare": [i for i, r in enumerate(rows) if r["adapter"] == BASE_ADAPTER]}
    for name, members in groups.items():
        members = list(members)
        if not members:
            continue
        same = sum(got[i] == expected[i] for i in members)
        fractions = [(_prefix(got[i], expected[i]) / max(len(got[i]), len(expected[i])))
                     if max(len(got[i]), len(expected[i])) else 1.0 for i in members]
        out[name] = {"rows_identical": same, "rows": len(members), "rows_identical_frac": round(same / len(members), 4),
                     "prefix_frac": round(sum(fractions) / len(members), 4),
                     "tokens_compared": sum(max(len(got[i]), len(expected[i])) for i in members)}
    out["diverging_rows"] = [{"row": i, "task": rows[i]["task"], "adapter": rows[i]["adapter"],
                              "first_divergence": _prefix(got[i], expected[i]),
                              "lengths": [len(got[i]), len(expected[i])]}
                             for i in range(len(rows)) if got[i] != expected[i]]
    return out


def logits_difference(unfused: dict, fused: dict) -> dict:
    a, b = unfused["logits"], fused["logits"]
    if unfused["slots"] != fused["slots"] or a.shape != b.shape:
        return {"error": "the first decoding steps had different rows"}
    diff = (a - b).abs()
    return {"rows": a.shape[0], "max_abs_diff": round(diff.max().item(), 6),
            "mean_abs_diff": round(diff.mean().item(), 6), "logit_abs_max": round(a.abs().max().item(), 3),
            "argmax_agree": round(float((a.argmax(-1) == b.argmax(-1)).float().mean()), 4),
            "bitwise_equal_rows": int((a == b).all(-1).sum())}


def task_metrics(tokenizer, rows: list[dict], outputs: dict[str, list[list[int]]]) -> dict:
    """Each path's task metric per task, for the PARA rows and the bare rows (answers cut at --max-new-tokens)."""
    from parapeft.tasks import get_task

    result = {}
    for group, bare in (("para", False), ("bare", True)):
        for name in dict.fromkeys(r["task"] for r in rows):
            members = [i for i, r in enumerate(rows) if r["task"] == name and (r["adapter"] == BASE_ADAPTER) == bare]
            if not members:
                continue
            task, examples = get_task(name), [rows[i]["example"] for i in members]
            key = f"{name} ({'bare' if bare else 'adapter'})"
            result[key] = {"examples": len(members), "metric": task.metric}
            for path, tokens in outputs.items():
                try:
                    texts = [tokenizer.decode(tokens[i], skip_special_tokens=True) for i in members]
                    predictions = [task.parse(t, e) for t, e in zip(texts, examples)]
                    result[key][path] = {k: round(v, 4) for k, v in task.score(predictions, examples).items()}
                except Exception as err:  # noqa: BLE001 - a metric that fails must not hide the others
                    result[key][path] = {"error": f"{type(err).__name__}: {err}"}
    return result


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = DTYPES[args.dtype] if args.dtype != "auto" else (torch.bfloat16 if device == "cuda" else torch.float32)
    report = {"benchmark": "real_model_check", **environment(), "model": args.model, "device": device,
              "dtype": str(dtype).removeprefix("torch."), "per_task": args.per_task,
              "max_new_tokens": args.max_new_tokens, "adapters_dir": str(args.adapters),
              "data": args.data or "default ($PARA_DATA, else ../shared/data)", "split": args.split,
              "cuda_graphs": device == "cuda" and not args.no_cuda_graphs, "errors": [], "skipped": {}}
    from parapeft.engine import kernels

    if kernels.available():
        report["versions"]["triton"] = __import__("triton").__version__

    def save():
        report["elapsed_s"] = round(time.perf_counter() - started, 1)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")

    def attempt(name, fn, *fn_args):
        """``fn(*fn_args)``, timed under ``report["wall_s"][name]``; None (error recorded) if it failed."""
        print(f"[{time.perf_counter() - started:6.1f}s] {name} ...", flush=True)
        began, result = time.perf_counter(), None
        try:
            result = fn(*fn_args)
        except Exception as err:  # noqa: BLE001 - one failing part must not cost the others
            traceback.print_exc()
            report["errors"].append({"part": name, "error": f"{type(err).__name__}: {err}"})
        report.setdefault("wall_s", {})[name] = round(time.perf_counter() - began, 2)
        save()
        return result

    loaded = attempt("loading", load, args, device, dtype)
    if loaded is None:
        save()
        raise SystemExit(f"could not load the model or adapters; see {args.output}")
    para, tokenizer, adapters, skipped = loaded
    report["adapters"] = adapters
    report["skipped"].update({f"adapter {k}": v for k, v in skipped.items()})
    rows = attempt("prompts", build_rows, tokenizer, adapters, args)
    if not rows:
        save()
        raise SystemExit(f"no prompts; see {args.output}")
    report["rows"] = {"total": len(rows), "para": sum(r["adapter"] != BASE_ADAPTER for r in rows),
                      "bare": sum(r["adapter"] == BASE_ADAPTER for r in rows),
                      "prompt_tokens": [min(len(r["prompt"]) for r in rows), max(len(r["prompt"]) for r in rows)]}

    outputs, firsts = {}, {}
    tokens = attempt("reference", reference, para, rows, args, device)
    if tokens is not None:
        outputs["reference"] = tokens
    for path, fused in (("unfused", False), ("fused", True)):
        if fused and not (device == "cuda" and kernels.available()):
            report["skipped"][path] = "needs a CUDA device and Triton" + ("" if device == "cuda" else " (CPU here)")
            continue
        result = attempt(path, engine_tokens, para, rows, args, fused, device)
        free_memory(device)
        if result is not None:
            outputs[path], firsts[path] = result
            report.setdefault("engine", {})[path] = firsts[path].pop("info")

    comparisons = {}
    for got, expected in (("unfused", "reference"), ("fused", "reference"), ("fused", "unfused")):
        if got in outputs and expected in outputs:
            comparisons[f"{got} vs {expected}"] = agreement(outputs[got], outputs[expected], rows)
    report["agreement"] = comparisons
    if "unfused" in firsts and "fused" in firsts:
        report["first_step_logits_fused_vs_unfused"] = attempt("logits", logits_difference, firsts["unfused"],
                                                               firsts["fused"])
    if outputs:
        report["task_metrics"] = attempt("task metrics", task_metrics, tokenizer, rows, outputs)
    report["samples"] = [{"task": r["task"], "adapter": r["adapter"], "id": r["example"].id,
                          "prompt_tokens": len(r["prompt"]),
                          **{p: tokenizer.decode(t[i], skip_special_tokens=True) for p, t in outputs.items()}}
                         for i, r in enumerate(rows)]
    report["tokens"] = {p: t for p, t in outputs.items()}
    save()

    print(f"\n{args.model} ({report['dtype']}, {device}), {len(rows)} rows: {report['rows']['para']} PARA "
          f"({', '.join(adapters)}) + {report['rows']['bare']} bare, up to {args.max_new_tokens} new tokens")
    print(f"{'comparison':<22} {'rows identical':>16} {'PARA rows':>10} {'bare rows':>10} {'prefix frac':>12}"
          f" {'tokens':>7}")
    for name, c in comparisons.items():
        a = c["all"]
        cell = {g: (f"{c[g]['rows_identical']}/{c[g]['rows']}" if g in c else "-") for g in ("para", "bare")}
        print(f"{name:<22} {a['rows_identical']:>5}/{a['rows']:<3} {a['rows_identical_frac']:>6.1%} "
              f"{cell['para']:>10} {cell['bare']:>10} {a['prefix_frac']:>12.4f} {a['tokens_compared']:>7}")
    for path, why in report["skipped"].items():
        print(f"{path:<22} skipped: {why}")
    logits = report.get("first_step_logits_fused_vs_unfused")
    if logits and "max_abs_diff" in logits:
        print(f"first-step logits fused vs unfused: max |diff| {logits['max_abs_diff']:.4g} (logits up to "
              f"{logits['logit_abs_max']:.3g}), argmax agree {logits['argmax_agree']:.1%}")
    metrics = report.get("task_metrics") or {}
    if metrics:
        paths = list(outputs)
        print(f"\n{'task metric':<32} {'n':>3} " + " ".join(f"{p:>10}" for p in paths))
        for key, values in metrics.items():
            cells = []
            for p in paths:
                scores = values.get(p, {})
                value = scores.get(values["metric"])
                cells.append(f"{value:>10.3f}" if value is not None else f"{'error':>10}")
            print(f"{key + ' ' + values['metric']:<32} {values['examples']:>3} " + " ".join(cells))
    print(f"\nwrote {args.output} in {time.perf_counter() - started:.0f} s; errors: {report['errors'] or 'none'}")


if __name__ == "__main__":
    main()
