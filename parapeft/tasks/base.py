"""What a task is: the :class:`Example` record, the :class:`Task` interface and shared plumbing.

Training and evaluation only talk to tasks through this interface, so adding a
task never touches ``para train`` / ``para eval``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from .datafiles import locate
from .errors import UnknownSplitError

SPLIT_ALIASES = {"val": "dev", "validation": "dev"}


@dataclass
class Example:
    """One task instance, already turned into a chat exchange.

    ``prompt`` is the (last) user message; it is rendered with the model's chat
    template by :func:`parapeft.tasks.render_prompt`, the same way in training
    and evaluation. ``target`` is the response the model is trained to produce;
    ``answers`` are the references the metric compares against.
    """

    id: str
    prompt: str
    target: str
    answers: list[str]
    choices: list[str] | None = None  # candidate responses for log-likelihood scoring, else None
    label: int | None = None  # index of the correct choice
    system: str | None = None  # system message that came with the data (chat records), else None
    history: list[dict[str, str]] = field(default_factory=list)  # earlier chat turns before `prompt`
    # The part of `prompt` that may be cut when the prompt is longer than the context (a passage, a schema),
    # appearing in it verbatim; None when no part may be (see parapeft.tasks.truncation).
    context: str | None = None


@runtime_checkable
class Task(Protocol):
    """A benchmark or data set: its examples, how to read model output, how to score it."""

    name: str
    metric: str
    max_new_tokens: int

    def examples(self, split: str, data: str | Path | None = None, limit: int | None = None) -> list[Example]:
        """The first ``limit`` examples of ``split`` (all if None), read from ``data`` or the default data root."""
        ...

    def parse(self, generated: str, example: Example) -> str:
        """The prediction string in a generated response (what :meth:`score` compares)."""
        ...

    def score(self, predictions: list[str], examples: list[Example]) -> dict[str, float]:
        """Metrics (fractions in [0, 1]) of parsed predictions, including ``self.metric``."""
        ...

    def splits(self) -> list[str]:
        """Valid split names."""
        ...


class FileTask(ABC):
    """Shared plumbing for tasks read from files: split names, aliases, data location, ``limit``.

    Subclasses set ``files`` (split -> file name inside the task's data folder)
    and turn one file into examples in :meth:`load`.
    """

    name: str
    metric: str
    max_new_tokens: int
    files: ClassVar[dict[str, str]]

    def splits(self) -> list[str]:
        return list(self.files)

    def examples(self, split: str, data: str | Path | None = None, limit: int | None = None) -> list[Example]:
        split = self.check_split(split)
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        rows = self.load(split, self.source(split, data))
        return rows if limit is None else rows[:limit]

    def source(self, split: str, data: str | Path | None) -> Path:
        """The file ``split`` is read from; see :func:`.datafiles.locate` for what ``data`` may be."""
        return locate(self.name, self.files[split], data)

    def check_split(self, split: str) -> str:
        """The canonical name of ``split`` (``val``/``validation`` mean ``dev``), else a clear error."""
        canonical = SPLIT_ALIASES.get(split, split)
        if canonical not in self.splits():
            aliases = " (alias: val, validation)" if "dev" in self.splits() else ""
            raise UnknownSplitError(
                f"task {self.name!r} has no split {split!r}; valid splits: {', '.join(self.splits())}{aliases}"
            )
        return canonical

    @abstractmethod
    def load(self, split: str, path: Path) -> list[Example]:
        """All examples of ``split`` from the file at ``path``."""

    @abstractmethod
    def parse(self, generated: str, example: Example) -> str: ...

    @abstractmethod
    def score(self, predictions: list[str], examples: list[Example]) -> dict[str, float]: ...
