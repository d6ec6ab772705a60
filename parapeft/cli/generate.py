"""``para generate``: stream a completion from the backbone, optionally with a PARA adapter."""

from __future__ import annotations

import argparse
import sys

import torch

from ..tasks import prompt_token_ids

DEFAULT_MODEL = "smollm2-135m"


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "generate",
        help="generate text with a backbone and an optional PARA adapter",
        description="Generate a completion, streamed to the terminal. Instruct models get their chat template "
        "unless --raw is given.",
    )
    parser.add_argument("--model", help=f"named model, Hugging Face id or local path (default: the adapter's own "
                        f"backbone, else {DEFAULT_MODEL})")
    parser.add_argument("--adapter", metavar="DIR_OR_HUB_ID", help="PARA adapter (a directory or Hugging Face Hub id) to apply")
    parser.add_argument("--prompt", required=True, help="the user message (or raw text with --raw)")
    parser.add_argument("--system", help="system message for chat models (default: the model's own)")
    parser.add_argument("--raw", action="store_true", help="do not apply the chat template; continue the text as is")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="maximum tokens to generate (default: 128)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 means greedy decoding (default: 0)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold (default: 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for sampling (default: 0)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    parser.set_defaults(run=run)


def encode_prompt(tokenizer, prompt: str, system: str | None, raw: bool) -> torch.Tensor:
    """Token ids for the prompt: chat-templated for models that have a template, plain text otherwise."""
    if raw or not tokenizer.chat_template:  # the text as is, with the tokenizer's leading special token (as training)
        return torch.tensor([prompt_token_ids(tokenizer, prompt, templated=False)])
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids


def run(args: argparse.Namespace) -> int:
    from transformers import TextStreamer

    from ..backbones import load_base_model
    from ..model import ParaModel
    from ..training.batching import padding_id

    if args.max_new_tokens < 1:
        raise ValueError("--max-new-tokens must be at least 1")
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        raise ValueError("--temperature must be >= 0 and --top-p in (0, 1]")
    from ..training.methods import adapter_backbone

    args.model = args.model or (args.adapter and adapter_backbone(args.adapter)) or DEFAULT_MODEL
    model, tokenizer = load_base_model(args.model, device=args.device)
    if args.adapter:
        model = ParaModel.from_pretrained(model, args.adapter)
    input_ids = encode_prompt(tokenizer, args.prompt, args.system, args.raw).to(args.device)
    context = getattr(model.config, "max_position_embeddings", None)
    if context and input_ids.shape[1] + args.max_new_tokens > context:
        raise ValueError(f"prompt ({input_ids.shape[1]} tokens) + --max-new-tokens exceeds the context of {context}")
    torch.manual_seed(args.seed)
    sampling = {"do_sample": True, "temperature": args.temperature, "top_p": args.top_p} if args.temperature > 0 else {"do_sample": False}
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=args.max_new_tokens,
        streamer=streamer,
        pad_token_id=padding_id(tokenizer),
        **sampling,
    )
    sys.stdout.flush()
    return 0
