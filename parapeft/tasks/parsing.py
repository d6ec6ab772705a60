"""Helpers for pulling a short answer out of a chatty model response."""

from __future__ import annotations

import re

_LABEL = re.compile(r"^\s*(?:final\s+)?answer\s*:\s*", re.IGNORECASE)


def answer_line(generated: str) -> str:
    """The first non-empty line of ``generated``, without a leading ``Answer:`` label.

    Tasks with short answers ask for the answer alone; small models still often
    prefix a label or add an explanation on later lines.
    """
    text = _LABEL.sub("", generated.strip())
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
