"""Decode attention over the paged KV cache, reading the blocks in place (flash-decoding, Triton).

One program per (row, key/value head, split): the query heads that share the key/value head are one tile
(padded to 16 rows for the tensor-core dot), keys and values are read ``TILE`` positions at a time through
the row's block table, and an online softmax keeps the running maximum and sum. Short batches split each
sequence's positions over several programs and a second kernel combines the partial results, so a batch of
one still keeps the GPU busy. Loop bounds come from the context lengths on the device: the kernel needs no
host values and can be captured in a CUDA graph once per batch size.

The dots run on bf16/fp16 tensor cores (float32 accumulation, the probabilities rounded to the cache's
dtype before the product with V, as flash attention does); float32 caches, and Triton's CPU interpreter
(whose bf16 dot is not usable), compute them in float32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import interpreted
from .attention_tile import cache_offsets, online_softmax_step

TILE = 64  # cached positions per iteration


@triton.jit
def _paged_decode_kernel(q_ptr, k_ptr, v_ptr, tables_ptr, context_ptr, out_ptr, part_acc_ptr, part_stats_ptr,
                         q_row_stride, cache_block_stride, cache_head_stride, cache_position_stride, table_stride,
                         out_row_stride, scale, GROUP: tl.constexpr, GROUP_BLOCK: tl.constexpr,
                         HEAD_DIM: tl.constexpr, DIM_BLOCK: tl.constexpr, BLOCK_SIZE: tl.constexpr,
                         TILE: tl.constexpr, SPLITS: tl.constexpr, IEEE: tl.constexpr):
    row = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    context = tl.load(context_ptr + row)
    tiles = tl.cdiv(context, TILE)
    per_split = tl.cdiv(tiles, SPLITS)
    first = split * per_split
    last = tl.minimum(first + per_split, tiles)
    g = tl.arange(0, GROUP_BLOCK)
    d = tl.arange(0, DIM_BLOCK)
    g_in = g < GROUP
    d_in = d < HEAD_DIM
    heads = kv_head * GROUP + g
    q = tl.load(q_ptr + row * q_row_stride + heads[:, None] * HEAD_DIM + d[None, :],
                mask=g_in[:, None] & d_in[None, :], other=0.0)
    maximum = tl.full([GROUP_BLOCK], float("-inf"), tl.float32)
    total = tl.zeros([GROUP_BLOCK], tl.float32)
    acc = tl.zeros([GROUP_BLOCK, DIM_BLOCK], tl.float32)
    t = tl.arange(0, TILE)
    for tile in range(first, last):
        position = tile * TILE + t
        valid = position < context
        base = cache_offsets(tables_ptr + row * table_stride, position, valid, kv_head, cache_block_stride,
                             cache_head_stride, cache_position_stride, BLOCK_SIZE)
        kv_mask = valid[:, None] & d_in[None, :]
        k = tl.load(k_ptr + base[:, None] + d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(v_ptr + base[:, None] + d[None, :], mask=kv_mask, other=0.0)
        maximum, total, acc = online_softmax_step(q, k, v, valid[None, :], scale, maximum, total, acc, IEEE)
    out_mask = g_in[:, None] & d_in[None, :]
    if SPLITS == 1:
        out = acc / total[:, None]
        tl.store(out_ptr + row * out_row_stride + heads[:, None] * HEAD_DIM + d[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=out_mask)
    else:  # partial results of this split: [row, head, split, :] and (maximum, total)
        slot = (row * (tl.num_programs(1) * GROUP) + heads) * SPLITS + split
        tl.store(part_acc_ptr + slot[:, None] * HEAD_DIM + d[None, :], acc, mask=out_mask)
        tl.store(part_stats_ptr + slot * 2, maximum, mask=g_in)
        tl.store(part_stats_ptr + slot * 2 + 1, total, mask=g_in)


@triton.jit
def _combine_kernel(part_acc_ptr, part_stats_ptr, out_ptr, out_row_stride, HEADS: tl.constexpr,
                    HEAD_DIM: tl.constexpr, DIM_BLOCK: tl.constexpr, SPLITS: tl.constexpr,
                    SPLIT_BLOCK: tl.constexpr):
    row = tl.program_id(0)
    head = tl.program_id(1)
    s = tl.arange(0, SPLIT_BLOCK)
    d = tl.arange(0, DIM_BLOCK)
    s_in = s < SPLITS
    slot = (row * HEADS + head) * SPLITS + s
    maxima = tl.load(part_stats_ptr + slot * 2, mask=s_in, other=float("-inf"))
    totals = tl.load(part_stats_ptr + slot * 2 + 1, mask=s_in, other=0.0)
    top = tl.max(maxima, axis=0)
    weights = tl.where(s_in & (maxima > float("-inf")), tl.exp(maxima - top), 0.0)
    acc = tl.load(part_acc_ptr + slot[:, None] * HEAD_DIM + d[None, :], mask=s_in[:, None] & (d < HEAD_DIM)[None, :],
                  other=0.0)
    out = tl.sum(weights[:, None] * acc, axis=0) / tl.sum(weights * totals, axis=0)
    tl.store(out_ptr + row * out_row_stride + head * HEAD_DIM + d, out.to(out_ptr.dtype.element_ty), mask=d < HEAD_DIM)


def splits_for(rows: int, kv_heads: int, max_tiles: int) -> int:
    """How many programs share one sequence: enough programs to fill the GPU, never more than its tiles."""
    if torch.cuda.is_available():
        processors = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    else:
        processors = 8
    wanted = -(-2 * processors // max(1, rows * kv_heads))
    return max(1, min(16, wanted, max_tiles))


def paged_decode_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, tables: torch.Tensor,
                           context: torch.Tensor, scale: float, splits: int | None = None) -> torch.Tensor:
    """q [B, H, hd] (one query per row), keys/values [blocks, KV, block_size, hd], tables [B, max_blocks]
    (int32 block ids), context [B] (positions to attend to, at least 1) -> [B, H * hd]."""
    rows, heads, head_dim = q.shape
    _, kv_heads, block_size, _ = keys.shape
    if q.stride(-1) != 1 or q.stride(1) != head_dim or keys.stride() != values.stride() or keys.stride(-1) != 1:
        raise ValueError("paged attention needs contiguous heads in q and one layout for keys and values")
    group = heads // kv_heads
    if splits is None:
        splits = splits_for(rows, kv_heads, -(-tables.shape[1] * block_size // TILE))
    out = torch.empty(rows, heads * head_dim, dtype=q.dtype, device=q.device)
    if splits > 1:
        part_acc = torch.empty(rows * heads * splits, head_dim, dtype=torch.float32, device=q.device)
        part_stats = torch.empty(rows * heads * splits, 2, dtype=torch.float32, device=q.device)
    else:
        part_acc = part_stats = out  # not written: SPLITS == 1 stores the result directly
    dim_block = max(16, triton.next_power_of_2(head_dim))  # tl.dot needs 16 or more
    _paged_decode_kernel[(rows, kv_heads, splits)](
        q, keys, values, tables, context, out, part_acc, part_stats, q.stride(0), keys.stride(0), keys.stride(1),
        keys.stride(2), tables.stride(0), out.stride(0), scale, GROUP=group,
        GROUP_BLOCK=max(16, triton.next_power_of_2(group)), HEAD_DIM=head_dim, DIM_BLOCK=dim_block,
        BLOCK_SIZE=block_size, TILE=TILE, SPLITS=splits, IEEE=q.dtype == torch.float32 or interpreted(), num_warps=4)
    if splits > 1:
        _combine_kernel[(rows, heads)](part_acc, part_stats, out, out.stride(0), HEADS=heads, HEAD_DIM=head_dim,
                                       DIM_BLOCK=dim_block, SPLITS=splits,
                                       SPLIT_BLOCK=triton.next_power_of_2(splits), num_warps=1)
    return out
