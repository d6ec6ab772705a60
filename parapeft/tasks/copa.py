"""COPA: pick the more plausible cause or effect of a premise (SuperGLUE)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from .base import Example, FileTask
from .datafiles import field, read_jsonl
from .errors import MalformedDataError
from .parsing import answer_line
from .scoring import match_rate
from .squad_metric import f1_score, normalize_answer

QUESTIONS = {"cause": "What was the cause of this?", "effect": "What happened as a result?"}


def format_prompt(premise: str, question: str, choice1: str, choice2: str) -> str:
    """Premise, the cause/effect question, both options as bullets, and the answer form.

    Options are bullets rather than numbered so the model answers with the
    option's text, which is also the training target.
    """
    return (
        f"Premise: {premise}\n"
        f"Question: {QUESTIONS[question]}\n"
        f"Options:\n- {choice1}\n- {choice2}\n\n"
        "Reply with the more plausible option, copied exactly."
    )


def pick_choice(generated: str, choices: list[str]) -> str:
    """The choice the answer line matches: exactly (after SQuAD normalisation), else by best token F1.

    Ties, and answers sharing no token with any choice, give ``""`` (wrong):
    credit only goes to an answer that singles out one option.
    """
    answer = answer_line(generated)
    exact = [c for c in choices if normalize_answer(c) == normalize_answer(answer)]
    if len(exact) == 1:
        return exact[0]
    overlaps = [f1_score(answer, c) for c in choices]
    best = max(overlaps, default=0.0)
    return choices[overlaps.index(best)] if best > 0 and overlaps.count(best) == 1 else ""


class Copa(FileTask):
    name = "copa"
    metric = "accuracy"
    max_new_tokens = 32
    files: ClassVar[dict[str, str]] = {"train": "train.jsonl", "dev": "val.jsonl"}

    def load(self, split: str, path: Path) -> list[Example]:
        examples: list[Example] = []
        for where, record in read_jsonl(path):
            question = field(record, "question", where)
            if question not in QUESTIONS:
                raise MalformedDataError(f"{where}: question must be 'cause' or 'effect', got {question!r}")
            label = field(record, "label", where, int)
            if label not in (0, 1):
                raise MalformedDataError(f"{where}: label must be 0 or 1, got {label!r}")
            choices = [field(record, "choice1", where), field(record, "choice2", where)]
            examples.append(
                Example(
                    id=f"copa-{split}-{record.get('idx', len(examples))}",
                    prompt=format_prompt(field(record, "premise", where), question, *choices),
                    target=choices[label],
                    answers=[choices[label]],
                    choices=choices,
                    label=label,
                )
            )
        return examples

    def parse(self, generated: str, example: Example) -> str:
        return pick_choice(generated, example.choices or [])

    def score(self, predictions: list[str], examples: list[Example]) -> dict[str, float]:
        return {"accuracy": match_rate(predictions, examples)}
