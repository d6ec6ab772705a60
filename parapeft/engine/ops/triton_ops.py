"""The executor's operations through the Triton kernels (``parapeft.engine.kernels``), on a CUDA device.

Same contract and rounding as ``TorchOps``; PARA's multipliers are read by row inside the rotary and
SiLU-multiply kernels, so a PARA pass launches the kernels of a bare one. Attention reads the paged cache in
place in both passes: one query per row while decoding, tiles of each packed prompt while prefilling. Matmuls
of few rows (a decoding step) may go through a split-K Triton matmul (``skinny_rows``) instead of cuBLAS.
"""

from __future__ import annotations

import torch
from torch import nn

from ..kernels.decode_linear import decode_linear, supported
from ..kernels.paged_attention import paged_decode_attention
from ..kernels.prefill_attention import paged_prefill_attention
from ..kernels.triton_ops import rms_norm, rotary_to_cache, silu_mul
from .torch_ops import TorchOps


class TritonOps(TorchOps):
    name = "triton"

    def __init__(self, silu: bool, skinny_rows: int = 0):
        self.silu = silu  # the backbone's activation is SiLU (else its own act_fn runs, then the multiply)
        self.skinny_rows = skinny_rows  # matmuls of at most this many rows: the split-K kernel, not cuBLAS

    def linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if x.shape[0] <= self.skinny_rows and supported(x, weight):
            return decode_linear(x, weight, bias)
        return super().linear(x, weight, bias)

    def norm(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, module.weight, module.variance_epsilon)

    def add_norm(self, module: nn.Module, hidden: torch.Tensor, delta: torch.Tensor | None):
        if delta is None:
            return hidden, rms_norm(hidden, module.weight, module.variance_epsilon)
        normed, hidden = rms_norm(delta, module.weight, module.variance_epsilon, residual=hidden)
        return hidden, normed

    def rotary_to_cache(self, q, k, v, cos, sin, keys, values, blocks, offsets, heads, kv_heads, q_scale=None,
                        v_scale=None, scale_rows=None) -> torch.Tensor:
        # The kernel addresses the cache as [slot, head, position]: here (block, head, offset in the block).
        return rotary_to_cache(q, k, v, cos, sin, keys, values, blocks, offsets, q_scale=q_scale, v_scale=v_scale,
                               scale_rows=scale_rows)

    def act_mul(self, act_fn, gate: torch.Tensor, up: torch.Tensor, up_scale=None, scale_rows=None) -> torch.Tensor:
        if not self.silu:
            return super().act_mul(act_fn, gate, up, up_scale, scale_rows)
        return silu_mul(gate, up, up_scale, scale_rows=scale_rows if up_scale is not None else None)

    def decode_attention(self, q, keys, values, tables, context, scale, blocks) -> torch.Tensor:
        return paged_decode_attention(q, keys, values, tables, context, scale)

    def prefill_attention(self, q, keys, values, batch, scale) -> torch.Tensor:
        return paged_prefill_attention(q, keys, values, batch.tables, batch.starts, batch.lengths, batch.tiles, scale)
