"""Structured output: grammar-masked rows share batches with free, PARA and LoRA rows, on the real SmolLM2."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema_rs
import pytest
import torch
import xgrammar

from parapeft.backbones import load_base_model
from parapeft.engine import Engine, SamplingParams
from parapeft.engine.errors import BadRequest
from parapeft.engine.grammar import ResponseFormat
from tiny_models import save_random_lora

pytestmark = pytest.mark.slow

ADAPTERS = Path(__file__).resolve().parents[1] / "adapters" / "smollm2-135m"
VERDICT = {"type": "object", "additionalProperties": False, "required": ["answer", "confidence"],
           "properties": {"answer": {"type": "string", "enum": ["yes", "no"]},
                          "confidence": {"type": "integer", "minimum": 0, "maximum": 100}}}
PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age", "tags"],
          "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"},
                         "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 2}}}


def schema_format(schema: dict) -> ResponseFormat:
    return ResponseFormat("json_schema", json.dumps(schema))


def chat_ids(tokenizer, text: str) -> list[int]:
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    return tokenizer(rendered, add_special_tokens=False).input_ids


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory):
    """A peft LoRA adapter on SmolLM2 (its own copy of the model) with non-zero B, so its rows differ."""
    directory = tmp_path_factory.mktemp("smollm2-lora")
    save_random_lora(load_base_model("smollm2-135m")[0], directory, rank=4, seed=0, scale=0.02)
    return directory


def engine_for(smollm2, lora_dir=None, **options) -> Engine:
    model, tokenizer = smollm2
    engine = Engine(model, tokenizer=tokenizer, max_len=512, max_seqs=8, kv_tokens=8192, **options)
    engine.load_adapter("copa", ADAPTERS / "copa")
    if lora_dir is not None:
        engine.load_adapter("lo", lora_dir)
    return engine


def text_of(tokenizer, request) -> str:
    return tokenizer.decode(request.tokens, skip_special_tokens=True)


def test_constrained_free_para_and_lora_rows_in_one_batch_all_valid(smollm2, lora_dir):
    _, tokenizer = smollm2
    engine = engine_for(smollm2, lora_dir)
    cases = [  # (adapter, prompt, response_format, temperature)
        ("", "Is the sky blue? Reply in JSON.", schema_format(VERDICT), 0.0),
        ("copa", "Describe a person as JSON.", schema_format(PERSON), 0.0),
        ("lo", "Is water wet? Reply in JSON.", schema_format(VERDICT), 0.9),
        ("", "Return a JSON object with a city name and its country.", ResponseFormat("json_object"), 0.0),
        ("copa", "Tell me about cats.", None, 0.0),
        ("lo", "Name three colours.", None, 0.0),
        ("", "Describe a person as JSON.", schema_format(PERSON), 0.7),
    ]
    requests = [engine.submit(chat_ids(tokenizer, prompt), adapter,
                              SamplingParams(max_tokens=96, temperature=temperature, seed=11, response_format=fmt))
                for adapter, prompt, fmt, temperature in cases]
    engine.run_until_done()
    assert engine.peak_kinds[0] == 3  # bare, PARA and LoRA rows decoded in one step
    for (adapter, _, fmt, _), request in zip(cases, requests):
        if fmt is None:
            continue
        assert request.finish_reason == "stop", (adapter, text_of(tokenizer, request))
        value = json.loads(text_of(tokenizer, request))
        schema = json.loads(fmt.schema) if fmt.type == "json_schema" else {"type": "object"}
        assert jsonschema_rs.validator_for(schema).is_valid(value), value

    # Free rows are untouched by their neighbours' masks: the same tokens as alone.
    for (adapter, prompt, fmt, _), request in zip(cases, requests):
        if fmt is None:
            solo = engine.submit(chat_ids(tokenizer, prompt), adapter, SamplingParams(max_tokens=96, seed=11))
            engine.run_until_done()
            assert solo.tokens == request.tokens


def test_constrained_greedy_equals_the_model_masked_by_the_library_step_by_step(smollm2):
    """The reference: the HF model's logits each step, masked by a fresh xgrammar matcher, argmax."""
    model, tokenizer = smollm2
    engine = engine_for(smollm2)
    prompt = chat_ids(tokenizer, "Describe a person as JSON.")
    request = engine.submit(prompt, sampling=SamplingParams(max_tokens=40, response_format=schema_format(PERSON)))
    engine.run_until_done()

    info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=engine.vocab)
    grammar = xgrammar.GrammarCompiler(info).compile_json_schema(json.dumps(PERSON), any_whitespace=False)
    matcher = xgrammar.GrammarMatcher(grammar)
    mask = xgrammar.allocate_token_bitmask(1, engine.vocab)
    ids, expected = list(prompt), []
    with torch.no_grad():
        while len(expected) < 40 and not matcher.is_terminated():
            logits = model(torch.tensor([ids])).logits[:, -1].float()
            matcher.fill_next_token_bitmask(mask)
            xgrammar.apply_token_bitmask_inplace(logits, mask)
            token = int(logits.argmax())
            assert matcher.accept_token(token)
            expected.append(token)
            ids.append(token)
    assert request.tokens == expected


def test_a_seeded_constrained_request_draws_the_same_alone_and_in_a_batch(smollm2):
    _, tokenizer = smollm2
    engine = engine_for(smollm2)
    params = lambda: SamplingParams(max_tokens=64, temperature=1.0, top_p=0.9, seed=5,  # noqa: E731
                                    response_format=schema_format(PERSON))
    prompt = chat_ids(tokenizer, "Describe a person as JSON.")
    alone = engine.submit(prompt, sampling=params())
    engine.run_until_done()
    crowd = [engine.submit(chat_ids(tokenizer, f"Story number {i}."), sampling=SamplingParams(max_tokens=20))
             for i in range(3)]
    again = engine.submit(prompt, sampling=params())
    crowd.append(engine.submit(prompt, "copa", SamplingParams(max_tokens=20, response_format=schema_format(VERDICT))))
    engine.run_until_done()
    assert again.tokens == alone.tokens
    assert all(r.finish_reason in ("stop", "length") for r in crowd)


@pytest.mark.parametrize("fmt, message", [
    (ResponseFormat("yaml"), "response_format type must be one of"),
    (ResponseFormat("json_schema", "{not json"), "not valid JSON"),
    (ResponseFormat("json_schema", "[1, 2]"), "must be a JSON object"),
    (ResponseFormat("json_object", '{"type": "object"}'), "takes no schema"),
    (ResponseFormat("json_schema", json.dumps({"type": "integer", "minimum": 5, "maximum": 2})),
     "cannot be compiled: Invalid range"),
])
def test_bad_response_formats_are_refused_by_name(smollm2, fmt, message):
    engine = engine_for(smollm2)
    with pytest.raises(BadRequest, match=message):
        engine.submit([1, 2, 3], sampling=SamplingParams(response_format=fmt))
    assert not engine.waiting


def test_an_engine_without_its_tokenizer_refuses_structured_output(smollm2):
    model, _ = smollm2
    engine = Engine(model, max_len=128, max_seqs=1, kv_tokens=256)
    with pytest.raises(BadRequest, match="needs an engine built with its tokenizer"):
        engine.submit([1, 2], sampling=SamplingParams(response_format=ResponseFormat("json_object")))


def test_threaded_and_one_thread_mask_fills_agree(smollm2):
    """Many rows' masks are filled on threads when one thread would be slow; both ways give the same bits."""
    _, tokenizer = smollm2
    from parapeft.engine.grammar import Grammars

    grammars = Grammars(tokenizer, len(tokenizer), rows=8, device=torch.device("cpu"), threads=2)
    prefixes = ['{"name": "Al', '{"name": "Bo", "age": 4', '{"name": "C", "age": 1, "tags": ["x"', "", '{"na']
    matchers = []
    for prefix in prefixes:
        matcher = grammars.matcher(schema_format(PERSON))
        for token in tokenizer(prefix, add_special_tokens=False).input_ids:
            assert matcher.accept_token(token)
        matchers.append(matcher)
    batch = [matchers[0], None, matchers[1], matchers[2], None, matchers[3], matchers[4]]
    one_thread = grammars.bitmask(batch, torch.device("cpu")).mask.clone()
    grammars._row_cost = 1.0  # as if a row took a second: the threaded fill
    threaded = grammars.bitmask(batch, torch.device("cpu"))
    assert threaded.rows == [0, 2, 3, 5, 6]
    assert torch.equal(threaded.mask[threaded.rows], one_thread[threaded.rows])
    assert len({tuple(one_thread[i].tolist()) for i in threaded.rows}) == 5  # the states differ, so do the masks
