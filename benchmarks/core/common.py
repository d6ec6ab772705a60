"""Shared bits of the core benchmarks: environment record and JSON output."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import torch
import transformers


def environment() -> dict:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return {
        "device": device,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def save(name: str, payload: dict) -> Path:
    path = Path(__file__).with_name(name)
    path.write_text(json.dumps({**environment(), **payload}, indent=2) + "\n")
    print(f"wrote {path}")
    return path
