"""PARA's generators for a packed prefill in two Triton launches per layer, instead of a dozen small ops.

``pool_down``: each program takes one prompt and one block of hidden channels, pools the prompt's positions
(mean, last or max, chosen per prompt) and multiplies the pooled block by the matching columns of that
prompt's ``W_down``; it writes a partial bottleneck vector per channel block. ``up_write``: each program sums
a prompt's partials (one tile, reduced in a fixed order: no atomics, the same result every run), applies the
prompt's activation, multiplies by a block of rows of its ``W_up`` and writes ``1 + l``, rounded to the
model's dtype, into the layer's per-row multipliers.

A pass with few long prompts has few programs, so the time of one program's loop over its prompt's
positions is the kernel's: tiles of many positions and narrow channel blocks keep that loop short
(``benchmarks/engine/generator_kernels.py`` measured the choice on an H200). Everything runs in float32, as ``ParaModel``'s generators do; sums are
taken in another order than PyTorch's, so results agree to float32 rounding. Attention pooling stays with the
PyTorch code.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_D = 64  # hidden channels per program
BLOCK_T = 128  # positions per step of a program's pooling loop


@triton.jit
def _pool_down_kernel(x_ptr, x_stride, starts_ptr, pooled_ptr, kinds_ptr, slots_ptr, skip_slot, down_ptr,
                      down_slot_stride, down_row_stride, partial_ptr, hidden, RANK: tl.constexpr,
                      RANK_BLOCK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr):
    prompt = tl.program_id(0)
    block = tl.program_id(1)
    start = tl.load(starts_ptr + prompt)
    count = tl.load(pooled_ptr + prompt)
    kind = tl.load(kinds_ptr + prompt)
    slot = tl.load(slots_ptr + prompt)
    active = slot != skip_slot  # a prompt on the skipped slot reads and writes nothing
    d = block * BLOCK_D + tl.arange(0, BLOCK_D)
    d_in = d < hidden
    t = tl.arange(0, BLOCK_T)
    summed = tl.zeros([BLOCK_D], tl.float32)
    largest = tl.full([BLOCK_D], float("-inf"), tl.float32)
    for first in range(0, tl.where(active, count, 0), BLOCK_T):
        rows = first + t
        inside = (rows < count)[:, None] & d_in[None, :]
        tile = tl.load(x_ptr + (start + rows).to(tl.int64)[:, None] * x_stride + d[None, :], mask=inside,
                       other=0.0).to(tl.float32)
        summed += tl.sum(tile, axis=0)
        largest = tl.maximum(largest, tl.max(tl.where(inside, tile, float("-inf")), axis=0))
    last = tl.load(x_ptr + (start + count - 1).to(tl.int64) * x_stride + d, mask=d_in & active,
                   other=0.0).to(tl.float32)
    pooled = tl.where(kind == 0, summed / count, tl.where(kind == 1, last, largest))
    pooled = tl.where(d_in, pooled, 0.0)
    j = tl.arange(0, RANK_BLOCK)
    weight = tl.load(down_ptr + slot * down_slot_stride + j[:, None] * down_row_stride + d[None, :],
                     mask=(j < RANK)[:, None] & (d_in & active)[None, :], other=0.0)
    partial = tl.sum(weight * pooled[None, :], axis=1)
    tl.store(partial_ptr + (prompt * tl.num_programs(1) + block) * RANK_BLOCK + j, partial)


@triton.jit
def _up_write_kernel(partial_ptr, blocks, kinds_ptr, slots_ptr, skip_slot, rows_ptr, up_ptr, up_slot_stride,
                     up_row_stride, out_ptr, out_row_stride, width, RANK: tl.constexpr, RANK_BLOCK: tl.constexpr,
                     BLOCKS: tl.constexpr, BLOCK_W: tl.constexpr):
    prompt = tl.program_id(0)
    slot = tl.load(slots_ptr + prompt)
    active = slot != skip_slot
    j = tl.arange(0, RANK_BLOCK)
    b = tl.arange(0, BLOCKS)
    partials = tl.load(partial_ptr + (prompt * blocks + b[:, None]) * RANK_BLOCK + j[None, :],
                       mask=(b < blocks)[:, None] & active, other=0.0)
    hidden = tl.sum(partials, axis=0)
    kind = tl.load(kinds_ptr + prompt)
    silu = hidden / (1.0 + tl.exp(-hidden))
    gelu = 0.5 * hidden * (1.0 + tl.erf(hidden * 0.7071067811865476))
    activated = tl.where(kind == 0, silu, tl.where(kind == 1, gelu, tl.maximum(hidden, 0.0)))
    row = tl.load(rows_ptr + prompt)
    w = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    w_in = w < width
    weight = tl.load(up_ptr + slot * up_slot_stride + w[:, None] * up_row_stride + j[None, :],
                     mask=(w_in & active)[:, None] & (j < RANK)[None, :], other=0.0)
    vector = tl.sum(weight * activated[None, :], axis=1)
    tl.store(out_ptr + row * out_row_stride + w, (1.0 + vector).to(out_ptr.dtype.element_ty), mask=w_in & active)


def generate_multipliers(x: torch.Tensor, starts: torch.Tensor, pooled: torch.Tensor, poolers: torch.Tensor,
                         activations: torch.Tensor, slots: torch.Tensor, rows: torch.Tensor, down: torch.Tensor,
                         up: torch.Tensor, out: torch.Tensor, skip_slot: int = -1, block_d: int = BLOCK_D,
                         block_t: int = BLOCK_T, warps: int = 4) -> None:
    """For each prompt p of a packed pass (tokens ``starts[p]`` onward, the first ``pooled[p]`` of them pooled):
    ``out[rows[p]] = 1 + W_up · act(W_down · pool(x))`` with the weights of slot ``slots[p]``.

    x [T, hidden] (the layer's normalised input); down [slots, rank, hidden] and up [slots, width, rank]
    (float32, one layer); out [rows, width] (the layer's multipliers); poolers and activations are per-prompt
    codes (mean 0, last 1, max 2; silu 0, gelu 1, relu 2: ``adapters.para.POOLER_CODES``, ``ACTIVATION_CODES``).
    Prompts on ``skip_slot`` (the engine's all-zero slot: bare prompts and a bucket's padding) are skipped, reading
    nothing and writing nothing: their rows must hold ones already. Without the skip, every padding prompt of a
    graph bucket read a whole ``W_up`` slice (a bucket of 4k tokens has 257 prompts): on an H200 the kernels of a
    pass of eight 512-token prompts took 1.75 ms without it and 1.11 ms with it. ``block_d``, ``block_t`` and ``warps`` set the pooling
    programs' tiles (powers of two; results do not depend
    on them but for float32 rounding).
    """
    prompts, hidden = starts.shape[0], x.shape[1]
    rank, width = down.shape[1], up.shape[1]
    if x.stride(-1) != 1 or down.stride(-1) != 1 or up.stride(-1) != 1 or out.stride(-1) != 1:
        raise ValueError("the generator kernels need contiguous last dimensions")
    rank_block = max(2, triton.next_power_of_2(rank))
    blocks = triton.cdiv(hidden, block_d)
    partial = torch.empty(prompts, blocks, rank_block, dtype=torch.float32, device=x.device)
    _pool_down_kernel[(prompts, blocks)](
        x, x.stride(0), starts, pooled, poolers, slots, skip_slot, down, down.stride(0), down.stride(1), partial, hidden,
        RANK=rank, RANK_BLOCK=rank_block, BLOCK_D=block_d, BLOCK_T=block_t, num_warps=warps)
    block_w = 256
    _up_write_kernel[(prompts, triton.cdiv(width, block_w))](
        partial, blocks, activations, slots, skip_slot, rows, up, up.stride(0), up.stride(1), out, out.stride(0), width,
        RANK=rank, RANK_BLOCK=rank_block, BLOCKS=triton.next_power_of_2(blocks), BLOCK_W=block_w, num_warps=4)
