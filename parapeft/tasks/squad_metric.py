"""The official SQuAD v1.1 metric (``evaluate-v1.1.py``), ported line for line.

Kept separate and unchanged in logic so SQuAD numbers are comparable with
published ones; the instruction task reuses it as a generic token-level F1.
Differences from the script, all outside the per-answer logic: scores are
fractions in [0, 1] (the script multiplies by 100) and are computed over
aligned lists instead of a predictions-by-id dict.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

_PUNCTUATION = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        return "".join(ch for ch in text if ch not in _PUNCTUATION)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def metric_max_over_ground_truths(
    metric_fn: Callable[[str, str], float], prediction: str, ground_truths: Sequence[str]
) -> float:
    return max(metric_fn(prediction, ground_truth) for ground_truth in ground_truths)


def evaluate(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean exact match and F1, each the max over a question's reference answers."""
    if len(predictions) != len(references) or not references:
        raise ValueError(f"need equally many predictions and references, got {len(predictions)} and {len(references)}")
    exact_match = f1 = 0.0
    for prediction, ground_truths in zip(predictions, references, strict=True):
        exact_match += metric_max_over_ground_truths(exact_match_score, prediction, ground_truths)
        f1 += metric_max_over_ground_truths(f1_score, prediction, ground_truths)
    return {"exact_match": exact_match / len(references), "f1": f1 / len(references)}
