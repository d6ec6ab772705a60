"""Timing, memory-traffic floors and result files shared by the engine benchmarks."""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

H200_HBM_BYTES_PER_S = 4.8e12  # NVIDIA H200 SXM: 4.8 TB/s HBM3e (datasheet peak)
H200_BF16_FLOPS = 989e12  # NVIDIA H200 SXM: dense BF16 tensor-core peak (datasheet)
# Datasheet peaks (HBM bytes/s, dense BF16 FLOP/s) by the name CUDA reports, for the floors; the first match wins.
PEAKS = (("H200", H200_HBM_BYTES_PER_S, H200_BF16_FLOPS), ("H100", 3.35e12, 989e12))


def pick_device() -> tuple[str, torch.dtype]:
    """bf16 on a GPU; float32 on a CPU, where bf16 matmuls are slow emulations and would time the wrong thing."""
    return ("cuda", torch.bfloat16) if torch.cuda.is_available() else ("cpu", torch.float32)


def device_peaks() -> tuple[float, float]:
    """(HBM bytes/s, dense BF16 FLOP/s) of this GPU from its datasheet (H100 SXM or H200 SXM); an H200's for
    any other device, so that the floors of a run elsewhere are at least labelled with what they assume."""
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    return next(((hbm, flops) for key, hbm, flops in PEAKS if key in name), PEAKS[0][1:])


def environment() -> dict:
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("transformers", "peft", "triton"):
        try:
            versions[package] = __import__(package).__version__
        except ImportError:
            pass
    if torch.cuda.is_available():
        versions["cuda"] = torch.version.cuda
        gpu = torch.cuda.get_device_name(0)
    else:
        gpu = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    return {"gpu": gpu, "versions": versions, "command": " ".join(["python", *sys.argv])}


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_steps(step: Callable[[int], object], steps: int, warmup: int, device: str, blocks: int = 3) -> dict:
    """Milliseconds per call of ``step(i)``, after ``warmup`` untimed calls.

    The timed calls run in ``blocks`` back-to-back blocks, each between two synchronisations, so a block
    measures the device's throughput rather than one call's launch latency; ``step_ms`` is the median
    block and ``spread_ms`` the range across blocks (how noisy the figure is).
    """
    for i in range(warmup):
        step(i)
    blocks = max(1, min(blocks, steps))
    sizes = [steps // blocks + (1 if b < steps % blocks else 0) for b in range(blocks)]
    per_block, i = [], warmup
    for size in sizes:
        synchronize(device)
        started = time.perf_counter()
        for _ in range(size):
            step(i)
            i += 1
        synchronize(device)
        per_block.append((time.perf_counter() - started) / size * 1000)
    return {"step_ms": round(statistics.median(per_block), 4), "spread_ms": round(max(per_block) - min(per_block), 4),
            "timed_steps": steps}


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of weights one decoding step reads: every parameter once, except the input embedding table
    (a step looks up one row per token). With tied embeddings the output head reads the whole table."""
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    total = sum(p.numel() * p.element_size() for p in model.parameters() if p is not embedding)
    if head is embedding:
        total += head.numel() * head.element_size()
    return total


def kv_bytes(config, rows: int, context: int, element_size: int) -> int:
    """Bytes of keys and values that attention reads for ``rows`` sequences of ``context`` tokens."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_hidden_layers * rows * 2 * config.num_key_value_heads * head_dim * context * element_size


def floor_ms(total_bytes: int, bytes_per_s: float) -> float:
    return round(total_bytes / bytes_per_s * 1000, 4)


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Budget:
    """Wall-clock allowance of a run: work that would start after it is used up is skipped and reported."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def exhausted(self) -> bool:
        return self.elapsed() > self.seconds


def add_output_arguments(parser: argparse.ArgumentParser, output: Path, budget_s: float) -> None:
    """The options every engine benchmark shares: its time budget and where its JSON (and PNG) go."""
    parser.add_argument("--budget-s", type=float, default=budget_s,
                        help="stop starting new rows after this many seconds (the JSON keeps what was measured)")
    parser.add_argument("--output", type=Path, default=output)
    parser.add_argument("--append", action="store_true",
                        help="keep the rows already in --output (same device) that this run does not re-measure")
    parser.add_argument("--no-plot", action="store_true")


def log(budget: Budget | None, message: str) -> None:
    stamp = f"[{budget.elapsed():6.1f}s] " if budget else ""
    print(stamp + message, flush=True)


ROW_KEY = ("shape", "mode", "runner", "batch_size", "distinct_adapters", "lora_rank", "prompt_tokens", "rate_rps")


class ResultFile:
    """``{"benchmark", "gpu", "versions", "command", <header>, "rows"}`` at ``path``, rewritten after every row
    so that a run cut short keeps what it measured.

    With ``append``, the rows already in the file (same benchmark, same device) are kept unless this run
    measures the same configuration again, so a long run can be split over several commands.
    """

    def __init__(self, path: Path, benchmark: str, header: dict, append: bool = False):
        self.path, self.benchmark, self.header = path, benchmark, header
        self.env = environment()
        self.previous_rows: list[dict] = []
        self.earlier_commands: list[str] = []
        if append and path.exists():
            try:
                previous = json.loads(path.read_text())
            except ValueError:
                previous = {}
            if previous.get("benchmark") == benchmark and previous.get("gpu") == self.env["gpu"]:
                self.previous_rows = previous.get("rows", [])
                self.earlier_commands = previous.get("earlier_commands", []) + [previous.get("command")]
            else:
                print(f"note: {path} holds another benchmark's or device's results; starting a new file")

    def save(self, rows: list[dict]) -> None:
        fresh = {tuple(r.get(k) for k in ROW_KEY) for r in rows}
        kept = [r for r in self.previous_rows if tuple(r.get(k) for k in ROW_KEY) not in fresh]
        payload = {"benchmark": self.benchmark, **self.env,
                   **({"earlier_commands": self.earlier_commands} if self.earlier_commands else {}),
                   **self.header, "rows": kept + rows}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(payload, indent=2) + "\n")

    def finish(self, rows: list[dict], budget: Budget, plot: bool) -> None:
        """The last save, a closing line, and the PNG next to the JSON."""
        self.save(rows)
        log(budget, f"wrote {self.path} ({len(rows)} rows from this run)")
        if plot:
            from plots import plot_file

            plot_file(self.path)


def free_memory(device: str) -> None:
    """Give back what the last configuration's models and caches held, before building the next one."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
