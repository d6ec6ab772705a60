"""GSM8K: grade-school math word problems, scored on the final number.

The shared data has only GSM8K's train file, so a fixed dev split of
:data:`DEV_SIZE` problems is carved from it (see :mod:`.holdout` for the
seeded rule); ``"all"`` is the whole file, e.g. the official test file given
as ``data``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from .base import Example, FileTask
from .datafiles import field, read_jsonl
from .errors import MalformedDataError
from .holdout import SEED, carve
from .scoring import match_rate

DEV_SIZE = 500
_CALCULATOR = re.compile(r"<<[^<>]*>>")
# A sign only when not glued to a word ("COVID-19" is not -19); thousands commas only in groups of three.
_NUMBER = re.compile(r"(?:(?<!\w)[-+])?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|(?:(?<!\w)[-+])?\$?\.\d+")


def format_prompt(question: str) -> str:
    return (
        "Solve the math word problem. Reason step by step, then write the final answer "
        'on its own line as "#### <number>".\n\n'
        f"Problem: {question.strip()}"
    )


def normalise_number(number: str) -> str:
    """Canonical text of a number: no ``$``, commas, ``+`` or leading zeros, no trailing decimal zeros.

    ``"$1,234.50"`` -> ``"1234.5"``, ``"18.00"`` -> ``"18"``, ``"+7"`` -> ``"7"``, ``"-0"`` -> ``"0"``.
    """
    digits = number.replace(",", "").replace("$", "").replace("+", "").strip()
    sign = "-" if digits.startswith("-") else ""
    whole, _, fraction = digits.lstrip("-").partition(".")
    whole = whole.lstrip("0") or "0"
    fraction = fraction.rstrip("0")
    value = f"{whole}.{fraction}" if fraction else whole
    return "0" if value == "0" else sign + value


def extract_answer(text: str) -> str:
    """The first number after the last ``####``, else the last number in the text; ``""`` if none."""
    _, marker, tail = text.rpartition("####")
    if marker and (after := _NUMBER.search(tail)):
        return normalise_number(after.group())
    numbers = _NUMBER.findall(text)
    return normalise_number(numbers[-1]) if numbers else ""


class Gsm8k(FileTask):
    name = "gsm8k"
    metric = "exact_match"
    max_new_tokens = 384
    files: ClassVar[dict[str, str]] = {"train": "train.jsonl", "dev": "train.jsonl", "all": "train.jsonl"}

    def load(self, split: str, path: Path) -> list[Example]:
        examples = []
        for number, (where, record) in enumerate(read_jsonl(path)):
            solution = field(record, "answer", where)
            if "####" not in solution:
                raise MalformedDataError(f"{where}: answer does not end with '#### <number>'")
            examples.append(
                Example(
                    id=f"gsm8k-{number}",
                    prompt=format_prompt(field(record, "question", where)),
                    # <<48/2=24>> are calculator annotations for the original tool-using setup, not reasoning.
                    target=_CALCULATOR.sub("", solution).strip(),
                    answers=[extract_answer(solution)],
                )
            )
        return carve(examples, split, DEV_SIZE, SEED)

    def parse(self, generated: str, example: Example) -> str:
        return extract_answer(generated)

    def score(self, predictions: list[str], examples: list[Example]) -> dict[str, float]:
        return {"exact_match": match_rate(predictions, examples)}
