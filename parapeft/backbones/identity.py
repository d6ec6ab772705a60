"""What an adapter records as its backbone: the model's canonical Hub id, and the named variant if any.

A loaded transformers model only knows the path it was read from (``config._name_or_path``), which for a
named model is a cache directory on one machine. The canonical id is recovered from where that path is:
a parapeft named-model directory (its manifest names the model), a snapshot in the Hugging Face cache
(``models--owner--name/snapshots/<commit>``), or else the name as given (a Hub id, or a user's own path).
"""

from __future__ import annotations

import json
from pathlib import Path

from .materialize import MANIFEST_NAME
from .registry import NAMED_MODELS


def backbone_identity(name_or_path: str | None) -> tuple[str | None, str | None]:
    """``(base_model_name_or_path, base_model_variant)`` for a model loaded from ``name_or_path``."""
    if not name_or_path:
        return None, None
    if name_or_path in NAMED_MODELS:
        return NAMED_MODELS[name_or_path].hub_id, name_or_path
    path = Path(name_or_path).expanduser()
    manifest = path / MANIFEST_NAME
    if manifest.is_file():
        try:
            name = json.loads(manifest.read_text()).get("name")
        except (OSError, ValueError):
            name = None
        if name in NAMED_MODELS:
            return NAMED_MODELS[name].hub_id, name
    parts = path.parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3][len("models--"):].replace("--", "/"), None
    return name_or_path, None


def backbone_to_load(base_model_name_or_path: str | None, base_model_variant: str | None) -> str | None:
    """The name to give ``load_base_model`` for an adapter: its named variant when it has one, else its id."""
    if base_model_variant is not None:
        if base_model_variant not in NAMED_MODELS:
            raise ValueError(
                f"the adapter was trained on the named model {base_model_variant!r}, which this version of parapeft "
                f"does not know (known: {', '.join(sorted(NAMED_MODELS))})"
            )
        return base_model_variant
    return base_model_name_or_path
