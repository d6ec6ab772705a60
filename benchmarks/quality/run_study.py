"""The quality study: PARA against LoRA, DoRA and IA3 (HF peft) on five tasks, budget-matched.

One command reruns everything (on a GPU machine; several runs share a GPU):

    python benchmarks/quality/run_study.py --workers 8

Stages, scheduled as soon as their inputs exist:
  base      the bare backbone on every task's dev split
  sweep     every method × task at each learning rate of --lrs, seed 0 (the same grid for every method)
  seeds     the best learning rate per method × task (chosen on dev) at the remaining seeds
  ablation  PARA's pooler (last, max, attention) and r (--ablation-ranks) on --ablation-tasks, best PARA lr
  variants  PARA-family variants and the LoRA-on-PARA's-targets baseline (VARIANTS; --variants picks some) on
            --variant-tasks, budget-matched to the paper's PARA: seed 0 at the rate the sweep chose for the
            paper's PARA (for a LoRA variant: for LoRA) on that task, or at every rate of --variant-lrs; a
            LoRA variant then gets the other seeds at its rate, and once every screened run has finished the
            --variant-finalists best PARA variants get them too; the finalists and the LoRA variants also
            run on --finalist-tasks (all seeds), so the best variants are compared on every task
Each run trains with dev evaluation (a fixed subset) to keep its best checkpoint, then scores that
checkpoint on the whole dev split with `para eval`. Finished runs are recorded in --results
(one object per run) and skipped when the script is started again, so an interrupted study resumes.
The seed-0 run of the chosen learning rate is one of the three seeds reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
METHODS = ["para", "lora", "dora", "ia3"]
TASKS = ["copa", "boolq", "spider", "squad", "gsm8k"]  # cheapest first: whole tasks finish early
# Per task: epochs, batch size (sequences; longer prompts get fewer, so every run's logits fit beside
# seven others on one GPU), and how many dev examples pick the best checkpoint during training.
# SQuAD and GSM8K train on the first `train_limit` examples (the same ones for every method), so that
# one run fits in the ten minutes a GPU job may take; GSM8K's long worked answers are scored in
# larger batches. `minutes` is a run's expected length beside others on a GPU (for --deadline) until
# recorded runs of the task give a better estimate.
SCHEDULE = {
    "copa": {"epochs": 8, "batch_size": 32, "eval_limit": 100, "minutes": 1.5},
    "boolq": {"epochs": 3, "batch_size": 16, "eval_limit": 200, "minutes": 4},
    "spider": {"epochs": 4, "batch_size": 16, "eval_limit": 64, "minutes": 4.5},
    "squad": {"epochs": 1, "batch_size": 16, "eval_limit": 200, "train_limit": 4000, "minutes": 6},
    "gsm8k": {"epochs": 1, "batch_size": 16, "eval_limit": 64, "train_limit": 2400, "eval_batch_size": 128,
              "minutes": 7},
}
# PARA-family variants (method names start with "para") and stronger baselines, as `para train` flags; each
# is budget-matched to the paper's PARA at --rank (`--budget-match` lowers or raises its r). para-deep20 and
# para-upper name layers of the default 30-layer backbone (SmolLM2-135M): another --model needs its own.
VARIANTS = {
    "para-static": {"method": "para", "variant": {"static_bias": True}, "flags": ["--static-bias"]},
    "para-k": {"method": "para", "variant": {"targets": ["q", "k", "v", "up"]}, "flags": ["--targets", "q,k,v,up"]},
    "para-all": {"method": "para", "variant": {"targets": ["q", "k", "v", "o", "up", "down"]},
                 "flags": ["--targets", "q,k,v,o,up,down"]},
    "para-tanh": {"method": "para", "variant": {"scale_form": "tanh"}, "flags": ["--scale-form", "tanh"]},
    "para-residual": {"method": "para", "variant": {"generator_input": "residual"},
                      "flags": ["--generator-input", "residual"]},
    "para-deep20": {"method": "para", "variant": {"pool_layer": 20}, "flags": ["--pool-layer", "20"]},
    "para-head": {"method": "para", "variant": {"granularity": "head"}, "flags": ["--granularity", "head"]},
    "para-upper": {"method": "para", "variant": {"layers": "15-29"}, "flags": ["--layers", "15-29"]},
    "para-init05": {"method": "para", "variant": {"down_init_scale": 0.5}, "flags": ["--down-init-scale", "0.5"]},
    "para-uplr4": {"method": "para", "variant": {"up_lr_ratio": 4.0}, "flags": ["--up-lr-ratio", "4"]},
    "para-wd01": {"method": "para", "variant": {"weight_decay": 0.1}, "flags": ["--weight-decay", "0.1"]},
    "lora-qvu": {"method": "lora", "variant": {"targets": ["q", "v", "up"]}, "flags": ["--targets", "q,v,up"]},
}
SMOKE = {"max_steps": 2, "train_limit": 8, "eval_limit": 4, "dev_limit": 4, "batch_size": 4}
DEFAULT_MODEL, DEFAULT_RANK = "smollm2-135m", 12  # the committed study's settings


def environment() -> dict:
    import torch
    import transformers
    import peft

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.machine()})"
    return {"gpu": gpu, "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                     "peft": peft.__version__, "python": platform.python_version()}}


class Study:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.results_path = Path(args.results)
        self.lock = threading.Lock()
        self.runs: list[dict] = json.loads(self.results_path.read_text())["runs"] if self.results_path.exists() else []
        self.env = environment()
        # Runs share the machine: cap each one's CPU threads so they do not oversubscribe the cores.
        threads = str(max(1, (os.cpu_count() or 2) // args.workers))
        # Expandable segments let runs that share the GPU give back what their allocator no longer uses.
        self.env_vars = {"OMP_NUM_THREADS": threads, "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
                         **os.environ, "PYTHONUNBUFFERED": "1"}

    # ---------------------------------------------------------------- records
    def key(self, job: dict) -> str:
        """What tells runs apart. The settings the committed study ran with leave the key as it always was; any
        other model, rank or a smoke run adds to it, so such a run never counts as one of the study's."""
        key = "|".join(str(job.get(k)) for k in ("stage", "task", "method", "seed", "lr", "pooler", "rank"))
        return key + self.settings_suffix(job, "|")

    def settings_suffix(self, job: dict, separator: str) -> str:
        a = self.args
        extra = [f"model={a.model}"] if a.model != DEFAULT_MODEL else []
        extra += [f"r={a.rank}"] if a.rank != DEFAULT_RANK and job.get("rank") is None else []
        extra += ["smoke"] if a.smoke else []
        return "".join(separator + item for item in extra)

    def done(self, job: dict) -> dict | None:
        return next((r for r in self.runs if r["key"] == self.key(job)), None)

    def record(self, row: dict) -> None:
        with self.lock:
            self.results_path.parent.mkdir(parents=True, exist_ok=True)
            self.runs = [r for r in self.runs if r["key"] != row["key"]] + [row]
            tmp = self.results_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"runs": self.runs}, indent=1) + "\n")
            tmp.replace(self.results_path)

    # ------------------------------------------------------------------- jobs
    def para_command(self) -> list[str]:
        return [sys.executable, "-m", "parapeft.cli.main"]

    def run_dir(self, job: dict) -> Path:
        name = "-".join(str(job[k]) for k in ("stage", "task", "method") if job.get(k) is not None)
        extra = "-".join(f"{k}{job[k]}" for k in ("seed", "lr", "pooler", "rank") if job.get(k) is not None)
        return Path(self.args.runs) / f"{name}-{extra}{self.settings_suffix(job, '-').replace('=', '').replace('/', '_')}"

    def execute(self, job: dict, gpu: int | None) -> dict:
        a, out = self.args, self.run_dir(job)
        started = time.perf_counter()
        train_cmd = None
        variant = VARIANTS.get(job["method"])
        if job["method"] != "base":
            schedule = SCHEDULE[job["task"]]
            method = variant["method"] if variant else job["method"]
            train_cmd = self.para_command() + [
                "train", "--model", a.model, "--task", job["task"], "--method", method, "--out", str(out),
                "--seed", str(job["seed"]), "--lr", str(job["lr"]), "--rank", str(job.get("rank") or a.rank),
                "--pooler", job.get("pooler") or "mean", "--budget-match",
                "--batch-size", str(SMOKE["batch_size"] if a.smoke else schedule["batch_size"]),
                "--eval-limit", str(SMOKE["eval_limit"] if a.smoke else schedule["eval_limit"]),
                "--evals", "1" if a.smoke else "2", "--no-progress", "--resume",
            ] + (variant["flags"] if variant else [])
            if a.smoke:
                train_cmd += ["--max-steps", str(SMOKE["max_steps"]), "--train-limit", str(SMOKE["train_limit"])]
            else:
                train_cmd += ["--epochs", str(schedule["epochs"])]
                if "train_limit" in schedule:
                    train_cmd += ["--train-limit", str(schedule["train_limit"])]
            self._call(train_cmd, out, "train.log", gpu)
        eval_out = out / "dev_eval.json"
        eval_batch_size = SCHEDULE[job["task"]].get("eval_batch_size", a.eval_batch_size)
        eval_cmd = self.para_command() + ["eval", "--model", a.model, "--task", job["task"], "--split", "dev",
                                          "--output", str(eval_out), "--no-progress", "--batch-size", str(eval_batch_size)]
        if job["method"] != "base":
            eval_cmd += ["--adapter", str(out / "best")]
        if a.smoke:
            eval_cmd += ["--limit", str(SMOKE["dev_limit"])]
        self._call(eval_cmd, out, "eval.log", gpu)
        evaluation = json.loads(eval_out.read_text())
        summary = json.loads((out / "summary.json").read_text()) if train_cmd else {}
        config = json.loads((out / "run_config.json").read_text()) if train_cmd else {}
        from parapeft.tasks import get_task

        metric = get_task(job["task"]).metric
        return {
            "key": self.key(job), "stage": job["stage"], "model": a.model, "task": job["task"], "method": job["method"],
            "seed": job.get("seed"), "lr": job.get("lr"), "pooler": job.get("pooler"), "rank": summary.get("rank"),
            "trainable_params": summary.get("trainable_params", 0), "budget_target": config.get("budget_target"),
            "metric_name": metric, "dev_metric": evaluation["metrics"][metric], "dev_metrics": evaluation["metrics"],
            "dev_examples": evaluation["examples"], "selection_metric": summary.get("dev_metric"),
            "best_step": summary.get("best_step"), "steps": summary.get("steps"),
            "train_wall_s": summary.get("wall_s"), "eval_wall_s": evaluation["wall_s"],
            "wall_s": round(time.perf_counter() - started, 1), **self.env,
            "command": " && ".join(shlex.join(c) for c in ([train_cmd] if train_cmd else []) + [eval_cmd]),
            "smoke": bool(a.smoke), **({"variant": variant["variant"]} if variant else {}),
        }

    def _call(self, cmd: list[str], out: Path, log_name: str, gpu: int | None) -> None:
        out.mkdir(parents=True, exist_ok=True)
        env = self.env_vars if gpu is None else {**self.env_vars, "CUDA_VISIBLE_DEVICES": str(gpu)}
        with (out / log_name).open("a") as log:
            result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        if result.returncode:
            tail = (out / log_name).read_text()[-2000:]
            raise RuntimeError(f"{shlex.join(cmd)} failed ({result.returncode}):\n{tail}")

    # -------------------------------------------------------------- schedule
    def best_lr(self, task: str, method: str) -> float | None:
        rows = [r for r in self.runs if r["stage"] == "sweep" and r["task"] == task and r["method"] == method]
        if len(rows) < len(self.args.lrs):
            return None
        return max(rows, key=lambda r: (r["dev_metric"], -r["lr"]))["lr"]

    def initial_jobs(self) -> list[dict]:
        a = self.args
        jobs = [{"stage": "base", "task": t, "method": "base"} for t in a.tasks] if "base" in a.stages else []
        if "sweep" in a.stages:
            jobs += [{"stage": "sweep", "task": t, "method": m, "seed": 0, "lr": lr}
                     for t in a.tasks for m in a.methods for lr in a.lrs]
        if "variants" in a.stages:
            jobs += self.screen_jobs(a.variants, a.variant_tasks)
            baselines = [n for n in a.variants if VARIANTS[n]["method"] != "para"]
            jobs += self.screen_jobs(baselines, a.finalist_tasks) + self.seed_jobs(baselines, a.finalist_tasks)
        return jobs

    def variant_lr(self, task: str, name: str) -> float | None:
        """The rate a variant's seeds run at on ``task``: its own best seed-0 rate over --variant-lrs (None until
        all have run), or without --variant-lrs the rate the sweep chose for the method it builds on."""
        a = self.args
        if not a.variant_lrs:
            return self.best_lr(task, VARIANTS[name]["method"])
        rows = [r for r in self.runs if r["stage"] == "variants" and r["task"] == task and r["method"] == name
                and r["seed"] == 0 and r["lr"] in a.variant_lrs]
        if {r["lr"] for r in rows} != set(a.variant_lrs):
            return None
        return max(rows, key=lambda r: (r["dev_metric"], -r["lr"]))["lr"]

    def screen_jobs(self, names: list[str], tasks: list[str]) -> list[dict]:
        """Seed-0 runs of each variant: at every rate of --variant-lrs, or at the base method's chosen rate."""
        jobs = []
        for name in names:  # tasks interleaved: runs of one long task alone would not fit beside each other
            for task in tasks:
                rates = self.args.variant_lrs or [self.best_lr(task, VARIANTS[name]["method"])]
                if rates == [None]:
                    raise SystemExit(f"the {VARIANTS[name]['method']} sweep on {task} is not recorded; run it first "
                                     "(or give --variant-lrs)")
                jobs += [{"stage": "variants", "task": task, "method": name, "seed": 0, "lr": rate} for rate in rates]
        return jobs

    def seed_jobs(self, names: list[str], tasks: list[str]) -> list[dict]:
        """The other seeds of each variant on every task of ``tasks`` whose rate is decided: at once when the
        rate is the base method's, after the seed-0 runs of --variant-lrs when it is the variant's own."""
        jobs = []
        for name in names:
            for task in tasks:
                lr = self.variant_lr(task, name)
                first = {"stage": "variants", "task": task, "method": name, "seed": 0, "lr": lr}
                if lr is not None and (not self.args.variant_lrs or self.done(first)):
                    jobs += [{**first, "seed": s} for s in self.args.seeds if s != 0]
        return jobs

    def variant_finalists(self) -> list[str] | None:
        """The PARA variants that get the other seeds, once every screened (seed-0) variant run is recorded: the
        --variant-finalists ones with the largest mean gain over the paper's PARA (both at seed 0 and their
        chosen rates) across --variant-tasks. None while screened runs are outstanding."""
        a = self.args
        screened = {}
        for name in (n for n in a.variants if VARIANTS[n]["method"] == "para"):
            gains = []
            for task in a.variant_tasks:
                lr = self.variant_lr(task, name)
                row = None if lr is None else self.done({"stage": "variants", "task": task, "method": name,
                                                         "seed": 0, "lr": lr})
                if row is None:
                    return None
                paper = self.done({"stage": "sweep", "task": task, "method": "para", "seed": 0,
                                   "lr": self.best_lr(task, "para")})
                gains.append(row["dev_metric"] - paper["dev_metric"])
            screened[name] = sum(gains) / len(gains)
        return sorted(screened, key=screened.get, reverse=True)[:a.variant_finalists]

    def follow_ups(self, finished: dict) -> list[dict]:
        """Jobs that became possible when ``finished`` completed its (task, method) sweep, or the variant screen."""
        a = self.args
        if finished["stage"] == "variants":
            if "variants" not in a.stages:
                return []
            # A LoRA variant (a baseline) gets its seeds as soon as its rate is decided; PARA variants wait for
            # the whole screen, and only the finalists get them.
            baselines = [n for n in a.variants if VARIANTS[n]["method"] != "para"]
            finalists = self.variant_finalists() or []
            return (self.seed_jobs(baselines + finalists, a.variant_tasks)
                    + self.screen_jobs(finalists, a.finalist_tasks)
                    + self.seed_jobs(baselines + finalists, a.finalist_tasks))
        if finished["stage"] != "sweep":
            return []
        lr = self.best_lr(finished["task"], finished["method"])
        if lr is None:
            return []
        task, method = finished["task"], finished["method"]
        jobs = []
        if "seeds" in a.stages:
            jobs += [{"stage": "seeds", "task": task, "method": method, "seed": s, "lr": lr} for s in a.seeds if s != 0]
        if "ablation" in a.stages and method == "para" and task in a.ablation_tasks:
            jobs += [{"stage": "ablation", "task": task, "method": "para", "seed": 0, "lr": lr, "pooler": p}
                     for p in ("last", "max", "attention")]
            jobs += [{"stage": "ablation", "task": task, "method": "para", "seed": 0, "lr": lr, "rank": r}
                     for r in a.ablation_ranks]
        return jobs

    def expected_seconds(self, job: dict) -> float:
        """A run's expected wall time: the slowest recorded trained run of its task, else the schedule's guess."""
        if job["method"] == "base":
            return 300.0
        recorded = [r["wall_s"] for r in self.runs if r["task"] == job["task"] and r["method"] != "base"
                    and not r.get("smoke")]
        return max(recorded) if recorded else 60.0 * SCHEDULE[job["task"]]["minutes"]

    def run(self) -> int:
        """Runs what is not done yet; returns how many runs failed or were left for later."""
        a = self.args
        started = time.monotonic()
        pending = self.initial_jobs()
        for row in list(self.runs):  # follow-ups of sweeps finished in an earlier invocation
            pending += [j for j in self.follow_ups(row) if j not in pending]
        gpus = a.gpus or 0
        load = {gpu: 0 for gpu in range(gpus)}  # runs in flight per GPU
        failures = deferred = 0
        never: list[str] = []
        with ThreadPoolExecutor(a.workers) as pool:
            running: dict = {}
            while pending or running:
                # With --deadline, a run that would not finish in time is not started (its GPU job
                # would be killed with it): it waits for the next invocation.
                for job in list(pending):
                    if len(running) >= a.workers:
                        break
                    pending.remove(job)
                    if self.done(job):
                        continue
                    if a.deadline and time.monotonic() - started + self.expected_seconds(job) > a.deadline:
                        if self.expected_seconds(job) > a.deadline:
                            never.append(self.key(job))  # no invocation under this deadline could run it
                        else:
                            deferred += 1
                        continue
                    gpu = min(load, key=load.get) if gpus else None
                    if gpu is not None:
                        load[gpu] += 1
                    running[pool.submit(self.execute, job, gpu)] = (job, gpu)
                if not running:
                    continue
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    job, gpu = running.pop(future)
                    if gpu is not None:
                        load[gpu] -= 1
                    try:
                        row = future.result()
                    except Exception as err:  # one failed run must not stop the study
                        failures += 1
                        print(f"FAILED {self.key(job)}: {err}", flush=True)
                        continue
                    self.record(row)
                    print(f"done {row['key']}: {row['metric_name']}={row['dev_metric']:.4f} "
                          f"params={row['trainable_params']:,} {row['wall_s']:.0f}s", flush=True)
                    # Follow-ups go first, so each task's seeds finish before later tasks' sweeps start.
                    in_flight = [j for j, _ in running.values()]
                    pending = [j for j in self.follow_ups(row)
                               if not self.done(j) and j not in pending and j not in in_flight] + pending
        print(f"{len(self.runs)} runs recorded in {self.results_path}, {failures} failed, {deferred} left for the "
              "next invocation (--deadline)", flush=True)
        if never:
            print(f"{len(never)} runs are expected to take longer than --deadline itself and never start under it: "
                  f"{', '.join(never)}", flush=True)
        return failures + deferred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--lrs", nargs="+", type=float, default=[3e-4, 1e-3, 3e-3, 1e-2])
    parser.add_argument("--rank", type=int, default=DEFAULT_RANK, help="PARA's r; baselines are budget-matched to it")
    parser.add_argument("--ablation-tasks", nargs="+", default=["copa", "boolq"])
    parser.add_argument("--ablation-ranks", nargs="+", type=int, default=[4, 32])
    parser.add_argument("--stages", nargs="+", default=["base", "sweep", "seeds", "ablation"],
                        help="of base, sweep, seeds, ablation, variants (variants needs the recorded sweeps)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--variant-tasks", nargs="+", default=["copa", "boolq", "squad"])
    parser.add_argument("--variant-lrs", nargs="+", type=float, default=None,
                        help="screen every variant at each of these rates (seed 0) and run its seeds at its own best; "
                        "default: the rate the sweep chose for the method it builds on")
    parser.add_argument("--variant-finalists", type=int, default=1,
                        help="PARA variants that get the other seeds after the screen, and run on --finalist-tasks")
    parser.add_argument("--finalist-tasks", nargs="*", default=["gsm8k", "spider"],
                        help="tasks beyond --variant-tasks on which the finalists and the LoRA variants run "
                        "(every seed); the flag alone: none")
    parser.add_argument("--eval-batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=8,
                        help="runs at once, sharing the GPUs (8 fit on one H200 with the response-only loss)")
    parser.add_argument("--gpus", type=int, default=0,
                        help="spread the runs over this many GPUs (CUDA_VISIBLE_DEVICES per run); 0: leave it alone")
    parser.add_argument("--deadline", type=float, default=0,
                        help="seconds: start no run expected to end later (for time-limited GPU jobs); 0: none")
    parser.add_argument("--runs", default=None, help="directory for run outputs (default: runs/study, with --smoke "
                        "runs/study-smoke)")
    parser.add_argument("--results", default=None, help="the results file (default: the committed results.json, "
                        "with --smoke runs/study-smoke/results.json, so that a check never mixes with the study)")
    parser.add_argument("--smoke", action="store_true", help="two steps per run on a few examples: checks the pipeline")
    args = parser.parse_args()
    # The committed study's settings write the committed results; any other model, rank or a smoke run writes its
    # own folder and file, so that report.py and the dashboard never mix them with the study's.
    other = [f"model-{args.model}"] if args.model != DEFAULT_MODEL else []
    other += [f"r{args.rank}"] if args.rank != DEFAULT_RANK else []
    other += ["smoke"] if args.smoke else []
    runs = ROOT / "runs" / "-".join(["study", *(o.replace("/", "_") for o in other)])
    args.runs = args.runs or str(runs)
    args.results = args.results or str(runs / "results.json" if other else HERE / "results.json")
    # exit 1 when a run failed or was left for later, so that a job wrapper knows another pass is needed
    sys.exit(1 if Study(args).run() else 0)


if __name__ == "__main__":
    main()
