"""The executor's operations in plain PyTorch: the reference for the Triton ones, and the path on a CPU.

The arithmetic follows the HF modules the reference (``ParaModel``) runs: norms are the backbone's own
modules, the rotary embedding is HF's ``rotate_half`` form, PARA's multipliers are applied where its
wrappers apply them (Q after q_proj or q_norm and before the rotary embedding; V before it enters the
cache; Up before the product with the activated gate).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


@dataclass
class AttentionGroup:
    """Prompts of a prefill pass attended together, right-padded to the longest: packed tokens
    ``[start, end)``, ``pad_index`` [prompts, longest] into the packed tokens, and ``out_index``: where
    each of the group's tokens sits in the flattened padded output."""

    start: int
    end: int
    pad_index: torch.Tensor
    out_index: torch.Tensor


class TorchOps:
    name = "torch"

    def norm(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return module(x)

    def linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, weight, bias)

    def add_norm(self, module: nn.Module, hidden: torch.Tensor, delta: torch.Tensor | None):
        """``hidden + delta`` (when given) and its norm: returns (new hidden, normalised)."""
        if delta is not None:
            hidden = hidden + delta
        return hidden, module(hidden)

    def rotary_to_cache(self, q, k, v, cos, sin, keys, values, blocks, offsets, heads, kv_heads, q_scale=None,
                        v_scale=None, scale_rows=None) -> torch.Tensor:
        """Scale (PARA), rotate q and k, write k and v at (block, offset) of each token; returns q [T, H, hd]."""
        tokens, head_dim = q.shape[0], keys.shape[-1]
        if v_scale is not None:
            v = v * v_scale.index_select(0, scale_rows)
        q = q.reshape(tokens, heads, head_dim)
        if q_scale is not None:
            q = q * q_scale.index_select(0, scale_rows).view(tokens, heads, head_dim)
        k = k.reshape(tokens, kv_heads, head_dim)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        keys[blocks, :, offsets] = k
        values[blocks, :, offsets] = v.reshape(tokens, kv_heads, head_dim)
        return q

    def act_mul(self, act_fn, gate: torch.Tensor, up: torch.Tensor, up_scale=None, scale_rows=None) -> torch.Tensor:
        if up_scale is not None:
            up = up * up_scale.index_select(0, scale_rows)
        return act_fn(gate) * up

    def decode_attention(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, tables: torch.Tensor,
                         context: torch.Tensor, scale: float, blocks: int) -> torch.Tensor:
        """One query per row over its sequence's cached keys and values (the first ``blocks`` of its table):
        q [B, H, hd] -> [B, H * hd]. The query heads sharing a key/value head attend as one group."""
        rows, heads, head_dim = q.shape
        kv_heads, block_size = keys.shape[1], keys.shape[2]
        span = blocks * block_size
        index = tables[:, :blocks]
        visible = (torch.arange(span, device=q.device).unsqueeze(0) < context.unsqueeze(1)).view(rows, 1, span, 1)
        # Positions past a row's length hold whatever the block held before (the cache is not cleared, and
        # 0 x NaN is NaN even under a mask): zero them.
        k = torch.where(visible, keys[index].permute(0, 2, 1, 3, 4).reshape(rows, kv_heads, span, head_dim), 0.0)
        v = torch.where(visible, values[index].permute(0, 2, 1, 3, 4).reshape(rows, kv_heads, span, head_dim), 0.0)
        visible = visible.view(rows, 1, 1, span)
        grouped = q.view(rows, kv_heads, heads // kv_heads, head_dim)
        out = F.scaled_dot_product_attention(grouped, k, v, attn_mask=visible, scale=scale)
        return out.reshape(rows, heads * head_dim)

    def prefill_attention(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, batch,
                          scale: float) -> torch.Tensor:
        """Causal attention within each prompt of a packed pass, over the keys and values its tokens just wrote
        to the cache: q [T, H, hd] -> [T, H*hd].

        Each attention group (``batch.groups``) is right-padded to its longest prompt and runs one causal SDPA;
        right padding never reaches a real position under a causal mask.
        """
        tokens, heads, head_dim = q.shape
        k = keys[batch.blocks, :, batch.offsets]  # [T, KV, hd], rotated, as written
        v = values[batch.blocks, :, batch.offsets]
        out = q.new_empty(tokens, heads * head_dim)
        for group in batch.groups:
            prompts, longest = group.pad_index.shape

            def padded(x: torch.Tensor) -> torch.Tensor:
                return x[group.pad_index].transpose(1, 2)  # [prompts, heads, longest, hd]

            result = F.scaled_dot_product_attention(padded(q), padded(k), padded(v), is_causal=True, scale=scale,
                                                    enable_gqa=k.shape[1] != heads)
            flat = result.transpose(1, 2).reshape(prompts * longest, heads * head_dim)
            out[group.start:group.end] = flat.index_select(0, group.out_index)
        out[batch.groups[-1].end:].zero_()  # a bucket's padding tokens (none outside a graphed pass)
        return out
