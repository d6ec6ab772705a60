"""The registry of tasks by name, used by ``para train`` and ``para eval``."""

from __future__ import annotations

from .base import Task
from .boolq import BoolQ
from .copa import Copa
from .errors import UnknownTaskError
from .gsm8k import Gsm8k
from .instruct import Instruct
from .spider import Spider
from .squad import Squad

TASKS: dict[str, Task] = {task.name: task for task in (BoolQ(), Copa(), Squad(), Gsm8k(), Spider(), Instruct())}


def get_task(name: str) -> Task:
    """The task called ``name`` (case-insensitive), else an error listing the known tasks."""
    task = TASKS.get(name.strip().lower())
    if task is None:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return task
