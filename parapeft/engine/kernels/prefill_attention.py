"""Causal attention for a packed prefill, reading keys and values from the paged cache (Triton).

The pass's prompts are packed into one sequence of tokens; each program takes one tile of ``BLOCK_M``
consecutive query positions of one prompt and one query head, and walks that prompt's keys and values
``BLOCK_N`` positions at a time through its block table, up to the tile's last position (causal), with an
online softmax (FlashAttention-2's forward). Tiles come from a small table built on the host (prompt,
first position), so prompts of any lengths share one launch, with no padding and no copies of q, k or v.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..batch import PREFILL_TILE as BLOCK_M
from . import interpreted
from .attention_tile import cache_offsets, online_softmax_step

BLOCK_N = 64


@triton.jit
def _prefill_attention_kernel(q_ptr, k_ptr, v_ptr, out_ptr, tables_ptr, starts_ptr, tiles_ptr, q_row_stride,
                              cache_block_stride, cache_head_stride, cache_position_stride, table_stride,
                              out_row_stride, scale, lengths_ptr, GROUP: tl.constexpr, HEAD_DIM: tl.constexpr,
                              DIM_BLOCK: tl.constexpr, BLOCK_SIZE: tl.constexpr, BLOCK_M: tl.constexpr,
                              BLOCK_N: tl.constexpr, IEEE: tl.constexpr):
    tile = tl.program_id(0)
    head = tl.program_id(1)
    prompt = tl.load(tiles_ptr + tile * 2)
    first = tl.load(tiles_ptr + tile * 2 + 1)
    length = tl.load(lengths_ptr + prompt)
    start = tl.load(starts_ptr + prompt)
    kv_head = head // GROUP
    m = first + tl.arange(0, BLOCK_M)  # query positions within the prompt
    d = tl.arange(0, DIM_BLOCK)
    m_in = m < length
    d_in = d < HEAD_DIM
    q = tl.load(q_ptr + (start + m)[:, None] * q_row_stride + head * HEAD_DIM + d[None, :],
                mask=m_in[:, None] & d_in[None, :], other=0.0)
    maximum = tl.full([BLOCK_M], float("-inf"), tl.float32)
    total = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, DIM_BLOCK], tl.float32)
    n_offsets = tl.arange(0, BLOCK_N)
    end = tl.minimum(first + BLOCK_M, length)  # causal: no key past the tile's last query
    for n_start in range(0, end, BLOCK_N):
        n = n_start + n_offsets
        n_in = n < end
        base = cache_offsets(tables_ptr + prompt * table_stride, n, n_in, kv_head, cache_block_stride,
                             cache_head_stride, cache_position_stride, BLOCK_SIZE)
        kv_mask = n_in[:, None] & d_in[None, :]
        k = tl.load(k_ptr + base[:, None] + d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(v_ptr + base[:, None] + d[None, :], mask=kv_mask, other=0.0)
        visible = (n[None, :] <= m[:, None]) & n_in[None, :]  # causal, within the prompt
        maximum, total, acc = online_softmax_step(q, k, v, visible, scale, maximum, total, acc, IEEE)
    out = acc / tl.where(total > 0, total, 1.0)[:, None]
    tl.store(out_ptr + (start + m)[:, None] * out_row_stride + head * HEAD_DIM + d[None, :],
             out.to(out_ptr.dtype.element_ty), mask=m_in[:, None] & d_in[None, :])


def paged_prefill_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, tables: torch.Tensor,
                            starts: torch.Tensor, lengths: torch.Tensor, tiles: torch.Tensor,
                            scale: float) -> torch.Tensor:
    """q [T, H, hd] of packed prompts (prompt i at tokens ``starts[i]`` to ``starts[i] + lengths[i]``, position
    0 first), their keys and values already in the paged cache [blocks, KV, block_size, hd] through
    ``tables`` [P, max_blocks]; ``tiles`` [n, 2] int32: (prompt, first position) of every ``BLOCK_M`` tile of
    query positions (``batch.prefill_tiles``) -> [T, H * hd]."""
    tokens, heads, head_dim = q.shape
    kv_heads, block_size = keys.shape[1], keys.shape[2]
    if q.stride(-1) != 1 or q.stride(1) != head_dim or keys.stride() != values.stride() or keys.stride(-1) != 1:
        raise ValueError("prefill attention needs contiguous heads in q and one layout for keys and values")
    out = torch.empty(tokens, heads * head_dim, dtype=q.dtype, device=q.device)
    _prefill_attention_kernel[(tiles.shape[0], heads)](
        q, keys, values, out, tables, starts, tiles, q.stride(0), keys.stride(0), keys.stride(1), keys.stride(2),
        tables.stride(0), out.stride(0), scale, lengths, GROUP=heads // kv_heads, HEAD_DIM=head_dim,
        DIM_BLOCK=max(16, triton.next_power_of_2(head_dim)), BLOCK_SIZE=block_size, BLOCK_M=BLOCK_M,
        BLOCK_N=BLOCK_N, IEEE=q.dtype == torch.float32 or interpreted(), num_warps=4)
    return out
