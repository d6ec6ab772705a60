"""``para train``: fine-tune PARA or a peft baseline on a task."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

from ..config import GENERATOR_INPUTS, GRANULARITIES, SCALE_FORMS
from ..training.methods import METHODS
from ..training.trainer import TrainArgs

DEFAULTS = TrainArgs()


def _layer_list(text: str) -> list[int]:
    layers = []
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            layers += list(range(int(first), int(last or first) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"layers are indices and ranges like 0,4,8 or 15-29; got {text!r}") from None
    if not layers:
        raise argparse.ArgumentTypeError("give at least one layer")
    return layers


def _target_list(text: str) -> list[str]:
    targets = [t.strip() for t in text.split(",") if t.strip()]
    if not targets:
        raise argparse.ArgumentTypeError("give at least one target, e.g. q,v,up")
    return targets


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..tasks import TASKS

    p = sub.add_parser(
        "train",
        help="fine-tune PARA (or LoRA / DoRA / IA3 via peft) on a task",
        description="Fine-tune an adapter on a task's train split, evaluating on its dev split and keeping the best "
        "adapter in OUT/best. The loss is on response tokens only. Runs unchanged under `accelerate launch`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default=DEFAULTS.model, help="named model, HF id or local path")
    p.add_argument("--task", default=DEFAULTS.task, help=f"one of: {', '.join(TASKS)}")
    p.add_argument("--method", default=DEFAULTS.method, choices=METHODS)
    p.add_argument("--out", default=None, help="run directory (default: runs/TASK-METHOD)")
    p.add_argument("--data", help="data file or directory instead of ../shared/data")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    p.add_argument("--rank", "-r", type=int, default=DEFAULTS.rank, help="PARA's r, or LoRA/DoRA's rank")
    p.add_argument("--pooler", default=DEFAULTS.pooler, choices=["mean", "last", "max", "attention"], help="PARA pooler")
    p.add_argument("--dropout", type=float, default=DEFAULTS.dropout)
    p.add_argument("--targets", type=_target_list, default=None,
                   help="comma-separated: PARA's scaled activations (q, k, v, o, up, down; default q,v,up) or the "
                   "projections LoRA / DoRA wrap (q, k, v, o, up, down, gate; default q,v)")
    variant = p.add_argument_group("PARA variants", "settings beyond the paper's form (see docs/method.md)")
    variant.add_argument("--static-bias", action="store_true", help="a learned static vector b: l = b + W_up·h")
    variant.add_argument("--scale-form", default=DEFAULTS.scale_form, choices=SCALE_FORMS,
                         help="multiplier from l: 1 + l, 1 + tanh(l) or 2·sigmoid(l)")
    variant.add_argument("--generator-input", default=DEFAULTS.generator_input, choices=GENERATOR_INPUTS,
                         help="pool the layer's normalised input or the residual stream entering it")
    variant.add_argument("--granularity", default=DEFAULTS.granularity, choices=GRANULARITIES,
                         help="one multiplier per channel, or per attention head for q, k, v, o")
    variant.add_argument("--layers", type=_layer_list, default=None,
                         help="only these decoder layers get a generator, e.g. 15-29 or 0,4,8 (with --budget-match "
                         "r grows to keep the count)")
    variant.add_argument("--pool-layer", type=int, default=None, metavar="L",
                         help="pool from deeper: every layer's generator reads layer L's input from a first, frozen "
                         "pass over the prompt (doubles the prefill)")
    p.add_argument("--up-lr-ratio", type=float, default=DEFAULTS.up_lr_ratio,
                   help="learning rate of the up side (PARA W_up, LoRA B) over --lr, LoRA+-style")
    p.add_argument("--down-init-scale", type=float, default=DEFAULTS.down_init_scale,
                   help="scale of the down side's initial weights (PARA W_down, LoRA A)")
    p.add_argument("--budget-match", action="store_true",
                   help="pick the rank of a baseline or a PARA variant so its trainable parameters are closest to the "
                   "paper's PARA with --rank")
    p.add_argument("--lr", type=float, default=DEFAULTS.lr)
    p.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay)
    p.add_argument("--warmup-ratio", type=float, default=DEFAULTS.warmup_ratio)
    p.add_argument("--schedule", default=DEFAULTS.schedule, choices=["linear", "cosine"])
    p.add_argument("--epochs", type=float, default=DEFAULTS.epochs)
    p.add_argument("--max-steps", type=int, help="stop after this many optimisation steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="per device and micro-step")
    p.add_argument("--grad-accum", type=int, default=DEFAULTS.grad_accum)
    p.add_argument("--max-length", type=int, default=DEFAULTS.max_length, help="tokens per example")
    p.add_argument("--train-limit", type=int, help="use only the first N training examples")
    p.add_argument("--eval-limit", type=int, help="evaluate on the first N dev examples during training")
    p.add_argument("--eval-every", type=int, help="steps between dev evaluations (default: see --evals)")
    p.add_argument("--evals", type=int, default=DEFAULTS.evals, help="dev evaluations spread evenly over the run")
    p.add_argument("--eval-batch-size", type=int, default=DEFAULTS.eval_batch_size)
    p.add_argument("--log-every", type=int, default=DEFAULTS.log_every, help="steps between metric log lines")
    p.add_argument("--select-by", default=DEFAULTS.select_by, choices=["metric", "loglik"],
                   help="what picks the best checkpoint: the task metric from generation, or log-likelihood accuracy")
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], help="default: bf16 on a capable GPU, else no")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--stop-after", type=int, help="checkpoint and exit after this many steps (continue with --resume)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..training.trainer import train

    values = {f.name: getattr(args, f.name) for f in fields(TrainArgs) if hasattr(args, f.name)}
    values["out"] = args.out or f"runs/{args.task}-{args.method}"
    summary = train(TrainArgs(**values))
    print(json.dumps(summary, indent=2))
    return 0
