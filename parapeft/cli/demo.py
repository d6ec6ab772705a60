"""``para demo``: the embedded backbone with PARA attached, answering one mixed-adapter batch."""

from __future__ import annotations

import argparse
import time

import torch

from .generate import DEFAULT_MODEL, encode_prompt

DEMO_PROMPTS = [
    "What is the capital of France?",
    "Name three primary colours.",
    "Write one sentence about the sea.",
]


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="attach PARA to the embedded model and answer a mixed-adapter batch",
        description="Load the backbone, attach a fresh PARA adapter, and answer a few prompts in one batch whose "
        "rows use different adapters (the bare backbone and the adapter). A fresh adapter reproduces the backbone "
        "exactly, which the demo checks.",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"named model, HF id or path (default: {DEFAULT_MODEL})")
    parser.add_argument("--max-new-tokens", type=int, default=40, help="tokens per answer (default: 40)")
    parser.set_defaults(run=run)


def left_padded(rows: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :], mask[i, width - len(row) :] = row, 1
    return ids, mask


def run(args: argparse.Namespace) -> int:
    from ..backbones import load_base_model
    from ..config import ParaConfig
    from ..model import BASE_ADAPTER, get_para_model

    started = time.perf_counter()
    model, tokenizer = load_base_model(args.model)
    print(f"loaded {args.model} in {time.perf_counter() - started:.1f} s")
    para = get_para_model(model, ParaConfig(), adapter_name="fresh").eval()
    para.print_trainable_parameters()

    rows = [encode_prompt(tokenizer, p, None, raw=False)[0] for p in DEMO_PROMPTS]
    ids, mask = left_padded(rows * 2, tokenizer.pad_token_id)
    adapters = [BASE_ADAPTER] * len(rows) + ["fresh"] * len(rows)
    started = time.perf_counter()
    out = para.generate(
        input_ids=ids, attention_mask=mask, adapter_names=adapters, max_new_tokens=args.max_new_tokens,
        do_sample=False, pad_token_id=tokenizer.pad_token_id,
    )
    elapsed = time.perf_counter() - started
    answers = tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
    print(f"\none batch of {len(adapters)} rows (bare backbone and adapter 'fresh' mixed), {elapsed:.1f} s:\n")
    for prompt, adapter, answer in zip(DEMO_PROMPTS * 2, adapters, answers):
        print(f"[{adapter}] {prompt}\n    {answer.strip()}\n")
    same = all(a == b for a, b in zip(answers[: len(rows)], answers[len(rows) :]))
    print("fresh adapter reproduces the backbone:", "yes" if same else "NO")
    return 0 if same else 1
