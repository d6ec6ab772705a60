"""Training throughput of PARA against the peft baselines: same model, task, batch and steps, one run at a time.

    python benchmarks/quality/train_throughput.py --output benchmarks/quality/train_throughput.json

Each method trains alone on the device for --steps optimisation steps with `para train` (budget-matched
as in the study). Throughput is `para train`'s own figure: tokens in the batches (prompt and response,
padding excluded) per second of training, evaluation excluded; the first logged window (warm-up) is
dropped and the median of the rest is reported. The quality study's wall times are not clean
throughput figures because eight runs share each GPU there.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run_study import ROOT, environment  # noqa: E402


def measure(method: str, args: argparse.Namespace, out: Path) -> dict:
    command = [sys.executable, "-m", "parapeft.cli.main", "train", "--model", args.model, "--task", args.task,
               "--method", method, "--out", str(out), "--rank", str(args.rank), "--budget-match",
               "--batch-size", str(args.batch_size), "--max-steps", str(args.steps), "--log-every", "5",
               "--eval-every", str(args.steps), "--eval-limit", "4", "--no-progress"]
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    windows = [json.loads(line)["tokens_per_s"] for line in (out / "metrics.jsonl").read_text().splitlines()
               if "tokens_per_s" in line]
    summary = json.loads((out / "summary.json").read_text())
    return {"method": method, "trainable_params": summary["trainable_params"], "steps": args.steps,
            "batch_size": args.batch_size, "tokens_per_s": round(statistics.median(windows[1:] or windows), 1),
            "windows": len(windows), "command": shlex.join(command)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="squad")
    parser.add_argument("--methods", nargs="+", default=["para", "lora", "dora", "ia3"])
    parser.add_argument("--rank", type=int, default=12, help="PARA's r; baselines are budget-matched to it")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--output", type=Path, default=HERE / "train_throughput.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for method in args.methods:
            row = measure(method, args, Path(scratch) / method)
            rows.append(row)
            print(f"{method:5s} {row['trainable_params']:>10,} params  {row['tokens_per_s']:>9,.0f} tokens/s", flush=True)
    reference = next((r["tokens_per_s"] for r in rows if r["method"] == "lora"), None)
    for row in rows:
        row["vs_lora"] = round(row["tokens_per_s"] / reference, 3) if reference else None
    result = {**environment(), "model": args.model, "task": args.task,
              "command": shlex.join([Path(sys.executable).name, *sys.argv]), "rows": rows}
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
