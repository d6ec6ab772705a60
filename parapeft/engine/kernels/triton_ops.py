"""Triton kernels for the engine's layers (prefill and decoding), each replacing a chain of small PyTorch launches.

Rounding: every kernel computes in float32 but rounds to the storage dtype exactly where eager PyTorch
rounds (after the PARA multiply, after each term of the rotary sum, after SiLU, after each product), so a
bf16 step gives the eager step's numbers; only reductions (RMSNorm's mean) and ``exp``/``rsqrt`` may
differ in their last float32 bit. ``_round`` is that rounding; for float32 tensors it does nothing.

Every tensor's last dimension must be contiguous; rows may be strided (slices of a fused projection).
A per-row PARA scale is read from a buffer row picked by ``scale_rows`` (the executor passes each token's
sequence row, so the vectors are never gathered into a batch-shaped copy). The rotary kernel addresses the
cache as [slot, head, position]; the engine passes (block, offset in the block) of its paged cache.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _round(x, like_ptr):
    """Round float32 ``x`` to the element type of ``like_ptr`` and back, as an eager op's result would be."""
    return x.to(like_ptr.dtype.element_ty).to(tl.float32)


def _warps(block: int) -> int:
    return 4 if block <= 1024 else 8 if block <= 4096 else 16


def _rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` as [rows, width] with a contiguous last dimension (a view where one exists)."""
    flat = x.reshape(-1, x.shape[-1])
    return flat if flat.stride(-1) == 1 else flat.contiguous()


# --------------------------------------------------------------------------------------------- RMSNorm
@triton.jit
def _rms_norm_kernel(x_ptr, residual_ptr, weight_ptr, out_ptr, summed_ptr, x_stride, residual_stride,
                     out_stride, summed_stride, width, eps, HAS_RESIDUAL: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    inside = cols < width
    x = tl.load(x_ptr + row * x_stride + cols, mask=inside, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:  # hidden = hidden + delta, rounded and stored: the next residual stream
        residual = tl.load(residual_ptr + row * residual_stride + cols, mask=inside, other=0.0).to(tl.float32)
        x = _round(x + residual, summed_ptr)
        tl.store(summed_ptr + row * summed_stride + cols, x.to(summed_ptr.dtype.element_ty), mask=inside)
    variance = tl.sum(x * x, axis=0) / width
    # HF LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) in float32, cast to the input dtype, then times the weight
    normed = _round(x * tl.rsqrt(variance + eps), x_ptr)
    weight = tl.load(weight_ptr + cols, mask=inside, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * out_stride + cols, (weight * normed).to(out_ptr.dtype.element_ty), mask=inside)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None):
    """HF RMSNorm of ``x`` over its last dimension; with ``residual``, of ``x + residual``.

    Returns the normalised tensor, or ``(normalised, x + residual)`` when ``residual`` is given (the
    decoder's ``hidden = hidden + delta; x = norm(hidden)``, one launch instead of about eight).
    """
    width = x.shape[-1]
    rows = _rows(x)
    out = torch.empty(rows.shape, dtype=torch.promote_types(x.dtype, weight.dtype), device=x.device)
    if residual is not None:
        if residual.shape != x.shape or residual.dtype != x.dtype:
            raise ValueError(f"residual {tuple(residual.shape)} {residual.dtype} does not match "
                             f"x {tuple(x.shape)} {x.dtype}")
        residual_rows = _rows(residual)
        summed = torch.empty(rows.shape, dtype=x.dtype, device=x.device)
    else:
        residual_rows, summed = rows, out  # not read: HAS_RESIDUAL is off
    block = triton.next_power_of_2(width)
    _rms_norm_kernel[(rows.shape[0],)](
        rows, residual_rows, weight, out, summed, rows.stride(0), residual_rows.stride(0), out.stride(0),
        summed.stride(0), width, eps, HAS_RESIDUAL=residual is not None, BLOCK=block, num_warps=_warps(block))
    if residual is None:
        return out.view(x.shape)
    return out.view(x.shape), summed.view(x.shape)


# ------------------------------------------------------------------------------ rotary + cache writes
@triton.jit
def _rotate(x1, x2, cos1, cos2, sin1, sin2, like_ptr):
    """HF ``x * cos + rotate_half(x) * sin`` on a head's two halves, rounded after each eager op."""
    out1 = _round(_round(x1 * cos1, like_ptr) - _round(x2 * sin1, like_ptr), like_ptr)
    out2 = _round(_round(x2 * cos2, like_ptr) + _round(x1 * sin2, like_ptr), like_ptr)
    return out1, out2


@triton.jit
def _rotary_cache_kernel(q_ptr, k_ptr, v_ptr, q_stride, k_stride, v_stride, cos_ptr, sin_ptr, cos_stride,
                         sin_stride, q_scale_ptr, v_scale_ptr, q_scale_stride, v_scale_stride, scale_rows_ptr,
                         slots_ptr, positions_ptr, q_rows_ptr, q_out_ptr, q_out_row_stride, q_out_head_stride,
                         keys_ptr, values_ptr, cache_slot_stride, cache_head_stride, cache_position_stride,
                         HEADS: tl.constexpr, KV_HEADS: tl.constexpr, HEADS_BLOCK: tl.constexpr,
                         KV_BLOCK: tl.constexpr, HEAD_DIM: tl.constexpr, HALF_BLOCK: tl.constexpr,
                         SCALE_Q: tl.constexpr, SCALE_V: tl.constexpr):
    """One program per row (token): every query head, key head and value head of the row at once."""
    row = tl.program_id(0)
    half = HEAD_DIM // 2
    d = tl.arange(0, HALF_BLOCK)
    d_in = d < half
    cos1 = tl.load(cos_ptr + row * cos_stride + d, mask=d_in, other=0.0).to(tl.float32)[None, :]
    cos2 = tl.load(cos_ptr + row * cos_stride + half + d, mask=d_in, other=0.0).to(tl.float32)[None, :]
    sin1 = tl.load(sin_ptr + row * sin_stride + d, mask=d_in, other=0.0).to(tl.float32)[None, :]
    sin2 = tl.load(sin_ptr + row * sin_stride + half + d, mask=d_in, other=0.0).to(tl.float32)[None, :]
    if SCALE_Q or SCALE_V:
        scale_row = tl.load(scale_rows_ptr + row)
    # queries: [HEADS_BLOCK, HALF_BLOCK] tiles of the two halves of every head
    h = tl.arange(0, HEADS_BLOCK)
    q_mask = (h < HEADS)[:, None] & d_in[None, :]
    offsets = h[:, None] * HEAD_DIM + d[None, :]
    x1 = tl.load(q_ptr + row * q_stride + offsets, mask=q_mask, other=0.0).to(tl.float32)
    x2 = tl.load(q_ptr + row * q_stride + half + offsets, mask=q_mask, other=0.0).to(tl.float32)
    if SCALE_Q:  # PARA: the query is scaled before the rotary embedding, as in the eager step
        scale = q_scale_ptr + scale_row * q_scale_stride
        x1 = _round(x1 * tl.load(scale + offsets, mask=q_mask, other=0.0).to(tl.float32), q_ptr)
        x2 = _round(x2 * tl.load(scale + half + offsets, mask=q_mask, other=0.0).to(tl.float32), q_ptr)
    out1, out2 = _rotate(x1, x2, cos1, cos2, sin1, sin2, q_out_ptr)
    target = q_out_ptr + tl.load(q_rows_ptr + row) * q_out_row_stride + h[:, None] * q_out_head_stride + d[None, :]
    tl.store(target, out1.to(q_out_ptr.dtype.element_ty), mask=q_mask)
    tl.store(target + half, out2.to(q_out_ptr.dtype.element_ty), mask=q_mask)
    # keys (rotated) and values (scaled) straight into the cache at (slot, head, position)
    kv = tl.arange(0, KV_BLOCK)
    kv_mask = (kv < KV_HEADS)[:, None] & d_in[None, :]
    kv_offsets = kv[:, None] * HEAD_DIM + d[None, :]
    cache = (tl.load(slots_ptr + row) * cache_slot_stride + kv[:, None] * cache_head_stride
             + tl.load(positions_ptr + row) * cache_position_stride + d[None, :])
    x1 = tl.load(k_ptr + row * k_stride + kv_offsets, mask=kv_mask, other=0.0).to(tl.float32)
    x2 = tl.load(k_ptr + row * k_stride + half + kv_offsets, mask=kv_mask, other=0.0).to(tl.float32)
    out1, out2 = _rotate(x1, x2, cos1, cos2, sin1, sin2, keys_ptr)
    tl.store(keys_ptr + cache, out1.to(keys_ptr.dtype.element_ty), mask=kv_mask)
    tl.store(keys_ptr + cache + half, out2.to(keys_ptr.dtype.element_ty), mask=kv_mask)
    v1 = tl.load(v_ptr + row * v_stride + kv_offsets, mask=kv_mask, other=0.0).to(tl.float32)
    v2 = tl.load(v_ptr + row * v_stride + half + kv_offsets, mask=kv_mask, other=0.0).to(tl.float32)
    if SCALE_V:
        scale = v_scale_ptr + scale_row * v_scale_stride
        v1 = v1 * tl.load(scale + kv_offsets, mask=kv_mask, other=0.0).to(tl.float32)
        v2 = v2 * tl.load(scale + half + kv_offsets, mask=kv_mask, other=0.0).to(tl.float32)
    tl.store(values_ptr + cache, v1.to(values_ptr.dtype.element_ty), mask=kv_mask)
    tl.store(values_ptr + cache + half, v2.to(values_ptr.dtype.element_ty), mask=kv_mask)


def rotary_to_cache(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                    keys: torch.Tensor, values: torch.Tensor, slots: torch.Tensor, positions: torch.Tensor,
                    q_out: torch.Tensor | None = None, q_rows: torch.Tensor | None = None,
                    q_scale: torch.Tensor | None = None, v_scale: torch.Tensor | None = None,
                    scale_rows: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row: rotate q and k (HF ``rotate_half``), write k and v into the caches, return q.

    q [B, H*hd], k and v [B, KV*hd] (rows may be strided); cos, sin [B, hd]; keys, values
    [slots, KV, max_len, hd]: row b's key and value go to ``[slots[b], :, positions[b]]``. q is multiplied
    by ``q_scale[scale_rows[b]]`` before the rotation and v by ``v_scale[scale_rows[b]]`` (PARA);
    ``scale_rows`` defaults to the row index. The rotated query goes to ``q_out[q_rows[b]]`` (q_out
    [R, H, hd], by default a new [B, H, hd]; q_rows by default the row index) and q_out is returned.
    """
    batch, head_dim = q.shape[0], keys.shape[-1]
    heads, kv_heads = q.shape[1] // head_dim, keys.shape[1]
    if head_dim % 2 or k.shape[1] != kv_heads * head_dim or v.shape[1] != kv_heads * head_dim:
        raise ValueError(f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} do not fit a cache of "
                         f"{kv_heads} heads of {head_dim}")
    for name, tensor in {"q": q, "k": k, "v": v, "cos": cos, "sin": sin, "keys": keys, "values": values,
                         "q_out": q_out, "q_scale": q_scale, "v_scale": v_scale}.items():
        if tensor is not None and tensor.stride(-1) != 1:
            raise ValueError(f"{name} needs a contiguous last dimension")
    if keys.stride() != values.stride():
        raise ValueError("keys and values need the same layout")
    if q_out is None:
        q_out = torch.empty(batch, heads, head_dim, dtype=q.dtype, device=q.device)
    scaled = q_scale is not None or v_scale is not None
    counting = torch.arange(batch, device=q.device) if q_rows is None or (scaled and scale_rows is None) else None
    q_rows = counting if q_rows is None else q_rows
    if not scaled:
        scale_rows = slots  # a placeholder pointer: SCALE_Q and SCALE_V are off
    elif scale_rows is None:
        scale_rows = counting
    slots, positions, q_rows, scale_rows = (t.contiguous() for t in (slots, positions, q_rows, scale_rows))
    q_scale_arg = q if q_scale is None else q_scale  # a placeholder pointer when the scale is off
    v_scale_arg = v if v_scale is None else v_scale
    _rotary_cache_kernel[(batch,)](
        q, k, v, q.stride(0), k.stride(0), v.stride(0), cos, sin, cos.stride(0), sin.stride(0),
        q_scale_arg, v_scale_arg, q_scale_arg.stride(0), v_scale_arg.stride(0), scale_rows,
        slots, positions, q_rows, q_out, q_out.stride(0), q_out.stride(1),
        keys, values, keys.stride(0), keys.stride(1), keys.stride(2),
        HEADS=heads, KV_HEADS=kv_heads, HEADS_BLOCK=triton.next_power_of_2(heads),
        KV_BLOCK=triton.next_power_of_2(kv_heads), HEAD_DIM=head_dim, HALF_BLOCK=triton.next_power_of_2(head_dim // 2),
        SCALE_Q=q_scale is not None, SCALE_V=v_scale is not None, num_warps=4 if heads * head_dim >= 1024 else 1)
    return q_out


# ------------------------------------------------------------------------------------ SiLU and multiply
@triton.jit
def _silu_mul_kernel(gate_ptr, up_ptr, scale_ptr, scale_rows_ptr, out_ptr, gate_stride, up_stride, scale_stride,
                     out_stride, width, HAS_SCALE: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = cols < width
    gate = tl.load(gate_ptr + row * gate_stride + cols, mask=inside, other=0.0).to(tl.float32)
    up = tl.load(up_ptr + row * up_stride + cols, mask=inside, other=0.0).to(tl.float32)
    if HAS_SCALE:  # PARA scales Up before the product: act(gate) * (up * s), as the eager step rounds it
        scale_row = tl.load(scale_rows_ptr + row)
        up = _round(up * tl.load(scale_ptr + scale_row * scale_stride + cols, mask=inside, other=0.0).to(tl.float32),
                    up_ptr)
    activated = _round(gate / (1.0 + tl.exp(-gate)), gate_ptr)  # torch's SiLU: x / (1 + exp(-x)) in float32
    tl.store(out_ptr + row * out_stride + cols, (activated * up).to(out_ptr.dtype.element_ty), mask=inside)


def silu_mul(gate: torch.Tensor, up: torch.Tensor, scale: torch.Tensor | None = None,
             scale_rows: torch.Tensor | None = None) -> torch.Tensor:
    """``silu(gate) * (up * scale[scale_rows])`` (or ``silu(gate) * up``) in one launch; ``[..., width]``.

    ``scale`` is [R, width]; row i of the flattened input uses ``scale[scale_rows[i]]`` (default: row i).
    """
    if gate.shape != up.shape:
        raise ValueError(f"gate {tuple(gate.shape)} and up {tuple(up.shape)} differ")
    width = gate.shape[-1]
    gate_rows, up_rows = _rows(gate), _rows(up)
    rows = gate_rows.shape[0]
    out = torch.empty(gate_rows.shape, dtype=torch.promote_types(gate.dtype, up.dtype), device=gate.device)
    if scale is not None:
        if scale.stride(-1) != 1 or scale.shape[-1] != width:
            raise ValueError(f"scale {tuple(scale.shape)} needs a contiguous last dimension of {width}")
        scale_rows = torch.arange(rows, device=gate.device) if scale_rows is None else scale_rows.contiguous()
    block = min(1024, triton.next_power_of_2(width))
    scale_arg = up_rows if scale is None else scale
    _silu_mul_kernel[(rows, triton.cdiv(width, block))](
        gate_rows, up_rows, scale_arg, gate_rows if scale_rows is None else scale_rows, out, gate_rows.stride(0),
        up_rows.stride(0), scale_arg.stride(0), out.stride(0), width, HAS_SCALE=scale is not None, BLOCK=block,
        num_warps=4)
    return out.view(gate.shape)
