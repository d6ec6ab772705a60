"""Skinny matmuls for the decoding step: ``y = x @ W.T (+ bias)`` for a few rows (the decoding batch).

A decoding step's projection is a stream over its weights: at 64 rows, cuBLAS read them at about 55 % of the
H200's HBM bandwidth (``benchmarks/engine/decode_profile.json``). This kernel computes the product transposed
("swap AB": W's rows on the MMA's M side, the batch on its N side), so a batch of 16-64 rows fills a Hopper
tensor-core tile instead of padding one, and splits K across programs so that narrow projections (o_proj,
down_proj: 2,048 outputs) still give every SM its share of the stream. Split partial sums go to a float32
workspace that a second small kernel reduces, adds the bias to and casts. ``LinearPlan`` picks the tiles per
shape (``plan``); ``benchmarks/engine/decode_gemm.py`` times them against cuBLAS.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import triton
import triton.language as tl

from . import interpreted

_FLOATS = (torch.float16, torch.bfloat16, torch.float32)


@triton.jit
def _linear_kernel(x_ptr, w_ptr, bias_ptr, y_ptr, part_ptr, M, N, K, span, x_stride, w_stride, y_stride,
                   HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
                   SPLIT: tl.constexpr, EVEN_K: tl.constexpr, PRECISION: tl.constexpr):
    pid_n, pid_split, pid_m = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rk = tl.arange(0, BLOCK_K)
    first = pid_split * span  # this split's span of K, a multiple of BLOCK_K (the last one may run past K)
    n_inside = rn < N
    m_inside = rm < M
    w_ptrs = w_ptr + rn[:, None].to(tl.int64) * w_stride + (first + rk)[None, :]
    x_ptrs = x_ptr + rm[None, :].to(tl.int64) * x_stride + (first + rk)[:, None]
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    for start in range(0, span, BLOCK_K):
        if EVEN_K:  # every split's span lies inside K: no mask along K
            w = tl.load(w_ptrs, mask=n_inside[:, None], other=0.0)
            x = tl.load(x_ptrs, mask=m_inside[None, :], other=0.0)
        else:
            k_inside = first + start + rk < K
            w = tl.load(w_ptrs, mask=n_inside[:, None] & k_inside[None, :], other=0.0)
            x = tl.load(x_ptrs, mask=m_inside[None, :] & k_inside[:, None], other=0.0)
        if PRECISION == "ieee":  # float32 in full precision (and Triton's interpreter, which has no bf16 dot)
            acc = tl.dot(w.to(tl.float32), x.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(w, x, acc)
        w_ptrs += BLOCK_K
        x_ptrs += BLOCK_K
    inside = n_inside[:, None] & m_inside[None, :]
    if not SPLIT:
        if HAS_BIAS:
            acc += tl.load(bias_ptr + rn, mask=n_inside, other=0.0).to(tl.float32)[:, None]
        tl.store(y_ptr + rm[None, :] * y_stride + rn[:, None], acc.to(y_ptr.dtype.element_ty), mask=inside)
    else:
        tl.store(part_ptr + (pid_split * M + rm[None, :]) * N + rn[:, None], acc, mask=inside)


@triton.jit
def _reduce_kernel(part_ptr, bias_ptr, y_ptr, M, N, y_stride, splits, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = offsets < M * N
    total = tl.zeros((BLOCK,), dtype=tl.float32)
    for split in range(splits):
        total += tl.load(part_ptr + split * M * N + offsets, mask=inside, other=0.0)
    row, col = offsets // N, offsets % N
    if HAS_BIAS:
        total += tl.load(bias_ptr + col, mask=inside, other=0.0).to(tl.float32)
    tl.store(y_ptr + row * y_stride + col, total.to(y_ptr.dtype.element_ty), mask=inside)


@dataclass(frozen=True)
class LinearPlan:
    """Tiles of one launch: ``block_n`` output features by ``block_m`` rows per program, K in steps of
    ``block_k``, split over ``split_k`` programs; ``warps`` and ``stages`` (software pipelining depth)."""

    block_n: int = 128
    block_m: int = 64
    block_k: int = 128
    split_k: int = 1
    warps: int = 4
    stages: int = 4

    def span(self, k: int) -> int:
        """K per split: whole steps of ``block_k``, so that the splits cover K."""
        return triton.cdiv(triton.cdiv(k, self.block_k), self.split_k) * self.block_k


def plan(rows: int, n: int, k: int, sms: int) -> LinearPlan:
    """The tiles for ``rows`` x ``k`` times ``k`` x ``n``: rows in one tile of 16-64 (more tiles past 64), K in
    steps of 128 (less for a short K), 128 outputs per tile where that alone gives every SM a program, else 64;
    K split (partial sums through a float32 workspace, extra traffic) only until the programs cover the SMs
    once, each split keeping at least four steps of K."""
    block_m = min(64, max(16, triton.next_power_of_2(rows)))
    row_tiles = triton.cdiv(rows, block_m)
    block_n = 128 if triton.cdiv(n, 128) * row_tiles >= sms else 64
    block_k = 128 if k >= 128 else max(16, triton.next_power_of_2(k))
    tiles = triton.cdiv(n, block_n) * row_tiles
    steps = triton.cdiv(k, block_k)
    split = 1
    while tiles * split < sms and steps >= 8 * split:
        split *= 2
    return LinearPlan(block_n=block_n, block_m=block_m, block_k=block_k, split_k=split)


@lru_cache(maxsize=None)
def multiprocessors(device: torch.device) -> int:
    """The device's SM count (132 under Triton's CPU interpreter, an H100's or H200's, so plans match theirs)."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 132


def supported(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """What the kernel takes: 2-D x and weight of one floating dtype, contiguous last dimensions."""
    return (x.dim() == 2 and weight.dim() == 2 and x.dtype == weight.dtype and x.dtype in _FLOATS
            and x.stride(-1) == 1 and weight.stride(-1) == 1 and x.shape[1] == weight.shape[1])


def decode_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  tiles: LinearPlan | None = None, sms: int | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for a few rows of x ([M, K] times [N, K]), accumulated in float32 (float32
    inputs multiply in full precision, not TF32)."""
    if not supported(x, weight):
        raise ValueError(f"decode_linear takes 2-D x [M, K] and weight [N, K] of one floating dtype; got "
                         f"{tuple(x.shape)} {x.dtype} and {tuple(weight.shape)} {weight.dtype}")
    rows, k = x.shape
    n = weight.shape[0]
    tiles = tiles or plan(rows, n, k, sms or multiprocessors(x.device))
    span = tiles.span(k)
    y = torch.empty(rows, n, dtype=x.dtype, device=x.device)
    part = y if tiles.split_k == 1 else torch.empty(tiles.split_k, rows, n, dtype=torch.float32, device=x.device)
    has_bias = bias is not None
    grid = (triton.cdiv(n, tiles.block_n), tiles.split_k, triton.cdiv(rows, tiles.block_m))
    _linear_kernel[grid](x, weight, bias if has_bias else y, y, part, rows, n, k, span, x.stride(0),
                         weight.stride(0), y.stride(0), HAS_BIAS=has_bias and tiles.split_k == 1,
                         BLOCK_N=tiles.block_n, BLOCK_M=tiles.block_m, BLOCK_K=tiles.block_k, SPLIT=tiles.split_k > 1,
                         EVEN_K=span * tiles.split_k == k,
                         PRECISION="ieee" if x.dtype == torch.float32 or interpreted() else "native",
                         num_warps=tiles.warps, num_stages=tiles.stages)
    if tiles.split_k > 1:
        block = 1024
        _reduce_kernel[(triton.cdiv(rows * n, block),)](part, bias if has_bias else y, y, rows, n, y.stride(0),
                                                        tiles.split_k, HAS_BIAS=has_bias, BLOCK=block)
    return y
