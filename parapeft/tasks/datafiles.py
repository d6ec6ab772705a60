"""Where task data lives and how it is read (standard-library ``json`` only).

The default data root is ``../shared/data`` seen from the repository root (the
layout used by tests and CI); ``$PARA_DATA`` or an explicit ``data`` argument
points anywhere else. An explicit path may be a data root (holding
``<task>/<file>``), a task folder (holding ``<file>``) or the data file itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import DataNotFoundError, MalformedDataError

DATA_ENV = "PARA_DATA"
DEFAULT_DATA = Path("..") / "shared" / "data"
_REPO_ROOT = Path(__file__).resolve().parents[2]


def default_data_roots() -> list[Path]:
    """Roots searched when no path is given: ``$PARA_DATA`` if set, else ``../shared/data``.

    ``../shared/data`` is tried from the working directory first (the documented
    "run from the repository root" case) and then from this checkout's root, so
    commands started in a sub-folder of the repository still find the data.
    """
    env = os.environ.get(DATA_ENV)
    if env:
        return [Path(env).expanduser()]
    roots: list[Path] = []
    for root in (Path.cwd() / DEFAULT_DATA, _REPO_ROOT / DEFAULT_DATA):
        if root.resolve() not in {r.resolve() for r in roots}:
            roots.append(root)
    return roots


def locate(task: str, filename: str, data: str | Path | None = None) -> Path:
    """Path of ``filename`` for ``task``; a clear error naming every place looked at if absent."""
    if data is not None:
        given = Path(data).expanduser()
        if given.is_file():
            return given
        if not given.exists():
            raise DataNotFoundError(f"{task}: data path {given} does not exist")
        roots = [given]
    else:
        roots = default_data_roots()
    tried = [candidate for root in roots for candidate in (root / task / filename, root / filename)]
    for candidate in tried:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(p) for p in tried)
    raise DataNotFoundError(
        f"{task}: cannot find {filename} (looked at {looked}). Point to the data with data=PATH "
        f"(CLI: --data PATH) or the {DATA_ENV} environment variable: a data root holding "
        f"{task}/{filename}, the {task} folder itself, or the file itself."
    )


def read_jsonl(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Records of a JSON-lines file, each with its ``file:line`` location for error messages."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise MalformedDataError(f"{where}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise MalformedDataError(f"{where}: expected a JSON object, got {type(record).__name__}")
            records.append((where, record))
    return records


def read_json(path: Path) -> Any:
    """A whole JSON document; decoding errors name the file, line and column."""
    with open(path, encoding="utf-8") as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as err:
            raise MalformedDataError(f"{path}:{err.lineno}:{err.colno}: not valid JSON ({err.msg})") from None


def field(record: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...] = str) -> Any:
    """``record[key]``, checked to exist and have the expected type, else an error naming ``where``."""
    if key not in record:
        raise MalformedDataError(f"{where}: missing field {key!r}")
    value = record[key]
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise MalformedDataError(f"{where}: field {key!r} should be {expected}, got {type(value).__name__}")
    return value
