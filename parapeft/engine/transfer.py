"""Host values onto the device without waiting for the GPU work already queued."""

from __future__ import annotations

import torch


def to_device(values, device: torch.device, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """``values`` (a list or a CPU tensor) on ``device`` without waiting for the GPU work already queued: a copy
    from pageable host memory synchronises the stream first, one from pinned memory does not (PyTorch's caching
    host allocator keeps the pinned buffer until the copy has run)."""
    host = values.to(dtype) if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=dtype)
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)
