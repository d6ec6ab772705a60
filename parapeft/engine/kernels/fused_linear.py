"""Projections that read the same input (q/k/v, gate/up) as one matmul, without a second copy of their weights.

The modules' weights are concatenated once into one tensor and each module's parameter is re-pointed at its
slice (``param.data = view``): the same Parameter objects, the same numbers, no extra memory, and the HF
modules (prefill, ``ParaModel``) keep working on them. Moving or casting the model afterwards
(``model.to``) gives the parameters fresh storage again; ``is_current`` detects that. A second engine on the
same model finds the parameters already adjacent in one tensor and shares it instead of concatenating again.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_FLOATS = (torch.float16, torch.bfloat16, torch.float32)


def _adjacent(parts: list[torch.Tensor]) -> torch.Tensor | None:
    """The one tensor that ``parts`` (contiguous, same storage) tile in order along dim 0, if they do."""
    first = parts[0]
    offset = first.storage_offset()
    for part in parts:
        if (not part.is_contiguous() or part.untyped_storage().data_ptr() != first.untyped_storage().data_ptr()
                or part.storage_offset() != offset):
            return None
        offset += part.numel()
    rows = sum(p.shape[0] for p in parts)
    return first.new_empty(0).set_(first.untyped_storage(), first.storage_offset(), (rows, *first.shape[1:]))


def _concatenated(modules: list[nn.Module], name: str) -> torch.Tensor:
    """The modules' ``name`` parameters as one tensor, each parameter re-pointed at its slice of it."""
    parts = [getattr(m, name) for m in modules]
    fused = _adjacent([p.data for p in parts])
    if fused is None:
        fused = torch.cat([p.data for p in parts])
        for param, part in zip(parts, fused.split([p.shape[0] for p in parts])):
            param.data = part  # the module's parameter now views the fused tensor
    return fused


def _plain_weight(module: nn.Module) -> bool:
    """An ordinary dense Linear weight (not quantized, not offloaded to the meta device, not a tensor subclass)."""
    weight = getattr(module, "weight", None)
    return (isinstance(module, nn.Linear) and type(weight) is nn.Parameter and weight.dtype in _FLOATS
            and weight.device.type != "meta" and weight.is_contiguous())


class FusedLinear:
    """``modules`` (nn.Linear of the same input width, device and dtype; one or more) as one matmul."""

    def __init__(self, modules: list[nn.Linear]):
        self.modules = modules
        self.widths = [m.out_features for m in modules]
        with torch.no_grad():
            self.weight = _concatenated(modules, "weight")
            self.bias = _concatenated(modules, "bias") if modules[0].bias is not None else None

    @staticmethod
    def fusable(modules: list[nn.Module]) -> bool:
        if not all(_plain_weight(m) for m in modules):
            return False
        first = modules[0].weight
        same_bias = len({m.bias is None for m in modules}) == 1
        return same_bias and all(m.weight.device == first.device and m.weight.dtype == first.dtype
                                 and m.in_features == modules[0].in_features
                                 and (m.bias is None or (type(m.bias) is nn.Parameter and m.bias.dtype == first.dtype))
                                 for m in modules)

    @classmethod
    def build(cls, modules: list[nn.Module]) -> FusedLinear | None:
        """The fused projection, or None when the weights cannot share one tensor (quantized, mixed, ...)."""
        return cls(modules) if cls.fusable(modules) else None

    def is_current(self) -> bool:
        """Whether the modules still view the fused weights (False after ``model.to(...)`` and the like)."""
        return self.modules[0].weight.data_ptr() == self.weight.data_ptr()

    def __call__(self, x: torch.Tensor, linear=F.linear) -> list[torch.Tensor]:
        """Each module's output, as slices (views) of one matmul's result; ``linear(x, weight, bias)`` is the
        matmul (the engine passes its ops' choice: cuBLAS or its skinny Triton kernel)."""
        return list(linear(x, self.weight, self.bias).split(self.widths, dim=-1))
