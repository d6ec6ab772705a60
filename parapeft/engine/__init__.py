"""Multi-tenant inference: continuous batching, packed prefill, a paged KV cache, per-row PARA and LoRA adapters."""

from .config import EngineConfig
from .engine import Engine
from .errors import AdapterExists, AdapterInUse, BadRequest, ConfigError, EngineError, UnknownAdapter
from .sampling import SamplingParams
from .sequence import Request

__all__ = ["AdapterExists", "AdapterInUse", "BadRequest", "ConfigError", "Engine", "EngineConfig", "EngineError",
           "Request", "SamplingParams", "UnknownAdapter"]
