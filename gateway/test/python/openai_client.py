"""Drives the gateway with the official `openai` Python package, unmodified; prints what it got as JSON.

    python openai_client.py BASE_URL API_KEY MODEL
"""

import json
import sys
from typing import Literal

import openai
import pydantic
from openai import OpenAI


def main() -> None:
    base_url, api_key, model = sys.argv[1:4]
    client = OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=60)
    messages = [{"role": "user", "content": "the cat sat on the mat"}]
    chat = client.chat.completions.create(model=model, messages=messages, max_tokens=6, temperature=0)
    streamed, finish, usage = "", None, None
    for chunk in client.chat.completions.create(model=model, messages=messages, max_tokens=6, temperature=0,
                                                stream=True, stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage.model_dump()
        for choice in chunk.choices:
            streamed += choice.delta.content or ""
            finish = choice.finish_reason or finish
    completion = client.completions.create(model=model, prompt="the dog ran", max_tokens=5, temperature=0, logprobs=0)
    try:
        client.chat.completions.create(model="nobody/nothing", messages=messages, max_tokens=2)
        not_found = None
    except openai.NotFoundError as err:
        not_found = {"status": err.status_code, "code": err.code}
    # Structured output through the SDK's own helper: a pydantic model becomes a json_schema response_format.
    class Verdict(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        answer: Literal["yes", "no", "maybe"]

    parsed = client.chat.completions.parse(model=model, messages=messages, max_tokens=40, temperature=0,
                                           response_format=Verdict)
    top = client.chat.completions.create(model=model, messages=messages, max_tokens=3, temperature=0, logprobs=True,
                                         top_logprobs=5)
    refused = {}
    for field, value in {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
                         "reasoning_effort": "low", "store": True}.items():
        try:
            client.chat.completions.create(model=model, messages=messages, max_tokens=2, **{field: value})
        except openai.BadRequestError as err:
            refused[field] = err.param
    try:
        client.chat.completions.create(model=model, messages=messages, max_tokens=2, extra_body={"colour": "red"})
    except openai.BadRequestError as err:
        refused["colour"] = err.param
    print(json.dumps({
        "parsed": parsed.choices[0].message.parsed.answer,
        "top_logprobs": [len(t.top_logprobs) for t in top.choices[0].logprobs.content],
        "refused": refused,
        "version": openai.__version__,
        "chat": chat.choices[0].message.content,
        "chat_usage": chat.usage.model_dump(),
        "chat_model": chat.model,
        "streamed": streamed,
        "stream_finish": finish,
        "stream_usage": usage,
        "completion": completion.choices[0].text,
        "completion_logprobs": completion.choices[0].logprobs.token_logprobs,
        "models": sorted(m.id for m in client.models.list()),
        "not_found": not_found,
    }))


if __name__ == "__main__":
    main()
