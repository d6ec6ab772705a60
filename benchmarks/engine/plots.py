"""PNG figures of the engine benchmarks' JSON files, written next to them.

    python benchmarks/engine/plots.py benchmarks/engine/decode_step.json [more.json ...]

Each benchmark script calls this after writing its JSON; run it by hand to redraw a file (for
example after merging runs with --append). Needs matplotlib; without it the scripts still write JSON.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no PNG (the JSON has every figure)")
        return None
    return plt


def _integer_ticks(ax, values) -> None:
    """Label a log axis with the measured values themselves (1, 8, 32, ...), not powers of ten."""
    from matplotlib.ticker import NullFormatter

    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.xaxis.set_minor_formatter(NullFormatter())


def _label(row: dict) -> str:
    rank = f" r={row['lora_rank']}" if row.get("lora_rank") is not None else ""
    return f"{row['mode']}{rank} ({row['runner']})"


# One colour per mode and one line style per runner, so a series reads the same in every panel.
MODE_COLORS = {"bare": "tab:gray", "para": "tab:orange", "lora": "tab:green", "peft_lora": "tab:red",
               "hf_static": "tab:blue"}
RUNNER_STYLES = {"cuda_graph": "-", "cuda_graph_unfused": "--", "eager": ":", "eager_unfused": ":",
                 "compiled_graph": "-.", "compiled_forward": "-", "generate": "none"}


def _plot_series(ax, series: dict[str, list], styles: dict[str, tuple[str, str]]) -> None:
    for label, points in sorted(series.items()):
        points.sort()
        color, linestyle = styles[label]
        ax.plot(*zip(*points), marker="o", color=color, linestyle=linestyle, label=label)


def _engine_lora_kept(rows: list[dict]) -> list[dict]:
    """Drop the engine's smaller LoRA ranks from a figure: the rank with PARA's parameter count stays."""
    top = max((r["lora_rank"] for r in rows if r["mode"] == "lora"), default=None)
    return [r for r in rows if r["mode"] != "lora" or r["lora_rank"] == top]


def plot_decode(data: dict, png: Path) -> Path | None:
    """Per shape: step time vs batch size (log y, HBM floor of the bare step), and vs distinct adapters."""
    plt = _pyplot()
    if plt is None:
        return None
    rows = data["rows"]
    shapes = sorted({r["shape"] for r in rows})
    fig, axes = plt.subplots(len(shapes), 2, figsize=(13, 4.8 * len(shapes)), squeeze=False)
    for (left, right), shape in zip(axes, shapes):
        mine = _engine_lora_kept([r for r in rows if r["shape"] == shape])
        styles = {_label(r): (MODE_COLORS.get(r["mode"], "black"), RUNNER_STYLES.get(r["runner"], "-")) for r in mine}
        most_distinct = defaultdict(int)  # peft_lora's largest distinct count per batch (distinct <= 64)
        for r in mine:
            if r["mode"] == "peft_lora":
                most_distinct[r["batch_size"]] = max(most_distinct[r["batch_size"]], r["distinct_adapters"])
        series = defaultdict(list)
        for r in mine:
            worst_case = (r["distinct_adapters"] == 0 or r["distinct_adapters"] == r["batch_size"]
                          or (r["mode"] == "peft_lora" and r["distinct_adapters"] == most_distinct[r["batch_size"]]))
            if worst_case:
                series[_label(r)].append((r["batch_size"], r["step_ms"]))
        _plot_series(left, series, styles)
        floor = sorted({(r["batch_size"], r["hbm_floor_ms"]) for r in mine if r["mode"] == "bare"}
                       or {(r["batch_size"], r["hbm_floor_ms"]) for r in mine if r["mode"] == "hf_static"})
        if floor:
            left.plot(*zip(*floor), "k--", label=f"HBM floor, bare ({data.get('hbm_bytes_per_s', 0) / 1e12:.1f} TB/s)")
        left.set(xscale="log", yscale="log", xlabel="batch size (rows)", ylabel="decoding step (ms)",
                 title=f"{shape}: one decoding step, a distinct adapter per row (peft: up to {max(most_distinct.values(), default=0)})")
        _integer_ticks(left, sorted({r["batch_size"] for r in mine}))
        left.legend(fontsize=7)
        left.grid(True, which="both", alpha=0.3)
        adapter_rows = [r for r in mine if r["mode"] in ("para", "lora", "peft_lora")]
        counts = defaultdict(set)  # distinct-adapter counts timed at each batch size
        for r in adapter_rows:
            counts[r["batch_size"]].add(r["distinct_adapters"])
        batches = [b for b, c in counts.items() if len(c) > 1]
        if batches:
            batch = max(batches, key=lambda b: (b == 64, len(counts[b]), b))  # 64: the targets' batch
            sweep = defaultdict(list)
            for r in adapter_rows:
                if r["batch_size"] == batch:
                    sweep[_label(r)].append((r["distinct_adapters"], r["step_ms"]))
            _plot_series(right, sweep, styles)
            right.set(xscale="log", yscale="log", xlabel="distinct adapters in the batch", ylabel="decoding step (ms)",
                      title=f"{shape}: batch {batch}, varying distinct adapters")
            _integer_ticks(right, sorted(counts[batch]))
            right.legend(fontsize=7)
            right.grid(True, which="both", alpha=0.3)
        else:
            right.axis("off")
    fig.suptitle(f"{data.get('gpu', '')} — prompt of {rows[0].get('prompt_tokens', '?')} tokens in cache" if rows else "")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


def plot_prefill(data: dict, png: Path) -> Path | None:
    """Per shape: packed-pass time against tokens per pass (one line per mode and prompt length, the compute
    floor dotted), and each adapter mode's time over bare's."""
    plt = _pyplot()
    if plt is None:
        return None
    rows = data["rows"]
    shapes = sorted({r["shape"] for r in rows})
    fig, axes = plt.subplots(len(shapes), 2, figsize=(12, 4.5 * len(shapes)), squeeze=False)
    colours = {"bare": "C0", "para": "C2", "lora": "C1"}
    styles = {128: "-", 512: "--"}
    for (left, right), shape in zip(axes, shapes):
        mine = [r for r in rows if r["shape"] == shape]
        passes = sorted({r["pass_tokens"] for r in mine})
        lengths = sorted({r["prompt_tokens"] for r in mine})
        for mode in [m for m in colours if any(r["mode"] == m for r in mine)]:
            for length in lengths:
                points = sorted((r["pass_tokens"], r["prefill_ms"]) for r in mine
                                if r["mode"] == mode and r["prompt_tokens"] == length)
                if points:
                    left.plot(*zip(*points), marker="o", color=colours[mode], linestyle=styles.get(length, ":"),
                              label=f"{mode}, {length}-token prompts")
                ratio = sorted((r["pass_tokens"], r[f"{mode}_over_bare"]) for r in mine if r["mode"] == mode
                               and r["prompt_tokens"] == length and r.get(f"{mode}_over_bare") is not None)
                if ratio:
                    right.plot(*zip(*ratio), marker="o", color=colours[mode], linestyle=styles.get(length, ":"),
                               label=f"{mode} / bare, {length}-token prompts")
        floor = sorted({(r["pass_tokens"], r["compute_floor_ms"]) for r in mine if r["prompt_tokens"] == lengths[0]})
        left.plot(*zip(*floor), color="k", linestyle=":", label=f"compute floor ({lengths[0]}-token prompts)")
        left.set(xscale="log", yscale="log", xlabel="tokens per pass", ylabel="prefill step (ms)",
                 title=f"{shape}: packed prefill")
        _integer_ticks(left, passes)
        left.legend(fontsize=7)
        left.grid(True, which="both", alpha=0.3)
        right.axhline(1.0, color="k", linewidth=0.8)
        right.set(xscale="log", xlabel="tokens per pass", ylabel="time / bare's",
                  title=f"{shape}: adapters' extra cost (a distinct adapter per prompt)")
        _integer_ticks(right, passes)
        right.legend(fontsize=7)
        right.grid(True, which="both", alpha=0.3)
    fig.suptitle(data.get("gpu", ""))
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


def plot_trace(data: dict, png: Path) -> Path | None:
    """Throughput, time to first token and time per output token vs arrival rate, per mode."""
    plt = _pyplot()
    if plt is None:
        return None
    rows = data["rows"]
    panels = [("throughput_tok_s", None, "output tokens / s"), ("ttft_ms_p50", "ttft_ms_p99", "time to first token (ms)"),
              ("tpot_ms_p50", "tpot_ms_p99", "time per output token (ms)")]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for ax, (p50, p99, title) in zip(axes, panels):
        for mode in sorted({r["mode"] for r in rows}):
            mine = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["rate_rps"])
            rates = [r["rate_rps"] for r in mine]
            line, = ax.plot(rates, [r[p50] for r in mine], marker="o", label=f"{mode}" + (" p50" if p99 else ""))
            if p99:
                ax.plot(rates, [r[p99] for r in mine], marker="x", linestyle="--", color=line.get_color(), label=f"{mode} p99")
        if p99 is None:  # what the arrivals asked for: the most any mode can deliver
            offered = sorted({(r["rate_rps"], r["offered_tok_s"]) for r in rows})
            ax.plot(*zip(*offered), "k--", label="offered")
        ax.set(xscale="log", xlabel="arrival rate (requests / s)", title=title)
        _integer_ticks(ax, sorted({r["rate_rps"] for r in rows}))
        if p99:
            ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    settings = data.get("settings", {})
    window = f"Poisson arrivals for {settings.get('duration_s', '')} s"
    if settings.get("min_requests"):
        window += f" (longer at low rates: {settings['min_requests']} requests at least)"
    fig.suptitle(f"{data.get('gpu', '')} — {settings.get('shape', '')}, {settings.get('adapters', '')} adapters, "
                 f"Zipf s={settings.get('zipf_s', '')}, {window}")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


PLOTTERS = {"decode_step": plot_decode, "prefill": plot_prefill, "trace": plot_trace}


def plot_file(path: Path) -> Path | None:
    data = json.loads(Path(path).read_text())
    if not data.get("rows"):
        print(f"{path}: no rows to plot")
        return None
    png = PLOTTERS[data["benchmark"]](data, Path(path).with_suffix(".png"))
    if png:
        print(f"wrote {png}")
    return png


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) >= 2 else 2)
    for name in sys.argv[1:]:
        plot_file(Path(name))
