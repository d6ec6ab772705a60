"""``para train``, built on ``transformers.Trainer``: response-only loss (logits only where a response token is
predicted), AdamW with warm-up and decay, gradient accumulation, mixed precision, Accelerate / DDP, adapter-only
checkpoints and exact resume come from Trainer; this module adds what Trainer lacks: budget matching of the
baselines, dev evaluation by the task's own metric with the best adapter kept in ``OUT/best``
(:mod:`.run_log`), ``metrics.jsonl``, ``curves.png``, ``run_config.json`` and ``summary.json``.

Determinism: Trainer seeds the example order from ``--seed`` and stores every RNG state in its
checkpoints, so a run resumed from a checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from ..tasks import get_task
from .batching import Encoded, PromptTooLongError, collate, encode_for_training, padding_id
from .loss import response_loss
from ..config import PAPER_FORM
from .methods import attach, count_on_meta, match_budget, trainable_parameters
from .run_log import RunLog

CHECKPOINTS = "checkpoints"  # OUT/checkpoints/checkpoint-<step>: Trainer's checkpoints (the last one is kept)


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
    targets: list[str] | None = None  # None: the method's default (PARA q, v, up; LoRA / DoRA q, v)
    static_bias: bool = False  # the PARA variant settings (ParaConfig); the defaults are the paper's form
    scale_form: str = "linear"
    generator_input: str = "normed"
    pool_layer: int | None = None
    granularity: str = "channel"
    layers: list[int] | None = None  # PARA's layers_to_transform (None: every layer)
    budget_match: bool = False
    lr: float = 1e-3
    up_lr_ratio: float = 1.0  # LoRA+-style: W_up (PARA) / lora_B (LoRA, DoRA) train at lr × this
    down_init_scale: float = 1.0  # W_down (PARA) / lora_A (LoRA, DoRA) start at their default init × this
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


class ResponseTrainer(Trainer):
    """Trainer whose loss is :func:`.loss.response_loss` (and which counts the tokens it trains on)."""

    def __init__(self, *args, para: bool, run_log: RunLog, up_lr_ratio: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.para, self.run_log, self.up_lr_ratio = para, run_log, up_lr_ratio
        # The loss is a mean per micro-batch, as before: Trainer then divides it by the accumulation steps.
        self.model_accepts_loss_kwargs = False

    def create_optimizer(self, model=None):
        """Trainer's AdamW; with ``up_lr_ratio`` != 1 each of its parameter groups is split so that the up side
        (PARA's W_up and static bias, LoRA's B) trains at the ratio times the learning rate."""
        optimizer = super().create_optimizer(model) if model is not None else super().create_optimizer()
        if self.up_lr_ratio == 1.0 or getattr(optimizer, "up_side_split", False):
            return optimizer
        up_side = {id(p) for name, p in self.model.named_parameters() if is_up_side(name)}
        groups = []
        for group in optimizer.param_groups:
            settings = {k: v for k, v in group.items() if k != "params"}
            for scale, params in ((1.0, [p for p in group["params"] if id(p) not in up_side]),
                                  (self.up_lr_ratio, [p for p in group["params"] if id(p) in up_side])):
                if params:
                    groups.append({**settings, "params": params, "lr": group["lr"] * scale})
        optimizer.param_groups = []  # nothing has stepped yet: regroup the same optimizer in place
        for group in groups:
            optimizer.add_param_group(group)
        optimizer.up_side_split = True
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            raise ValueError("para train computes the response loss only; it has no outputs to return")
        self.run_log.tokens += int(inputs["attention_mask"].sum())
        return response_loss(model, inputs, para=self.para)


def is_up_side(name: str) -> bool:
    """Whether a trainable parameter is on the output side of its adapter (PARA's ``up``, LoRA's ``lora_B``)."""
    return ".up." in name or "lora_B" in name


def scale_down_init(model: torch.nn.Module, scale: float) -> None:
    """Multiply the input side's initial weights (PARA's ``down``, LoRA's ``lora_A``) by ``scale``."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad and (".down.weight" in name or "lora_A" in name):
                param.mul_(scale)


class EncodedExamples(torch.utils.data.Dataset):
    def __init__(self, rows: list[Encoded]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Encoded:
        return self.rows[index]


def para_form(args: TrainArgs) -> dict:
    """The PARA variant settings of ``args`` that differ from the paper's form."""
    form = {"static_bias": args.static_bias, "scale_form": args.scale_form, "generator_input": args.generator_input,
            "pool_layer": args.pool_layer, "granularity": args.granularity}
    form = {key: value for key, value in form.items() if value != PAPER_FORM[key]}
    if args.layers is not None:
        form["layers_to_transform"] = list(args.layers)
    return form


def variant_of(args: TrainArgs) -> dict:
    """Everything in which this run departs from its method's defaults (a PARA variant, LoRA's targets, LoRA+)."""
    variant = dict(para_form(args)) if args.method == "para" else {}
    if args.targets is not None:
        variant["targets"] = list(args.targets)
    for key, default in (("up_lr_ratio", 1.0), ("down_init_scale", 1.0)):
        if getattr(args, key) != default:
            variant[key] = getattr(args, key)
    return variant


def _resolve_rank(args: TrainArgs, config) -> tuple[int, int | None]:
    """The method's rank, matched to the paper's PARA at r=args.rank when --budget-match is set (a PARA variant
    is matched too: its r is lowered or raised to that count)."""
    form = para_form(args) if args.method == "para" else {}
    variant = bool(form) or (args.targets is not None and args.method == "para")
    if not args.budget_match or (args.method == "para" and not variant):
        return args.rank, None
    target = count_on_meta(config, "para", args.rank, args.pooler)
    rank, _ = match_budget(config, args.method, target, args.pooler if args.method == "para" else "mean",
                           targets=args.targets, para_form=form or None)
    return rank, target


def _precision(args: TrainArgs) -> str:
    if args.mixed_precision:
        return args.mixed_precision
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


# What may change when a run is resumed; any other setting makes it another run.
RESUMABLE_CHANGES = {"resume", "stop_after", "progress"}


def _check_same_run(out: Path, args: TrainArgs) -> None:
    """Refuse to resume a run made with other settings: its checkpoint and best score would be taken as this one's."""
    recorded_path = out / "run_config.json"
    if not recorded_path.is_file():
        return
    record = json.loads(recorded_path.read_text())
    # the settings as given ("requested"; a record from before it: its fields, but rank, which it holds resolved)
    recorded = record.get("requested") or {k: v for k, v in record.items() if k != "rank"}
    wanted = json.loads(json.dumps(asdict(args)))
    changed = sorted(k for k, v in wanted.items() if k not in RESUMABLE_CHANGES and k in recorded and recorded[k] != v)
    if changed:
        listed = ", ".join(f"{k}: {recorded[k]!r} -> {wanted[k]!r}" for k in changed)
        raise ValueError(f"{out} holds a run made with other settings ({listed}); resume it with its own settings "
                         "or choose another --out")


def train(args: TrainArgs) -> dict:
    from ..backbones import load_base_model
    from ..evaluation import evaluate

    if args.method != "para" and args.pooler != "mean":
        raise ValueError("--pooler applies to PARA only")
    if args.method != "para" and para_form(args):
        flags = [{"layers_to_transform": "layers"}.get(k, k).replace("_", "-") for k in para_form(args)]
        raise ValueError(f"--{'/--'.join(flags)} apply to PARA only")
    if args.method == "ia3" and (args.up_lr_ratio != 1.0 or args.down_init_scale != 1.0):
        raise ValueError("--up-lr-ratio and --down-init-scale apply to PARA, LoRA and DoRA (IA3 has one vector)")
    if args.method == "ia3" and args.dropout:
        raise ValueError("--dropout applies to PARA, LoRA and DoRA (peft's IA3 has no dropout)")
    if args.evals < 1 and not args.eval_every:
        raise ValueError("--evals must be at least 1 (or give --eval-every)")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.resume:
        raise FileExistsError(f"{out} is not empty; pass --resume to continue that run or choose another --out")
    if args.resume:
        _check_same_run(out, args)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    task = get_task(args.task)
    train_examples = task.examples("train", args.data, limit=args.train_limit)
    dev_examples = task.examples("dev", args.data, limit=args.eval_limit)
    if args.select_by == "loglik" and any(e.choices is None for e in dev_examples):
        raise ValueError(f"--select-by loglik needs candidate answers, which {args.task} has not; use --select-by metric")
    model, tokenizer = load_base_model(args.model)
    rank, budget_target = _resolve_rank(args, model.config)
    torch.manual_seed(args.seed)  # the adapter's initial weights depend on the seed alone
    model = attach(model, args.method, rank, args.pooler, args.dropout, targets=args.targets,
                   para_form=para_form(args) if args.method == "para" else None)
    if args.down_init_scale != 1.0:
        scale_down_init(model, args.down_init_scale)
    n_trainable = trainable_parameters(model)

    encoded, skipped = [], 0
    for example in train_examples:
        try:
            encoded.append(encode_for_training(tokenizer, example, args.max_length))
        except PromptTooLongError:
            skipped += 1  # documented in docs/tasks.md: a training prompt is never cut, the example is skipped
    if not encoded:
        raise ValueError(f"no training example fits --max-length {args.max_length}")
    mixed = _precision(args)
    training_args = TrainingArguments(
        output_dir=str(out / CHECKPOINTS), seed=args.seed, data_seed=args.seed,
        per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.lr, weight_decay=args.weight_decay, lr_scheduler_type=args.schedule, optim="adamw_torch",
        max_grad_norm=0.0,  # no clipping, as the method was tuned
        bf16=mixed == "bf16", fp16=mixed == "fp16", logging_steps=args.log_every, save_strategy="steps",
        save_steps=10**9,  # saving is asked for by RunLog: at every dev evaluation and when stopping early
        save_total_limit=1, report_to=[], disable_tqdm=not args.progress, remove_unused_columns=False,
        dataloader_num_workers=0, dataloader_pin_memory=torch.cuda.is_available(),
        # On a machine without a GPU this is what makes `accelerate launch` / torchrun processes one gloo group.
        use_cpu=not torch.cuda.is_available(),
    )
    per_step = args.batch_size * args.grad_accum * training_args.world_size
    total_steps = args.max_steps or max(1, math.ceil(args.epochs * len(encoded) / per_step))
    training_args.max_steps = total_steps
    training_args.warmup_steps = int(args.warmup_ratio * total_steps)
    eval_every = args.eval_every or max(1, math.ceil(total_steps / args.evals))
    select_metric = "loglik_accuracy" if args.select_by == "loglik" else task.metric
    is_main = training_args.process_index == 0

    def run_eval(step: int) -> dict[str, float]:
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        unwrapped.eval()
        result = evaluate(unwrapped, tokenizer, task, dev_examples, args.max_length, args.eval_batch_size,
                          progress=False, generation=args.select_by != "loglik")
        unwrapped.train()
        return result.metrics

    def save_best(directory: Path) -> None:
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        unwrapped.save_pretrained(directory, **({"task": args.task} if args.method == "para" else {}))

    run_log = RunLog(out, eval_every, total_steps, run_eval, select_metric, save_best, is_main, args.stop_after,
                     per_step, len(encoded))
    pad_id = padding_id(tokenizer)
    trainer = ResponseTrainer(model=model, args=training_args, train_dataset=EncodedExamples(encoded),
                              data_collator=lambda rows: collate(rows, pad_id), callbacks=[run_log],
                              para=args.method == "para", run_log=run_log, up_lr_ratio=args.up_lr_ratio)
    resume_from = get_last_checkpoint(str(out / CHECKPOINTS)) if args.resume and (out / CHECKPOINTS).is_dir() else None
    config_record = {**asdict(args), "rank": rank, "budget_target": budget_target, "trainable_params": n_trainable,
                     "train_examples": len(encoded), "skipped_too_long": skipped, "total_steps": total_steps,
                     "mixed_precision": mixed, "processes": training_args.world_size, "requested": asdict(args)}
    if is_main:
        (out / "run_config.json").write_text(json.dumps(config_record, indent=2) + "\n")
    run_log.restore(resume_from)
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    except KeyboardInterrupt:
        trainer._save_checkpoint(trainer.model, trial=None)  # the step reached so far; --resume continues it
        if is_main:
            print(f"\ninterrupted at step {trainer.state.global_step}; checkpoint saved, continue with --resume",
                  flush=True)
        raise

    summary = {"model": args.model, "task": args.task, "method": args.method, "seed": args.seed, "rank": rank,
               "pooler": args.pooler if args.method == "para" else None, "trainable_params": n_trainable,
               "variant": variant_of(args),
               "metric_name": select_metric, "dev_metric": run_log.best_metric, "best_step": run_log.best_step,
               "steps": total_steps, "wall_s": round(time.perf_counter() - started, 1)}
    if run_log.stopped_early:
        summary["stopped_at_step"] = trainer.state.global_step
    elif is_main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        from .curves import plot_curves

        plot_curves(out / "metrics.jsonl", out / "curves.png", title=f"{args.method} on {args.task} ({args.model})")
    leave_process_group()
    return summary


def leave_process_group() -> None:
    """In a multi-process run, wait for the main process's writes, then leave the process group: a process
    that exits with the group alive can abort in gloo's teardown ("terminate called without an active
    exception") and fail the launcher although its training finished."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
