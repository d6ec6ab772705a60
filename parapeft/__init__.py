"""PARA: Prompt-Aware Representation Adjustment for frozen causal LMs."""

from .adapter_io import AdapterLoadError
from .architectures import ARCHITECTURES, UnsupportedArchitectureError
from .config import ParaConfig
from .model import BASE_ADAPTER, ParaModel, get_para_model

__all__ = [
    "ARCHITECTURES",
    "AdapterLoadError",
    "BASE_ADAPTER",
    "ParaConfig",
    "ParaModel",
    "UnsupportedArchitectureError",
    "get_para_model",
]
__version__ = "0.1.0"
