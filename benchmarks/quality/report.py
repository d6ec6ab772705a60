"""Tables and a chart from the quality study's results.json; optionally exports the best PARA adapters.

    python benchmarks/quality/report.py                       # writes results.md, results.png, variants.png
    python benchmarks/quality/report.py --export-adapters adapters/smollm2-135m --runs runs/study
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHOD_ORDER = ["base", "para", "lora", "dora", "ia3"]
TASK_ORDER = ["copa", "boolq", "squad", "gsm8k", "spider"]


def load(path: Path) -> list[dict]:
    return [r for r in json.loads(path.read_text())["runs"] if not r.get("smoke")]


def chosen_lr(runs: list[dict], task: str, method: str) -> float | None:
    """Best learning rate on dev, once every rate of the grid has run (None while the sweep is incomplete)."""
    grid = {r["lr"] for r in runs if r["stage"] == "sweep"}
    sweep = [r for r in runs if r["stage"] == "sweep" and r["task"] == task and r["method"] == method]
    if not sweep or {r["lr"] for r in sweep} != grid:
        return None
    return max(sweep, key=lambda r: (r["dev_metric"], -r["lr"]))["lr"]


def main_runs(runs: list[dict], task: str, method: str) -> list[dict]:
    """The seeds reported for (task, method): the chosen learning rate's seed-0 sweep run plus the seed runs."""
    if method == "base":
        return [r for r in runs if r["stage"] == "base" and r["task"] == task]
    lr = chosen_lr(runs, task, method)
    if lr is None:
        return []
    return [r for r in runs if r["task"] == task and r["method"] == method and r["lr"] == lr
            and (r["stage"] == "seeds" or (r["stage"] == "sweep" and r["seed"] == 0))]


def cell(rows: list[dict]) -> str:
    if not rows:
        return "–"
    values = [100 * r["dev_metric"] for r in rows]
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.1f} (n=1)"
    return f"{median:.1f} ({min(values):.1f}–{max(values):.1f}, n={len(values)})"


def markdown(runs: list[dict]) -> str:
    tasks = sorted({r["task"] for r in runs}, key=TASK_ORDER.index)
    methods = [m for m in METHOD_ORDER if any(r["method"] == m for r in runs)]
    any_run = runs[0]
    lines = [
        "# Quality study results",
        "",
        f"Model `{any_run['model']}`; GPU {any_run['gpu']}; versions {json.dumps(any_run['versions'])}.",
        "Dev-split metric ×100: median over seeds (min–max, n seeds). Baselines are budget-matched to PARA r=12;",
        "each method's learning rate was chosen per task on the dev split from the same grid. Dev is also where",
        "checkpoints were selected (the shared data keeps no test split), so these are dev, not test, numbers.",
        "A cell shows – until that method's learning-rate sweep on the task is complete.",
        "",
        "| task (metric) | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for task in tasks:
        metric = next(r["metric_name"] for r in runs if r["task"] == task)
        lines.append(f"| {task} ({metric}) | " + " | ".join(cell(main_runs(runs, task, m)) for m in methods) + " |")
    lines += ["", "Trainable parameters and chosen learning rate:", "", "| method | params | " + " | ".join(tasks) + " |",
              "|---|---|" + "---|" * len(tasks)]
    for method in methods:
        if method == "base":
            continue
        params = sorted({r["trainable_params"] for r in runs if r["method"] == method and r["stage"] != "ablation"})
        lrs = [chosen_lr(runs, t, method) for t in tasks]
        lines.append(f"| {method} | {', '.join(f'{p:,}' for p in params)} | " + " | ".join(f"{lr:g}" if lr else "–" for lr in lrs) + " |")
    sweep = [r for r in runs if r["stage"] == "sweep"]
    if sweep:
        lrs = sorted({r["lr"] for r in sweep})
        lines += ["", "Learning-rate sweep (seed 0, dev metric ×100):", "",
                  "| task | method | " + " | ".join(f"{lr:g}" for lr in lrs) + " |", "|---|---|" + "---|" * len(lrs)]
        for task in tasks:
            for method in methods:
                row = {r["lr"]: r for r in sweep if r["task"] == task and r["method"] == method}
                if row:
                    lines.append(f"| {task} | {method} | " + " | ".join(
                        f"{100 * row[lr]['dev_metric']:.1f}" if lr in row else "–" for lr in lrs) + " |")
    ablation = [r for r in runs if r["stage"] == "ablation"]
    if ablation:
        lines += ["", "PARA ablation (seed 0, chosen lr; the `mean`, r=12 row is the main run):", "",
                  "| task | variant | params | dev metric ×100 |", "|---|---|---|---|"]
        for task in sorted({r["task"] for r in ablation}):
            reference = [r for r in main_runs(runs, task, "para") if r["seed"] == 0]
            rows = [("pooler=mean, r=12", r) for r in reference]
            rows += [(f"pooler={r['pooler']}" if r.get("pooler") else f"r={r['rank']}", r)
                     for r in ablation if r["task"] == task]
            for name, r in rows:
                lines.append(f"| {task} | {name} | {r['trainable_params']:,} | {100 * r['dev_metric']:.1f} |")
    lines += variant_section(runs)
    return "\n".join(lines) + "\n"




def variant_names(runs: list[dict]) -> list[str]:
    return sorted({r["method"] for r in runs if r["stage"] == "variants"}, key=lambda m: (not m.startswith("para"), m))


def variant_runs(runs: list[dict], task: str, name: str, seed: int | None = None) -> list[dict]:
    """A variant's runs on ``task`` at its chosen rate: the best of its seed-0 rates (there is one rate when the
    variant was not swept)."""
    rows = [r for r in runs if r["stage"] == "variants" and r["task"] == task and r["method"] == name]
    screened = [r for r in rows if r["seed"] == 0]
    if not screened:
        return []
    lr = max(screened, key=lambda r: (r["dev_metric"], -r["lr"]))["lr"]
    return [r for r in rows if r["lr"] == lr and (seed is None or r["seed"] == seed)]


def settings(row: dict) -> str:
    return ", ".join(f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in row.get("variant", {}).items())


def variant_section(runs: list[dict]) -> list[str]:
    """The variant screen (seed 0, gain over the method it builds on at the same rate) and, per task, the best
    PARA-family method against both LoRA baselines over the seeds run."""
    names = variant_names(runs)
    if not names:
        return []
    tasks = [t for t in TASK_ORDER if any(r["task"] == t for r in runs if r["stage"] == "variants")]
    lines = ["", "Variants (budget-matched to the paper's PARA; seed 0 at the variant's chosen rate: the one the sweep",
             "chose for the method it builds on, or its own best when it was screened at several; in brackets the",
             "difference to that method's seed-0 run at its chosen rate, ×100):", "",
             "| variant | settings | r | params | " + " | ".join(tasks) + " |", "|---|---|---|---|" + "---|" * len(tasks)]
    for name in names:
        cells, example = [], None
        for task in tasks:
            screen = variant_runs(runs, task, name, seed=0)
            if not screen:
                cells.append("–")
                continue
            example = row = screen[0]
            base = "para" if name.startswith("para") else "lora"
            reference = [r for r in main_runs(runs, task, base) if r["seed"] == 0]
            gain = f" ({100 * (row['dev_metric'] - reference[0]['dev_metric']):+.1f})" if reference else ""
            cells.append(f"{100 * row['dev_metric']:.1f}{gain}")
        if example:
            lines.append(f"| {name} | {settings(example)} | {example['rank']} | {example['trainable_params']:,} | "
                         + " | ".join(cells) + " |")
    lines += ["", "Best PARA-family method per task against both LoRA baselines (median over seeds, min–max, n):", "",
              "| task | best PARA-family | its score | PARA (paper) | LoRA q,v | LoRA q,v,up |", "|---|---|---|---|---|---|"]
    for task in tasks:
        family = {"para": main_runs(runs, task, "para")}
        family.update({n: variant_runs(runs, task, n) for n in names if n.startswith("para")})
        complete = {n: rows for n, rows in family.items() if len(rows) >= 3} or family
        best = max(complete, key=lambda n: statistics.median(r["dev_metric"] for r in complete[n]) if complete[n] else -1)
        lines.append(f"| {task} | {best} | {cell(complete[best])} | {cell(family['para'])} | "
                     f"{cell(main_runs(runs, task, 'lora'))} | {cell(variant_runs(runs, task, 'lora-qvu'))} |")
    return lines


def variant_chart(runs: list[dict], path: Path) -> None:
    """Per task, each variant's seed-0 gain over the method it builds on (same rate), ×100."""
    names = variant_names(runs)
    if not names:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in TASK_ORDER if any(r["task"] == t for r in runs if r["stage"] == "variants")]
    width = 0.8 / len(names)
    fig, axis = plt.subplots(figsize=(10, 4.5))
    for i, name in enumerate(names):
        gains = []
        for task in tasks:
            screen = variant_runs(runs, task, name, seed=0)
            reference = [r for r in main_runs(runs, task, "para" if name.startswith("para") else "lora") if r["seed"] == 0]
            gains.append(100 * (screen[0]["dev_metric"] - reference[0]["dev_metric"]) if screen and reference
                         else float("nan"))
        axis.bar([t + (i - (len(names) - 1) / 2) * width for t in range(len(tasks))], gains, width, label=name)
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set_xticks(range(len(tasks)), tasks)
    axis.set_ylabel("dev metric ×100, seed 0: variant − its base method")
    axis.set_title("PARA-family variants and LoRA on q,v,up against PARA / LoRA q,v (seed 0, chosen rates)")
    axis.legend(ncols=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def chart(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in runs}, key=TASK_ORDER.index)
    methods = [m for m in METHOD_ORDER if any(r["method"] == m for r in runs)]
    width = 0.8 / len(methods)
    fig, axis = plt.subplots(figsize=(10, 4.5))
    for i, method in enumerate(methods):
        medians, low, high = [], [], []
        for task in tasks:
            values = [100 * r["dev_metric"] for r in main_runs(runs, task, method)]
            if not values:  # not run yet: no bar, rather than a bar at zero
                medians.append(float("nan"))
                low.append(0.0)
                high.append(0.0)
                continue
            median = statistics.median(values)
            medians.append(median)
            low.append(median - min(values))
            high.append(max(values) - median)
        positions = [t + (i - (len(methods) - 1) / 2) * width for t in range(len(tasks))]
        axis.bar(positions, medians, width, yerr=[low, high], capsize=3, label=method)
    axis.set_xticks(range(len(tasks)), [f"{t}\n({next(r['metric_name'] for r in runs if r['task'] == t)})" for t in tasks])
    axis.set_ylabel("dev metric ×100 (median, min–max over seeds)")
    axis.set_title(f"PARA vs peft baselines on {runs[0]['model']}, budget-matched")
    axis.set_ylim(0, 1.15 * axis.get_ylim()[1])  # headroom, so the legend sits above the tallest bars
    axis.legend(ncols=len(methods), loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def export_adapters(runs: list[dict], runs_dir: Path, target: Path) -> None:
    """Copy the best PARA adapter per task (main runs only) with a card recording its dev metric and command."""
    for task in sorted({r["task"] for r in runs}):
        candidates = main_runs(runs, task, "para")
        if not candidates:
            continue
        best = max(candidates, key=lambda r: r["dev_metric"])
        source = runs_dir / Path(best["command"].split("--out ")[1].split(" ")[0]).name / "best"
        if not (source / "adapter_model.safetensors").exists():  # made on another machine: keep what is there
            print(f"kept {task}: the best run's adapter is not in {runs_dir}")
            continue
        destination = target / task
        shutil.rmtree(destination, ignore_errors=True)
        destination.mkdir(parents=True)
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy2(source / name, destination / name)
        (destination / "README.md").write_text(
            f"# PARA adapter: {task}\n\nBackbone `{best['model']}`; {best['trainable_params']:,} trainable parameters; "
            f"seed {best['seed']}, learning rate {best['lr']:g}.\n\nDev {best['metric_name']}: **{best['dev_metric']:.4f}** "
            f"on {best['dev_examples']} examples ({best['gpu']}).\n\nMade with:\n\n```\n{best['command']}\n```\n\n"
            f"Check on any machine: `para eval --task {task} --adapter adapters/{best['model']}/{task}`\n")
        print(f"exported {task}: {best['metric_name']}={best['dev_metric']:.4f} from {source}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=str(HERE / "results.json"))
    parser.add_argument("--export-adapters", metavar="DIR", help="copy the best PARA adapter per task here")
    parser.add_argument("--runs", default="runs/study", help="the study's run directory (for --export-adapters)")
    args = parser.parse_args()
    runs = load(Path(args.results))
    if not runs:
        raise SystemExit(f"no (non-smoke) runs in {args.results}")
    (HERE / "results.md").write_text(markdown(runs))
    chart(runs, HERE / "results.png")
    variant_chart(runs, HERE / "variants.png")
    print(f"wrote {HERE / 'results.md'}, {HERE / 'results.png'} and (with variant runs) {HERE / 'variants.png'}")
    if args.export_adapters:
        export_adapters(runs, Path(args.runs), Path(args.export_adapters))


if __name__ == "__main__":
    main()
