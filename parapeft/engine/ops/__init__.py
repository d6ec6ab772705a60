"""The executor's operations, chosen once per engine: PyTorch everywhere, Triton kernels on a CUDA device."""

from __future__ import annotations

import torch
from torch import nn

from .. import kernels
from ..errors import ConfigError
from .torch_ops import AttentionGroup, TorchOps

__all__ = ["AttentionGroup", "TorchOps", "select_ops"]


def _rms_norm_like(module: nn.Module) -> bool:
    """An HF RMSNorm of the Llama kind (weight times the normalised input), which the Triton kernel computes."""
    return (type(module).__name__.endswith("RMSNorm") and hasattr(module, "variance_epsilon")
            and isinstance(getattr(module, "weight", None), torch.Tensor))


def select_ops(norms: list[nn.Module], silu: bool, device: torch.device, fused: bool | None,
               skinny_rows: int = 0) -> TorchOps:
    """Triton kernels when asked for (``True``) or by default on CUDA with Triton; the PyTorch ops otherwise.
    Asking for them where they cannot run is an error, not a silent fallback. ``skinny_rows``: matmuls of at
    most this many rows go through the Triton matmul (0: cuBLAS)."""
    if fused is False or (fused is None and device.type != "cuda"):
        return TorchOps()
    problem = None
    if device.type != "cuda" and not kernels.interpreted():
        problem = "the model is not on a CUDA device"
    elif not kernels.available():
        problem = "Triton is not installed"
    elif not all(_rms_norm_like(n) for n in norms):
        problem = "the backbone's norms are not Llama-style RMSNorm"
    if problem:
        if fused:
            raise ConfigError(f"fused kernels asked for, but {problem}")
        return TorchOps()
    from .triton_ops import TritonOps

    return TritonOps(silu, skinny_rows)
