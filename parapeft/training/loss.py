"""The training loss on response tokens only, computing logits only where a response token is predicted.

A full forward pass makes logits for every position: batch × length × vocabulary floats (for SmolLM2's
49,152-token vocabulary, 16 × 400 positions are 1.3 GB in bf16 and twice that once upcast for the loss).
Only positions whose next token is a response token contribute to the loss, so the model is asked for
those positions' logits alone (``logits_to_keep`` with the positions needed by any row of the batch).
The result equals the backbone's own ``labels=`` loss (mean cross-entropy over response tokens).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def response_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], para: bool) -> torch.Tensor:
    """Mean cross-entropy of the response tokens (``labels`` != -100) of a right-padded batch."""
    labels = batch["labels"]
    targets = labels[:, 1:]  # position p predicts token p + 1
    needed = (targets != IGNORE).any(dim=0).nonzero().squeeze(1)
    if needed.numel() == 0:
        raise ValueError("a training batch holds no response tokens")
    # PARA's generators read the prompt, which the full labels define; give it explicitly.
    extra = {"prompt_mask": labels == IGNORE} if para else {}
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=needed, **extra)
    logits = out.logits.float()  # [B, P, V], as the backbone's loss upcasts
    return F.cross_entropy(logits.flatten(0, 1), targets[:, needed].flatten(), ignore_index=IGNORE)
