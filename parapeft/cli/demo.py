"""``para demo``: the main job on the embedded model.

Fine-tunes a PARA adapter on COPA (dev accuracy before and after), then answers
prompts of different tasks in one batch whose rows use different adapters: the
one just trained, the committed demo adapters under ``adapters/<model>/`` and
the bare backbone.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from .generate import DEFAULT_MODEL

ADAPTERS_DIR = Path(__file__).resolve().parents[2] / "adapters"


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="fine-tune PARA on COPA, then serve several adapters in one mixed batch",
        description="Fine-tune a PARA adapter on COPA with the embedded model (a few minutes on a laptop CPU), "
        "report dev accuracy before and after, then answer prompts with several adapters in one batch.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="named model, HF id or path")
    parser.add_argument("--out", default=None, help="run directory (default: runs/demo-copa-TIMESTAMP)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--adapters", default=str(ADAPTERS_DIR), help="directory of committed adapters (<model>/<task>/)")
    parser.set_defaults(run=run)


def dev_accuracy(model, tokenizer, examples) -> dict[str, float]:
    """Accuracy of the generated answer, and of the likelier of the two alternatives."""
    from ..evaluation import evaluate
    from ..tasks import get_task

    return evaluate(model, tokenizer, get_task("copa"), examples, batch_size=16).metrics


def describe(metrics: dict[str, float]) -> str:
    return f"generated answer {metrics['accuracy']:.2f}, likelier alternative {metrics['loglik_accuracy']:.2f}"


def mixed_batch(model_name: str, trained: Path, adapters_root: Path) -> None:
    """One generate call whose rows use different adapters (and the bare backbone)."""
    from ..backbones import load_base_model
    from ..model import BASE_ADAPTER, ParaModel
    from ..tasks import get_task, prompt_token_ids, render_prompt
    from ..training.batching import left_pad

    model, tokenizer = load_base_model(model_name)
    para = ParaModel.from_pretrained(model, trained, adapter_name="copa-demo")
    rows = [("copa-demo", "copa")]
    committed = sorted(p for p in (adapters_root / model_name).glob("*") if (p / "adapter_config.json").is_file())
    for directory in committed:
        para.load_adapter(directory, directory.name)
        rows.append((directory.name, directory.name))
    rows.append((BASE_ADAPTER, "copa"))
    if not committed:
        print(f"(no committed adapters under {adapters_root / model_name}; showing the trained one and the bare model)")
    examples = [get_task(task).examples("dev", limit=1)[0] for _, task in rows]
    prompts = [prompt_token_ids(tokenizer, render_prompt(e, tokenizer)) for e in examples]
    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    started = time.perf_counter()
    out = para.generate(input_ids=ids, attention_mask=mask, adapter_names=[name for name, _ in rows],
                        max_new_tokens=48, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answers = tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
    print(f"\none batch, {len(rows)} rows, {len({n for n, _ in rows})} adapters, {time.perf_counter() - started:.1f} s:\n")
    for (name, task), example, answer in zip(rows, examples, answers):
        print(f"[{name}] ({task}) {shown_prompt(example)}")
        print(f"    → {answer.strip()[:200]}   (reference: {example.answers[0][:80]})\n")


def shown_prompt(example, width: int = 70) -> str:
    """The prompt on one line with its passage abridged, so the question the adapter answers stays visible."""
    prompt = example.prompt
    if example.context and len(example.context) > width:
        prompt = prompt.replace(example.context, example.context[:width].rstrip() + " …", 1)
    return " ".join(prompt.split())


def run(args: argparse.Namespace) -> int:
    from ..backbones import load_base_model
    from ..tasks import get_task
    from ..training.trainer import TrainArgs, train

    started = time.perf_counter()
    out = Path(args.out or f"runs/demo-copa-{time.strftime('%Y%m%d-%H%M%S')}")
    dev = get_task("copa").examples("dev")
    model, tokenizer = load_base_model(args.model)
    before = dev_accuracy(model, tokenizer, dev)
    print(f"COPA dev accuracy of the bare {args.model}: {describe(before)}")
    torch.manual_seed(args.seed)
    summary = train(TrainArgs(model=args.model, task="copa", method="para", out=str(out), seed=args.seed, lr=args.lr,
                              epochs=args.epochs, batch_size=args.batch_size, select_by="loglik", evals=1,
                              eval_batch_size=16))
    from ..model import ParaModel

    after = dev_accuracy(ParaModel.from_pretrained(model, out / "best"), tokenizer, dev)
    print(f"\nCOPA dev accuracy (100 examples)\n  before: {describe(before)}\n  after:  {describe(after)}\n"
          f"PARA fine-tuning: {summary['trainable_params']:,} trainable parameters, {summary['wall_s']:.0f} s; "
          f"adapter in {out / 'best'}")
    mixed_batch(args.model, out / "best", Path(args.adapters))
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return 0
