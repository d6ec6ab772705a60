"""Where named models live on disk, and how concurrent processes share that place.

Everything parapeft downloads or converts goes under one root so CI can cache a single
directory and users can relocate it with ``PARA_CACHE``. Writers build into a private
temporary directory and publish with one ``rename`` while holding a per-model file lock,
so a reader never sees a half-written model and two processes never download twice.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout


def default_cache_dir() -> Path:
    """``$PARA_CACHE`` if set (and non-empty), else ``~/.cache/parapeft``."""
    env = os.environ.get("PARA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "parapeft"


def cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    """The cache root to use: ``cache_dir`` when given, else :func:`default_cache_dir`."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


@contextmanager
def model_lock(root: Path, name: str) -> Iterator[None]:
    """Hold the per-model lock; say on stderr when another process is holding it."""
    lock_dir = root / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_dir / f"{name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"[parapeft] waiting for another process preparing '{name}' ...", file=sys.stderr)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextmanager
def staging_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A fresh temp dir next to its final location (same filesystem, so rename is atomic).

    It is removed on exit; whatever the caller published out of it by renaming is kept.
    """
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{prefix}-tmp-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def publish_dir(staged: Path, final: Path) -> None:
    """Atomically move a completed directory into place, replacing a stale one if present.

    ``mkdtemp`` creates the directory owner-only; a published cache is meant to be shared.
    """
    staged.chmod(0o755)
    if final.exists():
        stale = final.with_name(f".{final.name}-stale-{os.getpid()}")
        final.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    staged.rename(final)
