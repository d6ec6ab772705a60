"""Where the engine's adapters live: a few attached to the model on its device, more in CPU memory, any on disk.

PARA needs an adapter only while prefilling a prompt: a request that is
decoding keeps its vectors in its KV-cache slot. So evicting an adapter from
the device never disturbs running requests, and a device slot is only needed
for the duration of a prefill.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from pathlib import Path

import torch

from ..config import ParaConfig
from ..model import ParaModel


class AdapterStore:
    def __init__(self, para: ParaModel, device_slots: int = 64):
        if device_slots < 1:
            raise ValueError("device_slots must be at least 1")
        self.para = para
        self.device_slots = device_slots
        self.host: dict[str, tuple[ParaConfig, dict[str, torch.Tensor]]] = {}  # every known adapter, CPU tensors
        self.paths: dict[str, Path] = {}
        self.attached: OrderedDict[str, None] = OrderedDict((name, None) for name in para.peft_config)  # LRU order
        self.loads = self.evictions = 0
        for name in list(self.attached):
            self.host[name] = (copy.deepcopy(para.peft_config[name]), self._host_copy(name))
        self._evict_beyond(device_slots)

    def _host_copy(self, name: str) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", copy=True) for k, v in self.para.adapter_state_dict(name).items()}

    def __contains__(self, name: str) -> bool:
        return name in self.host

    def names(self) -> list[str]:
        return list(self.host)

    def register(self, name: str, path: str | Path) -> None:
        """Read and validate an adapter directory; it is attached on first use."""
        if name in self.host:
            raise ValueError(f"adapter {name!r} is already loaded")
        if not name or name == "__base__" or "." in name:
            raise ValueError(f"invalid adapter name {name!r}")
        self.host[name] = self.para.read_adapter(path)
        self.paths[name] = Path(path)

    def unregister(self, name: str) -> None:
        if name not in self.host:
            raise KeyError(f"unknown adapter {name!r}")
        if name in self.attached:
            self.para.delete_adapter(name)
            del self.attached[name]
        del self.host[name]
        self.paths.pop(name, None)

    def acquire(self, name: str) -> None:
        """Make ``name`` attached (loading it from CPU memory if needed) and most recently used."""
        if name in self.attached:
            self.attached.move_to_end(name)
            return
        config, tensors = self.host[name]
        self._evict_beyond(self.device_slots - 1)
        self.para.add_adapter_weights(name, copy.deepcopy(config), tensors)
        self.attached[name] = None
        self.loads += 1

    def _evict_beyond(self, keep: int) -> None:
        while len(self.attached) > keep:
            name, _ = self.attached.popitem(last=False)
            self.para.delete_adapter(name)
            self.evictions += 1

    def info(self, name: str) -> dict:
        config, tensors = self.host[name]
        return {"name": name, "parameters": sum(t.numel() for t in tensors.values()),
                "base_model": config.base_model_name_or_path or ""}
