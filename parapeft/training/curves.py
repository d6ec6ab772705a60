"""A PNG of a run's training loss and dev metric against the step."""

from __future__ import annotations

import json
from pathlib import Path


def plot_curves(metrics_path: Path, png_path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if r.get("eval")]
    fig, loss_axis = plt.subplots(figsize=(7, 4))
    loss_axis.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:blue", label="training loss")
    loss_axis.set_xlabel("optimisation step")
    loss_axis.set_ylabel("training loss", color="tab:blue")
    if evals:
        metric_axis = loss_axis.twinx()
        keys = sorted(k for k in evals[-1] if k.startswith("dev_"))
        for key, colour in zip(keys, ["tab:orange", "tab:green", "tab:red", "tab:purple"]):
            points = [(r["step"], r[key]) for r in evals if key in r]
            metric_axis.plot(*zip(*points), marker="o", color=colour, label=key)
        metric_axis.set_ylabel("dev metric")
        metric_axis.legend(loc="center right")
    loss_axis.set_title(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
