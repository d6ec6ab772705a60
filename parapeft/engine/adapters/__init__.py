"""Adapters as the engine serves them: one interface (``RowAdapters``) that the executor calls per layer, with
a PARA and a LoRA implementation, each stacking its resident adapters per device slot."""

from .base import ADAPTER_NAME, RowAdapters, check_adapter_name
from .lora import LoraAdapters
from .para import ParaAdapters

__all__ = ["ADAPTER_NAME", "LoraAdapters", "ParaAdapters", "RowAdapters", "check_adapter_name"]
