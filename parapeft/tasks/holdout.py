"""Fixed held-out splits carved from a single file (GSM8K dev, user instruction data).

An index goes to the held-out part when its ``sha256(f"{seed}:{index}")`` is
among the ``size`` smallest. Hashing rather than ``random.shuffle`` makes the
split a pure function of (seed, index, file length): identical on every
machine and Python version, and reproducible from this docstring in any
language. Both parts keep the file's order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

SEED = 20261128
T = TypeVar("T")


def holdout_indices(n: int, size: int, seed: int = SEED) -> set[int]:
    """The ``size`` indices out of ``range(n)`` that form the held-out part."""
    if not 0 < size < n:
        raise ValueError(f"cannot hold out {size} of {n} examples: need 0 < held-out size < number of examples")
    ranked = sorted(range(n), key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).digest())
    return set(ranked[:size])


def carve(rows: Sequence[T], split: str, size: int, seed: int = SEED) -> list[T]:
    """``split`` of ``rows``: ``"dev"`` is the held-out part, ``"train"`` the rest, ``"all"`` everything."""
    if split == "all":
        return list(rows)
    held = holdout_indices(len(rows), size, seed)
    return [row for i, row in enumerate(rows) if (i in held) == (split == "dev")]
