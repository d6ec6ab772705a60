"""What ``para train`` adds to ``transformers.Trainer``: dev evaluation by the task's metric with the best
adapter kept in ``OUT/best``, ``metrics.jsonl`` lines, and stopping after N steps of one invocation.

One ``TrainerCallback``: Trainer calls ``on_step_end`` before it logs and saves a step. The best dev
metric and its step go into each checkpoint as ``para_best.json`` (not into ``TrainerState.best_*``,
which Trainer reads as "keep that checkpoint") and are read back on resume.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

BEST_NAME = "para_best.json"


class RunLog(TrainerCallback):
    def __init__(self, out: Path, eval_every: int, total_steps: int, run_eval: Callable[[int], dict[str, float]],
                 select_metric: str, save_best: Callable[[Path], None], is_main: bool, stop_after: int | None,
                 per_step: int, train_examples: int):
        self.out, self.eval_every, self.total_steps = out, eval_every, total_steps
        self.run_eval, self.select_metric, self.save_best = run_eval, select_metric, save_best
        self.is_main, self.stop_after = is_main, stop_after
        self.per_step, self.train_examples = per_step, train_examples
        self.first_step: int | None = None
        self.best_metric: float | None = None
        self.best_step: int | None = None
        self.stopped_early = False
        self.tokens = 0  # tokens of the steps since the last log line (counted by the trainer's compute_loss)
        self.window_start = time.perf_counter()

    def write(self, record: dict) -> None:
        if self.is_main:
            with (self.out / "metrics.jsonl").open("a") as log:
                log.write(json.dumps(record) + "\n")

    def on_train_begin(self, args, state, control, **kwargs):
        self.first_step = state.global_step
        self.window_start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        if step % self.eval_every == 0 or step == self.total_steps:
            control.should_save = True  # every rank: Trainer's checkpoint saving is collective
        if (step % self.eval_every == 0 or step == self.total_steps) and self.is_main:
            # Once, on the main process: the other ranks wait for it at their next gradient all-reduce.
            started = time.perf_counter()
            metrics = self.run_eval(step)
            value = metrics[self.select_metric]
            self.write({"step": step, "eval": True, **{f"dev_{k}": v for k, v in metrics.items()}})
            if self.best_metric is None or value > self.best_metric:
                self.best_metric, self.best_step = value, step
                self.save_best(self.out / "best")
            self.window_start += time.perf_counter() - started  # throughput excludes evaluation time
        if self.stop_after and step - self.first_step >= self.stop_after and step < self.total_steps:
            control.should_save = control.should_training_stop = True
            self.stopped_early = True
        return control

    def on_save(self, args, state, control, **kwargs):
        if self.is_main:
            checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            (checkpoint / BEST_NAME).write_text(json.dumps({"metric": self.best_metric, "step": self.best_step}) + "\n")

    def restore(self, checkpoint: str | None) -> None:
        """The best metric and step recorded in ``checkpoint`` (the one a resumed run starts from)."""
        if checkpoint is not None and (path := Path(checkpoint) / BEST_NAME).is_file():
            best = json.loads(path.read_text())
            self.best_metric, self.best_step = best["metric"], best["step"]

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        elapsed = time.perf_counter() - self.window_start
        self.write({"step": state.global_step, "loss": logs["loss"], "lr": logs.get("learning_rate"),
                    "tokens_per_s": self.tokens / elapsed if elapsed > 0 else None,
                    "epoch": state.global_step * self.per_step / self.train_examples})
        self.tokens, self.window_start = 0, time.perf_counter()
