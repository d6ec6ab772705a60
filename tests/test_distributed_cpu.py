"""`accelerate launch` with two processes (gloo on the CPU) of `para train`: one process group, one saved
adapter, evaluation once per evaluation step, and the same run as one process with the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from parapeft.tasks import get_task
from parapeft.training.trainer import TrainArgs, train
from tiny_models import save_tiny_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = shutil.which("accelerate", path=str(Path(sys.executable).parent))
STEPS, EVAL_EVERY = 8, 4
COMMON = dict(task="copa", method="para", rank=4, lr=2e-2, max_steps=STEPS, train_limit=32, eval_limit=8,
              eval_every=EVAL_EVERY, eval_batch_size=8, log_every=1, max_length=256, progress=False)


def cli_flags(values: dict) -> list[str]:
    flags = []
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        flags += ["--no-progress"] if key == "progress" else [flag, str(value)]
    return flags


def records(out: Path) -> tuple[list[float], list[dict]]:
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if "loss" in r], [r for r in lines if r.get("eval")]


@pytest.mark.skipif(ACCELERATE is None, reason="accelerate's launcher is not installed next to this Python")
def test_two_processes_train_one_adapter_evaluate_once_and_match_one_process(tmp_path):
    model = tmp_path / "tiny"
    copa = get_task("copa").examples("train")
    save_tiny_checkpoint(model, [f"{e.prompt} {e.target}" for e in copa] * 2, chat=True, vocab_size=600, context=256)
    two = tmp_path / "two"
    # --multi_gpu is accelerate's torchrun launcher; without a GPU the processes form one gloo group.
    command = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "parapeft.cli.main", "train",
               "--model", str(model), "--out", str(two), "--batch-size", "2", *cli_flags(COMMON)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    one = tmp_path / "one"
    train(TrainArgs(model=str(model), out=str(one), batch_size=4, **COMMON))  # the same global batch of 4

    assert json.loads((two / "run_config.json").read_text())["processes"] == 2
    losses_two, evals_two = records(two)
    losses_one, evals_one = records(one)
    assert len(losses_two) == STEPS and [r["step"] for r in evals_two] == [4, 8]  # one log, evaluated once a step
    checkpoint = {p.name for p in (two / "checkpoints" / f"checkpoint-{STEPS}").iterdir()}
    assert {"rng_state_0.pth", "rng_state_1.pth", "adapter_model.safetensors"} <= checkpoint
    assert "model.safetensors" not in checkpoint
    assert {p.name for p in (two / "best").iterdir()} == {"README.md", "adapter_config.json", "adapter_model.safetensors"}
    # Both runs see the same examples per step; DDP averages per-rank means, so losses agree to noise, not bits.
    assert all(abs(a - b) < 0.02 for a, b in zip(losses_one, losses_two)), (losses_one, losses_two)
    summary_two = json.loads((two / "summary.json").read_text())
    assert summary_two["steps"] == STEPS and summary_two["dev_metric"] is not None
