"""The inner step both attention kernels share: one tile of cached keys and values, online softmax."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def cache_offsets(table_row_ptr, position, valid, kv_head, block_stride, head_stride, position_stride,
                  BLOCK_SIZE: tl.constexpr):
    """Where each position's key (and value) sits in the paged cache, through the sequence's block table."""
    block = tl.load(table_row_ptr + position // BLOCK_SIZE, mask=valid, other=0)
    return block.to(tl.int64) * block_stride + kv_head * head_stride + (position % BLOCK_SIZE) * position_stride


@triton.jit
def online_softmax_step(q, k, v, visible, scale, maximum, total, acc, IEEE: tl.constexpr):
    """Fold one tile into the running (maximum, sum, weighted values) of each query row.

    Rows that see no key in the tile keep a finite maximum, so no NaN appears; bf16/fp16 dots use the
    tensor cores with float32 accumulation, the probabilities rounded to the values' dtype first (as flash
    attention does); ``IEEE`` computes both dots in float32.
    """
    if IEEE:
        scores = tl.dot(q.to(tl.float32), tl.trans(k.to(tl.float32)), input_precision="ieee") * scale
    else:
        scores = tl.dot(q, tl.trans(k)) * scale
    scores = tl.where(visible, scores, float("-inf"))
    new_maximum = tl.maximum(maximum, tl.max(scores, axis=1))
    new_maximum = tl.where(new_maximum == float("-inf"), 0.0, new_maximum)
    p = tl.exp(scores - new_maximum[:, None])
    alpha = tl.exp(maximum - new_maximum)
    total = total * alpha + tl.sum(p, axis=1)
    if IEEE:
        acc = acc * alpha[:, None] + tl.dot(p, v.to(tl.float32), input_precision="ieee")
    else:
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return new_maximum, total, acc
