"""Write a tiny random chat model and three PARA adapters for it, for tests outside Python (the gateway's).

    python tests/make_tiny_worker.py OUT

OUT/model is an HF checkpoint (2 layers, hidden 32, ChatML tokenizer) that ``para engine --model OUT/model``
serves in well under a second per request on a CPU; OUT/adapters/{alpha,beta,gamma} are saved PARA adapters
with random (non-identity) weights, so each gives output different from the bare model and from each other.
OUT/adapters/lora is a peft LoRA adapter on q and v trained by ``para train --method lora`` on COPA for a few
steps (at a high learning rate, so that it moves the model), exactly as that command saves it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from parapeft import ParaConfig, get_para_model  # noqa: E402
from parapeft.backbones import load_base_model  # noqa: E402
from tiny_models import randomize_adapter, save_tiny_checkpoint  # noqa: E402

CORPUS = ["the cat sat on the mat and the dog ran to the park with a red ball"] * 30
ADAPTERS = {"alpha": (ParaConfig(r=4), 3), "beta": (ParaConfig(r=2, pooler="max"), 4), "gamma": (ParaConfig(r=4), 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    out = parser.parse_args().out
    model_dir = out / "model"
    save_tiny_checkpoint(model_dir, CORPUS, chat=True, vocab_size=120, context=256)
    for name, (config, seed) in ADAPTERS.items():
        para = get_para_model(load_base_model(str(model_dir))[0], config, adapter_name=name)
        randomize_adapter(para, name, seed)
        para.save_pretrained(out / "adapters" / name)
    run = out / "lora-run"
    subprocess.run([sys.executable, "-m", "parapeft.cli.main", "train", "--model", str(model_dir), "--task", "copa",
                    "--method", "lora", "--rank", "4", "--lr", "0.05", "--max-steps", "6", "--train-limit", "24",
                    "--eval-limit", "4", "--batch-size", "4", "--out", str(run), "--no-progress"],
                   check=True, stdout=subprocess.DEVNULL)
    shutil.copytree(run / "best", out / "adapters" / "lora")
    print(out)


if __name__ == "__main__":
    main()
