"""SQuAD v1.1: extractive question answering over Wikipedia paragraphs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from .base import Example, FileTask
from .datafiles import field, read_json
from .errors import MalformedDataError
from .parsing import answer_line
from .squad_metric import evaluate

# One pair of quotes around the whole answer; curly quotes matter because the
# official normaliser only strips ASCII punctuation.
_WRAPPING_QUOTES = re.compile("^([\"'`\u201c\u2018])(.+)([\"'`\u201d\u2019])$", re.DOTALL)
# A final full stop, unless it follows a one-character word as in "D.C." or "John F.".
_SENTENCE_STOP = re.compile(r"(?<!\b\w)\.$")


def format_prompt(context: str, question: str) -> str:
    return (
        "Answer the question with a short span copied from the passage.\n\n"
        f"Passage: {context.strip()}\n\n"
        f"Question: {question.strip()}\n\n"
        "Reply with the answer only."
    )


def clean_answer(generated: str) -> str:
    """The answer span of a response: its first line, without a label, wrapping quotes or a final full stop.

    Case, articles and ASCII punctuation inside the answer are left to the
    metric's normaliser, so the prediction stays what the model wrote.
    """
    answer = answer_line(generated)
    quoted = _WRAPPING_QUOTES.match(answer)
    if quoted:
        answer = quoted.group(2).strip()
    return _SENTENCE_STOP.sub("", answer).rstrip()


class Squad(FileTask):
    name = "squad"
    metric = "f1"
    max_new_tokens = 48
    files: ClassVar[dict[str, str]] = {"train": "train.json", "dev": "dev.json"}

    def load(self, split: str, path: Path) -> list[Example]:
        document = read_json(path)
        articles = document.get("data") if isinstance(document, dict) else None
        if not isinstance(articles, list):
            raise MalformedDataError(f"{path}: expected the official SQuAD format, {{'version', 'data': [articles]}}")
        examples: list[Example] = []
        for a, article in enumerate(articles):
            for p, paragraph in enumerate(article.get("paragraphs", [])):
                context = field(paragraph, "context", f"{path}: data[{a}].paragraphs[{p}]")
                for q, qa in enumerate(paragraph.get("qas", [])):
                    where = f"{path}: data[{a}].paragraphs[{p}].qas[{q}]"
                    answers = [field(ans, "text", where) for ans in field(qa, "answers", where, list)]
                    if not answers:
                        raise MalformedDataError(f"{where}: no answers")
                    examples.append(
                        Example(
                            id=str(qa.get("id", f"{split}-{len(examples)}")),
                            prompt=format_prompt(context, field(qa, "question", where)),
                            context=context.strip(),
                            target=answers[0],
                            answers=answers,
                        )
                    )
        return examples

    def parse(self, generated: str, example: Example) -> str:
        return clean_answer(generated)

    def score(self, predictions: list[str], examples: list[Example]) -> dict[str, float]:
        return evaluate(predictions, [ex.answers for ex in examples])
