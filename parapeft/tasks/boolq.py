"""BoolQ: yes/no questions about a Wikipedia passage (SuperGLUE)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from .base import Example, FileTask
from .datafiles import field, read_jsonl
from .errors import MalformedDataError
from .scoring import match_rate

CHOICES = ["no", "yes"]
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def format_prompt(passage: str, question: str) -> str:
    """Passage first, then the question, then the exact answer form wanted.

    BoolQ questions come lower-case without a question mark; they are given
    both so they read as questions to an instruct model.
    """
    question = question.strip()
    question = question[:1].upper() + question[1:]
    if not question.endswith("?"):
        question += "?"
    return (
        "Read the passage and answer the question.\n\n"
        f"Passage: {passage.strip()}\n\n"
        f"Question: {question}\n\n"
        "Answer with a single word: yes or no."
    )


class BoolQ(FileTask):
    name = "boolq"
    metric = "accuracy"
    max_new_tokens = 8
    files: ClassVar[dict[str, str]] = {"train": "train.jsonl", "dev": "dev.jsonl"}

    def load(self, split: str, path: Path) -> list[Example]:
        examples: list[Example] = []
        for where, record in read_jsonl(path):
            label = field(record, "label", where, (bool, int))
            if label not in (0, 1):
                raise MalformedDataError(f"{where}: label must be true/false, got {label!r}")
            label = int(label)
            target = CHOICES[label]
            examples.append(
                Example(
                    id=f"boolq-{record.get('idx', len(examples))}",
                    prompt=format_prompt(field(record, "passage", where), field(record, "question", where)),
                    context=record["passage"].strip(),
                    target=target,
                    answers=[target],
                    choices=list(CHOICES),
                    label=label,
                )
            )
        return examples

    def parse(self, generated: str, example: Example) -> str:
        """The first standalone yes/no word, lower-cased; ``""`` (always wrong) when there is none."""
        found = _YES_NO.search(generated)
        return found.group(1).lower() if found else ""

    def score(self, predictions: list[str], examples: list[Example]) -> dict[str, float]:
        return {"accuracy": match_rate(predictions, examples)}
