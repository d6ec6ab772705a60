"""Examples → token ids with response-only labels, and padding into batches."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..tasks import Example, prompt_token_ids, render_prompt, render_response


class PromptTooLongError(ValueError):
    pass


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # -100 on the prompt: the loss is on the response only, and PARA pools the -100 part


def padding_id(tokenizer) -> int:
    """The id that pads batches: the tokenizer's pad token, else its eos (padding is masked either way)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def end_of_turn(tokenizer) -> list[int]:
    """Tokens that close a response, so the model learns to stop (the chat models' eos)."""
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def encode_response(tokenizer, text: str) -> list[int]:
    return tokenizer(render_response(text, tokenizer), add_special_tokens=False).input_ids + end_of_turn(tokenizer)


def encode_prompt(tokenizer, example: Example, max_length: int) -> list[int]:
    ids = prompt_token_ids(tokenizer, render_prompt(example, tokenizer))
    if len(ids) >= max_length:
        raise PromptTooLongError(f"example {example.id}: the prompt has {len(ids)} tokens, the limit is {max_length - 1}")
    return ids


def encode_for_training(tokenizer, example: Example, max_length: int) -> Encoded:
    """Prompt + target + end of turn; a target that does not fit is cut (the prompt never is)."""
    prompt = encode_prompt(tokenizer, example, max_length)
    response = encode_response(tokenizer, example.target)
    response = response[: max_length - len(prompt)]
    return Encoded(prompt + response, [-100] * len(prompt) + response)


def pad(rows: list[list[int]], value: int, side: str) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        if side == "right":
            out[i, : len(row)] = torch.tensor(row)
        else:
            out[i, width - len(row) :] = torch.tensor(row)
    return out


def collate(encoded: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right padding for training (position ids then need no correction)."""
    ids = pad([e.input_ids for e in encoded], pad_id, "right")
    labels = pad([e.labels for e in encoded], -100, "right")
    mask = pad([[1] * len(e.input_ids) for e in encoded], 0, "right")
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left padding for generation, so every row's next token is at the last position."""
    return pad(prompts, pad_id, "left"), pad([[1] * len(p) for p in prompts], 0, "left")
