"""Metric helpers shared by several tasks."""

from __future__ import annotations

from .base import Example


def check_aligned(predictions: list[str], examples: list[Example]) -> None:
    """Refuse to score misaligned or empty lists: a silent zip would hide an evaluation bug."""
    if len(predictions) != len(examples):
        raise ValueError(f"got {len(predictions)} predictions for {len(examples)} examples")
    if not examples:
        raise ValueError("nothing to score: no examples")


def match_rate(predictions: list[str], examples: list[Example]) -> float:
    """Fraction of (already parsed and normalised) predictions equal to one of their example's answers."""
    check_aligned(predictions, examples)
    return sum(pred in ex.answers for pred, ex in zip(predictions, examples, strict=True)) / len(examples)
