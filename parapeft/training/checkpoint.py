"""Resumable training state: trainable weights (safetensors), optimizer and schedule, counters.

The optimizer file is our own and is read back with ``torch.load(weights_only=True)``,
which refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def save_checkpoint(directory: Path, model, optimizer, scheduler, state: dict) -> None:
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(weights, str(tmp / "trainable.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n")
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)  # a crash mid-save leaves the previous checkpoint intact


def load_checkpoint(directory: Path, model, optimizer, scheduler) -> dict:
    weights = load_file(str(directory / "trainable.safetensors"))
    params = dict(model.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(weights) != expected:
        raise ValueError(f"checkpoint {directory} was written by a different method or configuration")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    extra = torch.load(directory / "optimizer.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    return json.loads((directory / "trainer_state.json").read_text())
