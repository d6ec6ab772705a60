"""Reading and writing adapter weights: safetensors only (never pickle), validated before use."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import WEIGHTS_NAME, ParaConfig


# The largest magnitude any adapter weight may have. PARA scales activations by (1 + W_up · act(W_down · p)), so
# a tenant's weights bound what its adapter can do to a shared engine step; trained adapters stay far below
# this (the committed SmolLM2 ones peak at 0.55), while weights like 1e30 overflow the step's logits.
# Documented in docs/gateway-api.md (uploads are checked against it by a worker).
MAX_ABS_WEIGHT = 1e3


class AdapterLoadError(ValueError):
    """An adapter directory is missing, corrupt, or does not fit the backbone."""


def save_weights(tensors: dict[str, torch.Tensor], directory: str | Path) -> Path:
    path = Path(directory) / WEIGHTS_NAME
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp), metadata={"format": "pt"})
    tmp.replace(path)  # atomic: a crash never leaves a half-written adapter behind
    return path


def load_weights(directory: str | Path, expected_shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Load and check every tensor against the shapes the backbone and config imply."""
    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise AdapterLoadError(f"no {WEIGHTS_NAME} in {directory}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            keys = set(handle.keys())
            missing = sorted(set(expected_shapes) - keys)
            unexpected = sorted(keys - set(expected_shapes))
            if missing or unexpected:
                raise AdapterLoadError(
                    f"{path} does not match its config: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                    f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
                )
            tensors = {}
            for key, shape in expected_shapes.items():
                tensor = handle.get_tensor(key)
                if tuple(tensor.shape) != tuple(shape):
                    raise AdapterLoadError(f"{path}: tensor {key} has shape {tuple(tensor.shape)}, expected {tuple(shape)}")
                if not tensor.is_floating_point():
                    raise AdapterLoadError(f"{path}: tensor {key} has dtype {tensor.dtype}, expected a float type")
                check_magnitude(key, tensor, str(path))
                tensors[key] = tensor
    except SafetensorError as err:
        raise AdapterLoadError(f"{path} is not a valid safetensors file: {err}") from err
    return tensors


def check_magnitude(key: str, tensor: torch.Tensor, source: str) -> None:
    """Refuse a tensor with NaN, infinite or out-of-bound values (|w| > MAX_ABS_WEIGHT), naming it."""
    if not torch.isfinite(tensor).all():
        raise AdapterLoadError(f"{source}: tensor {key} holds NaN or infinite values")
    if tensor.numel() and (peak := tensor.abs().max().item()) > MAX_ABS_WEIGHT:
        raise AdapterLoadError(
            f"{source}: tensor {key} holds a weight of magnitude {peak:.3g}, above the limit of {MAX_ABS_WEIGHT:g}"
        )


def check_compatible(config: ParaConfig, model_type: str, dims: dict[str, int], source: str) -> None:
    """Refuse an adapter trained for another architecture or other widths, naming the difference."""
    if config.model_type is not None and config.model_type != model_type:
        raise AdapterLoadError(f"adapter {source} was made for model_type {config.model_type!r}, the backbone is {model_type!r}")
    if config.dims is not None:
        if not isinstance(config.dims, dict):
            raise AdapterLoadError(f"adapter {source}: dims must be an object of widths, got {type(config.dims).__name__}")
        diffs = [f"{k}: adapter {config.dims.get(k)} vs backbone {v}" for k, v in dims.items() if config.dims.get(k) != v]
        if diffs:
            raise AdapterLoadError(f"adapter {source} does not fit this backbone ({'; '.join(diffs)})")
    if config.pool_layer is not None and config.pool_layer >= dims["num_layers"]:
        raise AdapterLoadError(
            f"adapter {source} pools layer {config.pool_layer}, the backbone has {dims['num_layers']} layers"
        )
    if config.layers_to_transform and config.layers_to_transform[-1] >= dims["num_layers"]:
        raise AdapterLoadError(
            f"adapter {source} targets layer {config.layers_to_transform[-1]}, the backbone has {dims['num_layers']} layers"
        )
