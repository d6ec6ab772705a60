"""The training loop: response-only loss, AdamW with warm-up and decay, accumulation, Accelerate,
dev evaluation with the best adapter kept, exact resume after an interruption.

Determinism: the example order of epoch e is a permutation seeded by (seed, e)
and torch's RNG is reseeded from (seed, step) before each optimisation step, so
a run resumed from a checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..tasks import get_task
from .batching import PromptTooLongError, collate, encode_for_training, padding_id
from .checkpoint import load_checkpoint, save_checkpoint
from .loss import response_loss
from .methods import attach, count_on_meta, match_budget, trainable_parameters


@dataclass
class TrainArgs:
    model: str = "smollm2-135m"
    task: str = "copa"
    method: str = "para"
    out: str = "runs/copa-para"
    data: str | None = None
    seed: int = 0
    rank: int = 12
    pooler: str = "mean"
    dropout: float = 0.0
    budget_match: bool = False
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    schedule: str = "linear"
    epochs: float = 3.0
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 1024
    train_limit: int | None = None
    eval_limit: int | None = None
    eval_every: int | None = None
    evals: int = 4  # dev evaluations spread over the run when eval_every is not given
    eval_batch_size: int = 32
    select_by: str = "metric"  # metric | loglik (for tasks with candidate answers: faster during training)
    log_every: int = 5
    mixed_precision: str | None = None
    resume: bool = False
    stop_after: int | None = None  # steps in this invocation, then checkpoint and exit (preemptible jobs)
    progress: bool = True


def _schedule(optimizer, kind: str, warmup: int, total: int):
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    build = {"linear": get_linear_schedule_with_warmup, "cosine": get_cosine_schedule_with_warmup}[kind]
    return build(optimizer, warmup, total)


class ExampleOrder:
    """Index of the i-th example seen in training: epochs are seeded permutations laid end to end."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self._cache = size, seed, {}

    def __getitem__(self, i: int) -> int:
        epoch, within = divmod(i, self.size)
        if epoch not in self._cache:
            generator = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            self._cache = {epoch: torch.randperm(self.size, generator=generator).tolist()}
        return self._cache[epoch][within]


def _resolve_rank(args: TrainArgs, config) -> tuple[int, int | None]:
    """The method's rank, matched to PARA r=args.rank's count when --budget-match is set."""
    if not args.budget_match or args.method == "para":
        return args.rank, None
    target = count_on_meta(config, "para", args.rank, args.pooler)
    rank, _ = match_budget(config, args.method, target)
    return rank, target


def train(args: TrainArgs) -> dict:
    from accelerate import Accelerator

    from ..backbones import load_base_model
    from ..evaluation import evaluate

    if args.method != "para" and args.pooler != "mean":
        raise ValueError("--pooler applies to PARA only")
    mixed = args.mixed_precision or ("bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no")
    accelerator = Accelerator(gradient_accumulation_steps=args.grad_accum, mixed_precision=mixed)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.resume:
        raise FileExistsError(f"{out} is not empty; pass --resume to continue that run or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    task = get_task(args.task)
    train_examples = task.examples("train", args.data, limit=args.train_limit)
    dev_examples = task.examples("dev", args.data, limit=args.eval_limit)
    model, tokenizer = load_base_model(args.model)
    rank, budget_target = _resolve_rank(args, model.config)
    torch.manual_seed(args.seed)  # the adapter's initial weights depend on the seed alone
    model = attach(model, args.method, rank, args.pooler, args.dropout)
    n_trainable = trainable_parameters(model)

    encoded, skipped = [], 0
    for example in train_examples:
        try:
            encoded.append(encode_for_training(tokenizer, example, args.max_length))
        except PromptTooLongError:
            skipped += 1
    if not encoded:
        raise ValueError(f"no training example fits --max-length {args.max_length}")
    per_step = args.batch_size * args.grad_accum * accelerator.num_processes
    total_steps = args.max_steps or max(1, math.ceil(args.epochs * len(encoded) / per_step))
    eval_every = args.eval_every or max(1, math.ceil(total_steps / args.evals))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = _schedule(optimizer, args.schedule, int(args.warmup_ratio * total_steps), total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    unwrapped = accelerator.unwrap_model(model)

    state = {"step": 0, "best_metric": None, "best_step": None, "tokens": 0}
    if args.resume and (out / "checkpoint").is_dir():
        state = load_checkpoint(out / "checkpoint", unwrapped, optimizer, scheduler)
    config_record = {**asdict(args), "rank": rank, "budget_target": budget_target, "trainable_params": n_trainable,
                     "train_examples": len(encoded), "skipped_too_long": skipped, "total_steps": total_steps,
                     "mixed_precision": mixed, "processes": accelerator.num_processes}
    if accelerator.is_main_process:
        (out / "run_config.json").write_text(json.dumps(config_record, indent=2) + "\n")
    log = (out / "metrics.jsonl").open("a") if accelerator.is_main_process else None
    select_metric = "loglik_accuracy" if args.select_by == "loglik" else task.metric

    def run_eval(step: int) -> float:
        unwrapped.eval()
        result = evaluate(unwrapped, tokenizer, task, dev_examples, args.max_length, args.eval_batch_size,
                          progress=False, generation=args.select_by != "loglik")
        unwrapped.train()
        value = result.metrics[select_metric]
        if log:
            log.write(json.dumps({"step": step, "eval": True, **{f"dev_{k}": v for k, v in result.metrics.items()}}) + "\n")
            log.flush()
        return value

    order = ExampleOrder(len(encoded), args.seed)
    pad_id = padding_id(tokenizer)
    model.train()
    bar = tqdm(total=total_steps, initial=state["step"], desc=f"{args.method} on {args.task}", unit="step",
               disable=not (args.progress and accelerator.is_main_process))
    window_loss, window_tokens, window_start = 0.0, 0, time.perf_counter()
    first_step, stopped_early = state["step"], False
    try:
        while state["step"] < total_steps:
            step = state["step"]
            torch.manual_seed(args.seed * 1_000_003 + step)  # dropout masks depend on (seed, step) only
            step_loss = 0.0
            for micro in range(args.grad_accum):
                first = ((step * args.grad_accum + micro) * accelerator.num_processes + accelerator.process_index) * args.batch_size
                batch = collate([encoded[order[i]] for i in range(first, first + args.batch_size)], pad_id)
                batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                with accelerator.accumulate(model):
                    loss = response_loss(model, batch, para=args.method == "para")
                    accelerator.backward(loss)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                step_loss += loss.item() / args.grad_accum
                window_tokens += int(batch["attention_mask"].sum())
            state["step"] = step = step + 1
            state["tokens"] += window_tokens
            window_loss += step_loss
            bar.update(1)
            if step % args.log_every == 0 or step == total_steps:
                elapsed = time.perf_counter() - window_start
                steps_in_window = step % args.log_every or args.log_every
                record = {"step": step, "loss": window_loss / steps_in_window, "lr": scheduler.get_last_lr()[0],
                          "tokens_per_s": window_tokens / elapsed, "epoch": step * per_step / len(encoded)}
                bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
                if log:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                window_loss, window_tokens, window_start = 0.0, 0, time.perf_counter()
            if step % eval_every == 0 or step == total_steps:
                value = run_eval(step)
                if state["best_metric"] is None or value > state["best_metric"]:
                    state["best_metric"], state["best_step"] = value, step
                    if accelerator.is_main_process:
                        unwrapped.save_pretrained(out / "best")
                bar.set_postfix(loss=f"{step_loss:.4f}", **{f"dev_{select_metric}": f"{value:.3f}"})
                if accelerator.is_main_process:
                    save_checkpoint(out / "checkpoint", unwrapped, optimizer, scheduler, state)
                window_start = time.perf_counter()  # throughput excludes evaluation time
            if args.stop_after and step - first_step >= args.stop_after and step < total_steps:
                if accelerator.is_main_process:
                    save_checkpoint(out / "checkpoint", unwrapped, optimizer, scheduler, state)
                stopped_early = True
                break
    except KeyboardInterrupt:
        if accelerator.is_main_process:
            save_checkpoint(out / "checkpoint", unwrapped, optimizer, scheduler, state)
            print(f"\ninterrupted at step {state['step']}; checkpoint saved, continue with --resume", flush=True)
        raise
    finally:
        bar.close()
        if log:
            log.close()

    summary = {"model": args.model, "task": args.task, "method": args.method, "seed": args.seed, "rank": rank,
               "pooler": args.pooler if args.method == "para" else None, "trainable_params": n_trainable,
               "metric_name": select_metric, "dev_metric": state["best_metric"], "best_step": state["best_step"],
               "steps": total_steps, "wall_s": round(time.perf_counter() - started, 1)}
    if stopped_early:
        return {**summary, "stopped_at_step": state["step"]}
    if accelerator.is_main_process:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        from .curves import plot_curves

        plot_curves(out / "metrics.jsonl", out / "curves.png", title=f"{args.method} on {args.task} ({args.model})")
    return summary
