"""``para eval``: score a backbone, with or without an adapter, on a task split."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..tasks import TASKS

    p = sub.add_parser(
        "eval",
        help="evaluate a model (optionally with an adapter) on a task",
        description="Batched evaluation with greedy decoding, printing a metrics table and writing JSON with "
        "per-example predictions. Without --adapter the bare backbone is evaluated. A prompt longer than "
        "--max-length has its passage cut (question and options stay whole); one that still does not fit is "
        "scored wrong; both are counted in the JSON (truncated, unfitted).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", help="named model, HF id or local path (default: the adapter's own backbone, "
                   "else smollm2-135m)")
    p.add_argument("--adapter", metavar="DIR_OR_HUB_ID",
                   help="adapter directory or Hugging Face Hub id (PARA, LoRA, DoRA or IA3)")
    p.add_argument("--task", required=True, help=f"one of: {', '.join(TASKS)}")
    p.add_argument("--split", default="dev")
    p.add_argument("--data", help="data file or directory instead of ../shared/data")
    p.add_argument("--limit", type=int, help="evaluate the first N examples only")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--output", help="JSON file for metrics and predictions (default: next to the adapter, or eval-TASK.json)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..backbones import DEFAULT_MODEL, load_base_model
    from ..evaluation import evaluate
    from ..tasks import get_task
    from ..training.methods import adapter_backbone, load_adapter

    task = get_task(args.task)
    examples = task.examples(args.split, args.data, limit=args.limit)
    args.model = args.model or (args.adapter and adapter_backbone(args.adapter)) or DEFAULT_MODEL
    model, tokenizer = load_base_model(args.model, device=args.device)
    if args.adapter:
        model = load_adapter(model, args.adapter)
    model.eval()
    started = time.perf_counter()
    result = evaluate(model, tokenizer, task, examples, args.max_length, args.batch_size, args.progress)
    elapsed = time.perf_counter() - started
    print(f"\n{args.task} / {args.split} / {len(examples)} examples / {args.adapter or 'bare ' + args.model}")
    for name, value in result.metrics.items():
        print(f"  {name:<18} {value:.4f}")
    if any(result.counts.values()):
        print(f"  over-long prompts: {result.counts['truncated']} had their passage cut to fit, "
              f"{result.counts['unfitted']} could not be fitted and are scored wrong")
    name = f"eval-{args.task}-{args.split}.json"
    default = Path(args.adapter) / name if args.adapter and Path(args.adapter).is_dir() else Path(name)
    output = Path(args.output) if args.output else default
    output.write_text(json.dumps({"model": args.model, "adapter": args.adapter, "task": args.task, "split": args.split,
                                  "examples": len(examples), "metrics": result.metrics,
                                  "truncated": result.counts["truncated"], "unfitted": result.counts["unfitted"],
                                  "wall_s": round(elapsed, 1),
                                  "predictions": result.predictions}, indent=2) + "\n")
    print(f"wrote {output}")
    return 0
