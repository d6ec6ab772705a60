"""LoRA products for rows that each use their own adapter, in two Triton launches (Punica's SGMV idea).

Work comes as tiles: up to ``BLOCK_T`` consecutive tokens that share one adapter slot (a prompt's tokens in
a prefill; one row per tile while decoding). ``shrink`` computes ``x · Aᵀ`` for a tile with the tile's
``A`` read once, ``expand`` adds ``low · Bᵀ`` into the projection's output in place, a block of output
columns per program. Adapters are stacked per slot and read where they are: no per-row copy of any matrix.
The low-rank intermediate is rounded to the weights' dtype before the second product, as the PyTorch path
(two bf16 matmuls) rounds it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import interpreted

BLOCK_T = 16


@triton.jit
def _tile(tiles_ptr, tile):
    """(first token, tokens, adapter slot) of one tile."""
    entry = tiles_ptr + tile * 3
    return tl.load(entry), tl.load(entry + 1), tl.load(entry + 2).to(tl.int64)


@triton.jit
def _shrink_kernel(x_ptr, x_stride, a_ptr, a_slot_stride, a_row_stride, tiles_ptr, low_ptr, width_in,
                   RANK: tl.constexpr, RANK_BLOCK: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
                   IEEE: tl.constexpr):
    start, count, slot = _tile(tiles_ptr, tl.program_id(0))
    t = tl.arange(0, BLOCK_T)
    r = tl.arange(0, RANK_BLOCK)
    t_in = t < count
    acc = tl.zeros([BLOCK_T, RANK_BLOCK], tl.float32)
    for first in range(0, width_in, BLOCK_D):
        d = first + tl.arange(0, BLOCK_D)
        d_in = d < width_in
        x = tl.load(x_ptr + (start + t).to(tl.int64)[:, None] * x_stride + d[None, :],
                    mask=t_in[:, None] & d_in[None, :], other=0.0)
        a = tl.load(a_ptr + slot * a_slot_stride + r[:, None] * a_row_stride + d[None, :],
                    mask=(r < RANK)[:, None] & d_in[None, :], other=0.0)
        if IEEE:
            acc += tl.dot(x.to(tl.float32), tl.trans(a.to(tl.float32)), input_precision="ieee")
        else:
            acc += tl.dot(x, tl.trans(a))
    tl.store(low_ptr + (start + t).to(tl.int64)[:, None] * RANK_BLOCK + r[None, :], acc, mask=t_in[:, None])


@triton.jit
def _expand_kernel(low_ptr, b_ptr, b_slot_stride, b_row_stride, tiles_ptr, out_ptr, out_stride, width_out,
                   RANK: tl.constexpr, RANK_BLOCK: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_O: tl.constexpr,
                   IEEE: tl.constexpr):
    start, count, slot = _tile(tiles_ptr, tl.program_id(0))
    t = tl.arange(0, BLOCK_T)
    r = tl.arange(0, RANK_BLOCK)
    o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    t_in = t < count
    o_in = o < width_out
    rows = (start + t).to(tl.int64)
    low = tl.load(low_ptr + rows[:, None] * RANK_BLOCK + r[None, :], mask=t_in[:, None], other=0.0)
    b = tl.load(b_ptr + slot * b_slot_stride + o[:, None] * b_row_stride + r[None, :],
                mask=o_in[:, None] & (r < RANK)[None, :], other=0.0)
    low = low.to(b_ptr.dtype.element_ty)  # the intermediate as the two-matmul path rounds it
    if IEEE:
        delta = tl.dot(low.to(tl.float32), tl.trans(b.to(tl.float32)), input_precision="ieee")
    else:
        delta = tl.dot(low, tl.trans(b))
    mask = t_in[:, None] & o_in[None, :]
    target = out_ptr + rows[:, None] * out_stride + o[None, :]
    previous = tl.load(target, mask=mask, other=0.0).to(tl.float32)
    tl.store(target, (previous + delta.to(out_ptr.dtype.element_ty).to(tl.float32)).to(out_ptr.dtype.element_ty),
             mask=mask)


def lora_tiles(segments: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """(first token, tokens, slot) tiles of at most ``BLOCK_T`` tokens from (first, end, slot) segments."""
    return [(first, min(BLOCK_T, end - first), slot) for start, end, slot in segments
            for first in range(start, end, BLOCK_T)]


def lora_add(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, tiles: torch.Tensor, out: torch.Tensor) -> None:
    """``out[t] += x[t] · A[s]ᵀ · B[s]ᵀ`` for the tokens of every tile (start, count, s).

    x [T, in]; a [slots, rank, in] and b [slots, out, rank] (one layer, one target); out [T, out], rows may be
    strided; tiles [n, 3] int. Tokens outside every tile are left as they are.
    """
    tokens, width_in = x.shape
    rank, width_out = a.shape[1], b.shape[1]
    if x.stride(-1) != 1 or a.stride(-1) != 1 or b.stride(-1) != 1 or out.stride(-1) != 1:
        raise ValueError("the LoRA kernels need contiguous last dimensions")
    rank_block = max(16, triton.next_power_of_2(rank))  # tl.dot's smallest width
    low = torch.empty(tokens, rank_block, dtype=torch.float32, device=x.device)
    ieee = x.dtype == torch.float32 or interpreted()
    count = tiles.shape[0]
    _shrink_kernel[(count,)](x, x.stride(0), a, a.stride(0), a.stride(1), tiles, low, width_in, RANK=rank,
                             RANK_BLOCK=rank_block, BLOCK_T=BLOCK_T, BLOCK_D=128, IEEE=ieee, num_warps=4)
    block_o = 128
    _expand_kernel[(count, triton.cdiv(width_out, block_o))](
        low, b, b.stride(0), b.stride(1), tiles, out, out.stride(0), width_out, RANK=rank, RANK_BLOCK=rank_block,
        BLOCK_T=BLOCK_T, BLOCK_O=block_o, IEEE=ieee, num_warps=4)
