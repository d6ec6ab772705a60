"""Fitting an over-long prompt into the context: the rule that cuts the passage, never the question or options.

Real test sets hold examples longer than a model's context (every standard BoolQ split has passages of
more than a thousand tokens). An example whose rendered prompt does not fit is shortened by cutting the
end of its ``Example.context`` (the passage of BoolQ and SQuAD, the schema of Spider) to whole tokens and
marking the cut with ``" ..."``; the instruction, the question, the answer options and the chat template
stay whole. An example without a context (COPA, GSM8K), or whose prompt does not fit even with the context
cut to nothing, cannot be fitted: evaluation counts it and scores it wrong, and the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .base import Example
from .prompting import prompt_token_ids, render_prompt

CUT_MARK = " ..."


class PromptTooLongError(ValueError):
    """A prompt that does not fit its token budget and has no context left to cut."""


@dataclass
class FittedPrompt:
    ids: list[int]
    cut_tokens: int  # how many context tokens were removed (0: the example fitted as it was)


def prompt_ids(tokenizer, example: Example) -> list[int]:
    return prompt_token_ids(tokenizer, render_prompt(example, tokenizer))


def fit_prompt(tokenizer, example: Example, limit: int) -> FittedPrompt:
    """The prompt's token ids in at most ``limit`` tokens, cutting the context's end if needed (see the module)."""
    ids = prompt_ids(tokenizer, example)
    if len(ids) <= limit:
        return FittedPrompt(ids, 0)
    if not example.context or example.context not in example.prompt:
        raise PromptTooLongError(f"example {example.id}: the prompt has {len(ids)} tokens, the limit is {limit}, "
                                 "and it has no passage to cut")
    context = tokenizer(example.context, add_special_tokens=False).input_ids
    keep = len(context) - (len(ids) - limit)
    # Re-tokenising the joined text can merge or split tokens at the cut, so shorten until it fits.
    while keep > 0:
        cut = tokenizer.decode(context[:keep]).rstrip() + CUT_MARK
        shorter = replace(example, prompt=example.prompt.replace(example.context, cut, 1), context=cut)
        ids = prompt_ids(tokenizer, shorter)
        if len(ids) <= limit:
            return FittedPrompt(ids, len(context) - keep)
        keep -= max(1, len(ids) - limit)
    raise PromptTooLongError(f"example {example.id}: the prompt does not fit {limit} tokens even without its passage")
