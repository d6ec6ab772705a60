"""The one place that turns an example's prompt into model input text.

Training and evaluation both call :func:`render_prompt`, so the model is
scored on exactly the text it was trained on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeGuard, cast

from .base import Example

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

FALLBACK_CUE = "Answer:"


def prompt_token_ids(tokenizer: PreTrainedTokenizerBase, text: str, templated: bool | None = None) -> list[int]:
    """Token ids of a rendered prompt (:func:`render_prompt`; ``templated``: whether the text came from the chat
    template, by default whether the tokenizer has one; False for raw text).

    A chat template writes the special tokens it wants (its beginning-of-sequence token among them) into the
    text, so nothing is added. A plain prompt gets the beginning-of-sequence token the tokenizer itself puts
    first (``tokenizer(text)`` does; Llama-2, Mistral and Gemma base models expect it), so that training,
    evaluation and ``para generate`` give such a model the same ids; nothing is added at the end, where the
    response follows.
    """
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if has_chat_template(tokenizer) if templated is None else templated:
        return ids
    bos = tokenizer.bos_token_id
    starts_with_bos = bos is not None and tokenizer("", add_special_tokens=True).input_ids[:1] == [bos]
    return [bos] + ids if starts_with_bos and ids[:1] != [bos] else ids


def has_chat_template(tokenizer: PreTrainedTokenizerBase | None) -> TypeGuard[PreTrainedTokenizerBase]:
    """Whether prompts for this tokenizer go through its chat template (instruct models) or the plain fallback."""
    return tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))


def render_prompt(
    example_or_prompt: Example | str,
    tokenizer: PreTrainedTokenizerBase | None,
    system: str | None = None,
) -> str:
    """Model input for a user message, ending where the response starts.

    With a tokenizer that has a chat template: the template applied to
    ``[system] + history + [user prompt]`` with ``add_generation_prompt=True``
    (so the text ends with the assistant header). ``system`` overrides an
    example's own system message; without either, the template's default
    applies. Without a chat template (base models, or ``tokenizer=None``): the
    plain text ``"[system\\n\\n][Role: turn\\n\\n]...prompt\\n\\nAnswer:"``. What
    follows the rendered prompt (a target, a candidate choice) goes through
    :func:`render_response`.
    """
    if isinstance(example_or_prompt, Example):
        prompt, history = example_or_prompt.prompt, example_or_prompt.history
        system = system if system is not None else example_or_prompt.system
    else:
        prompt, history = example_or_prompt, []
    if has_chat_template(tokenizer):
        messages = [{"role": "system", "content": system}] if system else []
        messages += [*history, {"role": "user", "content": prompt}]
        return cast(str, tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    parts = [system] if system else []
    parts += [f"{turn['role'].capitalize()}: {turn['content']}" for turn in history]
    parts += [prompt, FALLBACK_CUE]
    return "\n\n".join(parts)


def render_response(text: str, tokenizer: PreTrainedTokenizerBase | None) -> str:
    """A response (target or candidate choice) as it follows :func:`render_prompt`'s text.

    Chat templates end with the assistant header, so the response follows as
    is. The plain fallback ends with ``"Answer:"``; the response gets a leading
    space, as in ordinary text, so that tokenising prompt and response
    separately gives the tokens a base model expects (``"Ġyes"``, not ``"yes"``).
    """
    if has_chat_template(tokenizer):
        return text
    return " " + text
