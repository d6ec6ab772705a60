"""Task registry for training and evaluation: data loading, prompts, answer parsing and metrics.

``get_task(name).examples(split)`` gives :class:`Example` records whose
``prompt`` is rendered for a model by :func:`render_prompt`; a model's output
goes through ``task.parse`` and the predictions through ``task.score``. See
``docs/tasks.md``.
"""

from .base import Example, FileTask, Task
from .datafiles import DATA_ENV, DEFAULT_DATA
from .errors import DataNotFoundError, MalformedDataError, UnknownSplitError, UnknownTaskError
from .prompting import prompt_token_ids, render_prompt, render_response
from .registry import TASKS, get_task

__all__ = [
    "DATA_ENV",
    "DEFAULT_DATA",
    "TASKS",
    "DataNotFoundError",
    "Example",
    "FileTask",
    "MalformedDataError",
    "Task",
    "UnknownSplitError",
    "UnknownTaskError",
    "get_task",
    "prompt_token_ids",
    "render_prompt",
    "render_response",
]
