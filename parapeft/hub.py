"""Adapters on the Hugging Face Hub: reading one by repository id (cache first), and uploading one.

An adapter argument is a local directory when one exists at that path; otherwise a string of the form
``owner/name`` is a Hub repository id. Its files are taken from the Hub's cache when they are there
(``HF_HUB_CACHE``), and downloaded only when they are not and ``HF_HUB_OFFLINE`` is unset.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from .adapter_io import AdapterLoadError
from .config import CONFIG_NAME, WEIGHTS_NAME

CARD_NAME = "README.md"
ADAPTER_FILES = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME]
# The Hub's repository naming rule: an optional owner, then the name; letters, digits, '-', '_', '.'.
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(name: str) -> bool:
    return bool(_REPO_ID.match(name)) and ".." not in name


def resolve_adapter_dir(adapter: str | Path, revision: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """A local directory holding the adapter's files: ``adapter`` itself, or the Hub snapshot of that repository."""
    path = Path(adapter).expanduser()
    if path.is_dir() or isinstance(adapter, Path) or not is_hub_id(str(adapter)):
        if revision is not None:
            raise ValueError(f"revision={revision!r} applies to Hub repositories; {adapter} is a local path")
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    fetch = dict(repo_id=str(adapter), revision=revision, cache_dir=cache_dir, allow_patterns=ADAPTER_FILES)
    try:
        return Path(snapshot_download(**fetch, local_files_only=True))
    except LocalEntryNotFoundError:
        pass  # not cached: download it (snapshot_download itself refuses when HF_HUB_OFFLINE is set)
    try:
        directory = Path(snapshot_download(**fetch))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
        raise AdapterLoadError(
            f"{adapter} is not a local directory, and the Hub repository of that name is neither in the cache nor "
            f"downloadable ({type(err).__name__}: {err})"
        ) from err
    if not (directory / CONFIG_NAME).is_file():
        raise AdapterLoadError(f"Hub repository {adapter} has no {CONFIG_NAME}: it is not an adapter")
    return directory


def push_adapter(save: Callable[[Path], None], repo_id: str, private: bool | None = None, token: str | None = None,
                 commit_message: str = "Upload PARA adapter") -> str:
    """Create ``repo_id`` if needed, write the adapter with ``save(directory)`` and upload it; returns the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save(Path(tmp))
        api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)
    return str(url)
