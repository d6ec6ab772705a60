"""Multi-tenant inference: continuous batching over a static KV cache, per-row PARA vectors."""

from .engine import Engine, EngineError, Request
from .sampling import SamplingParams

__all__ = ["Engine", "EngineError", "Request", "SamplingParams"]
