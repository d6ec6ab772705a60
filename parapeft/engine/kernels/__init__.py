"""Triton kernels for the engine's passes: fewer launches per layer, and PARA's per-row multiplies inside them.

``triton_ops`` holds RMSNorm with the residual add, the rotary embedding with the cache writes and
SiLU-and-multiply; ``paged_attention`` and ``prefill_attention`` read the paged KV cache in place (one query
per row, or tiles of packed prompts), sharing ``attention_tile``; ``para_generator`` runs PARA's generators
and ``lora_sgmv`` LoRA's products; ``fused_linear`` concatenates the projections that read the same input
into one matmul. Importing this package never imports Triton: ``available()`` says whether it can be used.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether Triton imports (it ships with CUDA builds of torch; CPU installs usually lack it)."""
    try:
        import triton.language  # noqa: F401 - importing is the check
    except Exception:  # noqa: BLE001 - a broken Triton install means the same as none: the torch path
        return False
    return True


def interpreted() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1): the kernels' tests run there."""
    import os

    return os.environ.get("TRITON_INTERPRET") == "1"
