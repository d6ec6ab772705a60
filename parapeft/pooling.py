"""Padding-aware pooling of a layer's input over prompt positions.

All poolers take ``x`` of shape [batch, time, hidden] and a boolean
``prompt_mask`` of shape [batch, time] (True on prompt tokens) and return
[batch, hidden]. Positions outside the prompt — padding and response tokens —
never influence the result.
"""

from __future__ import annotations

import torch


def _zero_outside(x: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
    # torch.where rather than a multiply: a padded position may hold NaN
    # (fully masked attention rows), and NaN * 0 is still NaN.
    return torch.where(prompt_mask.unsqueeze(-1), x, 0.0)


def mean_pool(x: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
    counts = prompt_mask.sum(dim=1, keepdim=True).to(x.dtype)
    return _zero_outside(x, prompt_mask).sum(dim=1) / counts


def last_pool(x: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
    positions = torch.arange(x.shape[1], device=x.device)
    last = torch.where(prompt_mask, positions, -1).amax(dim=1)
    return x[torch.arange(x.shape[0], device=x.device), last]


def max_pool(x: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
    return x.masked_fill(~prompt_mask.unsqueeze(-1), float("-inf")).amax(dim=1)


def attention_pool(x: torch.Tensor, prompt_mask: torch.Tensor, scorer: torch.Tensor) -> torch.Tensor:
    """Softmax over prompt positions of ``x · scorer``; ``scorer`` is [hidden] or one per row [batch, hidden].

    A zero scorer gives uniform weights, i.e. mean pooling, which is where training starts.
    """
    x = _zero_outside(x, prompt_mask)
    scores = torch.einsum("btd,bd->bt", x, scorer.expand(x.shape[0], -1))
    weights = torch.softmax(scores.masked_fill(~prompt_mask, float("-inf")), dim=1)
    return torch.einsum("bt,btd->bd", weights, x)


def pool(kind: str, x: torch.Tensor, prompt_mask: torch.Tensor, scorer: torch.Tensor | None = None) -> torch.Tensor:
    if kind == "mean":
        return mean_pool(x, prompt_mask)
    if kind == "last":
        return last_pool(x, prompt_mask)
    if kind == "max":
        return max_pool(x, prompt_mask)
    if kind == "attention":
        assert scorer is not None, "attention pooling needs a scorer"
        return attention_pool(x, prompt_mask, scorer)
    raise ValueError(f"unknown pooler {kind!r}")
