"""The engine against ParaModel.generate: same tokens for every request, however the batch is mixed, whatever
joins, finishes, is cancelled, preempted or evicted meanwhile."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from parapeft import BASE_ADAPTER, AdapterLoadError, ParaConfig, ParaModel, get_para_model
from parapeft.engine import (AdapterExists, AdapterInUse, BadRequest, ConfigError, Engine, EngineConfig,
                             SamplingParams, UnknownAdapter)
from parapeft.engine.executor import SUPPORTED
from tiny_models import VOCAB, randomize_adapter, save_random_lora, tiny_model

ADAPTERS = Path(__file__).resolve().parents[1] / "adapters" / "smollm2-135m"


def tiny_para(arch):
    para = get_para_model(tiny_model(arch), ParaConfig(r=4), adapter_name="a")
    para.add_adapter("b", ParaConfig(r=3, pooler="attention", targets=["q", "up"]))
    randomize_adapter(para, "a", 1)
    randomize_adapter(para, "b", 2)
    return para.eval()


def prompts(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in lengths]


def reference(para, prompt, adapter, max_tokens):
    """ParaModel.generate for the request alone: greedy, stopping at eos like the engine."""
    out = para.generate(input_ids=torch.tensor([prompt]), adapter_names=[adapter], max_new_tokens=max_tokens,
                        do_sample=False, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def greedy(n, **extra):
    return SamplingParams(max_tokens=n, ignore_eos=True, **extra)


def peft_lora(arch, directory, rank, seed, targets=("q_proj", "v_proj")):
    """A peft LoRA adapter on a tiny model with random (non-zero) B, saved to ``directory``."""
    return save_random_lora(tiny_model(arch), directory, rank, seed, scale=0.3, targets=targets)


@pytest.mark.parametrize("arch", SUPPORTED)
def test_mixed_batch_with_requests_joining_mid_flight_matches_each_request_alone(arch):
    para = tiny_para(arch)
    batch = prompts([5, 9, 7, 6, 8, 4])
    adapters = ["a", "b", BASE_ADAPTER, "a", "b", BASE_ADAPTER]
    expected = [reference(para, p, a, 10) for p, a in zip(batch, adapters)]
    engine = Engine(para, max_seqs=3, max_len=64)  # fewer rows than requests: later ones join mid-flight
    requests = [engine.submit(p, a, SamplingParams(max_tokens=10)) for p, a in zip(batch, adapters)]
    engine.run_until_done()
    assert [(r.finish_reason, r.error) for r in requests if r.finish_reason not in ("stop", "length")] == []
    assert [r.tokens for r in requests] == expected
    assert sorted(engine.free_rows) == [0, 1, 2] and engine.blocks.all_free()
    assert engine.peak_batch[1] == 2 and engine.peak_batch[0] >= 2  # "a" and "b" decoded in one step


def test_a_request_gets_the_same_tokens_alone_and_when_others_join_later():
    para = tiny_para("llama")
    first, *others = prompts([6, 5, 9, 7])
    alone = Engine(para, max_seqs=4, max_len=64)
    solo = alone.submit(first, "a", greedy(12))
    alone.run_until_done()
    busy = Engine(para, max_seqs=4, max_len=64)
    shared = busy.submit(first, "a", greedy(12))
    busy.step()
    busy.step()
    for prompt, adapter in zip(others, ["b", BASE_ADAPTER, "a"]):
        busy.submit(prompt, adapter, greedy(5))
        busy.step()
    busy.run_until_done()
    assert shared.tokens == solo.tokens and len(solo.tokens) == 12


def test_greedy_logprobs_are_those_of_the_reference_forward():
    para = tiny_para("qwen3")
    prompt = prompts([7])[0]
    engine = Engine(para, max_seqs=1, max_len=64)
    request = engine.submit(prompt, "b", greedy(6, top_logprobs=3))
    engine.run_until_done()
    full = torch.tensor([prompt + request.tokens])
    prompt_mask = torch.tensor([[1] * len(prompt) + [0] * len(request.tokens)])
    with torch.no_grad():
        logits = para(input_ids=full, prompt_mask=prompt_mask, adapter_names=["b"]).logits[0, len(prompt) - 1 : -1]
    logprobs = torch.log_softmax(logits, -1)
    expected = logprobs.gather(-1, torch.tensor(request.tokens)[:, None])[:, 0]
    torch.testing.assert_close(torch.tensor(request.logprobs, dtype=torch.float32), expected, atol=1e-4, rtol=1e-4)
    top = logprobs.topk(3, dim=-1)
    assert [[i for i, _ in step] for step in request.top_logprobs] == top.indices.tolist()
    torch.testing.assert_close(torch.tensor([[p for _, p in step] for step in request.top_logprobs],
                                            dtype=torch.float32), top.values, atol=1e-4, rtol=1e-4)


def test_seeded_sampling_is_reproducible_and_differs_across_seeds():
    para = tiny_para("mistral")
    prompt = prompts([6])[0]
    runs = []
    for seed in (7, 7, 8, 7 + 2 ** 63, 2 ** 64 - 1):  # seeds span [0, 2^64): the top bit makes another stream
        engine = Engine(para, max_seqs=2, max_len=64)
        request = engine.submit(prompt, "a", greedy(16, temperature=1.0, top_p=0.9, top_k=40, seed=seed))
        engine.run_until_done()
        runs.append(request.tokens)
    assert runs[0] == runs[1] and len({tuple(run) for run in runs}) == 4


def test_a_seeded_request_draws_the_same_tokens_alone_and_in_a_full_batch():
    para = tiny_para("llama")
    target = prompts([7], seed=3)[0]
    params = greedy(14, temperature=0.9, top_p=0.95, seed=42)
    alone = Engine(para, max_seqs=8, max_len=64)
    solo = alone.submit(target, "a", params)
    alone.run_until_done()
    crowded = Engine(para, max_seqs=8, max_len=64, seed=5)
    others = [crowded.submit(p, n, greedy(14, temperature=1.3, top_k=20)) for p, n in
              zip(prompts([5, 8, 6, 9, 4, 7, 5]), ["b", "a", BASE_ADAPTER, "b", "a", BASE_ADAPTER, "b"])]
    mine = crowded.submit(target, "a", params)
    crowded.run_until_done()
    assert mine.tokens == solo.tokens and len({tuple(o.tokens) for o in others}) > 1


def test_cancellation_frees_the_row_and_blocks_for_the_next_request():
    para = tiny_para("llama")
    first, second = prompts([5, 6])
    engine = Engine(para, max_seqs=1, max_len=64)
    long_request = engine.submit(first, "a", greedy(50))
    waiting = engine.submit(second, "b", SamplingParams(max_tokens=3))
    engine.step()
    assert long_request.row == 0 and waiting.row is None
    engine.cancel(long_request)
    assert long_request.finish_reason == "cancelled" and engine.free_rows == [0] and engine.blocks.all_free()
    engine.run_until_done()
    assert len(long_request.tokens) == 1
    assert waiting.tokens == reference(para, second, "b", 3)


@pytest.mark.parametrize(
    "prompt, adapter, params, error, message",
    [
        ([], "a", SamplingParams(), BadRequest, "empty"),
        ([5] * 60, "a", SamplingParams(max_tokens=10), BadRequest, "exceeds the context of 64"),
        ([5, 6], "nope", SamplingParams(max_tokens=4), UnknownAdapter, "unknown adapter 'nope'"),
        ([5, VOCAB], "a", SamplingParams(max_tokens=4), BadRequest, "token ids"),
        ([5, 6], "a", SamplingParams(temperature=-1), BadRequest, "temperature"),
        ([5, 6], "a", SamplingParams(temperature=float("nan")), BadRequest, "temperature"),
        ([5, 6], "a", SamplingParams(top_p=0), BadRequest, "top_p"),
        ([5, 6], "a", SamplingParams(max_tokens=0), BadRequest, "max_tokens"),
        ([5, 6], "a", SamplingParams(top_logprobs=21), BadRequest, "top_logprobs"),
        ([5, 6], "a", SamplingParams(logit_bias={VOCAB: 1.0}), BadRequest, "logit_bias"),
        ([5, 6], "a", SamplingParams(presence_penalty=3), BadRequest, "presence_penalty"),
    ],
)
def test_bad_requests_are_refused_by_type_and_the_engine_keeps_serving(prompt, adapter, params, error, message):
    para = tiny_para("llama")
    engine = Engine(para, max_seqs=2, max_len=64)
    good = engine.submit(prompts([5])[0], "a", greedy(4))
    with pytest.raises(error, match=message):
        engine.submit(prompt, adapter, params)
    engine.run_until_done()
    assert len(good.tokens) == 4


def test_unsupported_architecture_and_impossible_settings_are_refused():
    with pytest.raises(ConfigError, match="the engine runs llama, mistral, qwen2, qwen3"):
        Engine(tiny_para("gemma2"), max_seqs=1, max_len=32)
    with pytest.raises(ConfigError, match="CUDA graphs need"):
        Engine(tiny_para("llama"), max_seqs=1, max_len=32, cuda_graphs=True)
    with pytest.raises(ConfigError, match="kv_tokens"):
        Engine(tiny_para("llama"), max_len=64, kv_tokens=32)
    with pytest.raises(ConfigError, match="either a config or options"):
        Engine(tiny_para("llama"), EngineConfig(), max_len=64)
    with pytest.raises(ConfigError, match="prefill_graph_tokens"):
        EngineConfig(prefill_graph_tokens=-1)


@pytest.mark.slow
def test_smollm2_with_committed_adapters_matches_paramodel(smollm2):
    model, tokenizer = smollm2
    para = ParaModel.from_pretrained(model, ADAPTERS / "copa", adapter_name="copa")
    try:
        para.load_adapter(ADAPTERS / "boolq", "boolq")
        texts = ["The capital of France is", "Water boils at", "My favourite colour is"]
        adapters = ["copa", "boolq", BASE_ADAPTER]
        encoded = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
        expected = [reference(para, p, a, 12) for p, a in zip(encoded, adapters)]
        engine = Engine(para, max_seqs=2, max_len=128)
        requests = [engine.submit(p, a, SamplingParams(max_tokens=12)) for p, a in zip(encoded, adapters)]
        engine.run_until_done()
        assert [r.tokens for r in requests] == expected
    finally:
        para.unload()


def test_adapters_evicted_to_cpu_and_reloaded_give_the_same_output(tmp_path):
    para = tiny_para("llama")
    extra = get_para_model(tiny_model("llama"), ParaConfig(r=5, pooler="last"), adapter_name="c")
    randomize_adapter(extra, "c", 9)
    extra.save_pretrained(tmp_path / "c")
    batch = prompts([6, 7, 5, 8])
    order = ["a", "b", "c", "a"]
    engine = Engine(para, max_seqs=4, max_len=64, device_adapters=1)  # one PARA adapter on the device at a time
    engine.load_adapter("c", tmp_path / "c")
    requests = []
    for prompt, name in zip(batch, order):  # each prefill needs another adapter; earlier ones keep decoding
        requests.append(engine.submit(prompt, name, greedy(6)))
        engine.step()
    engine.run_until_done()
    assert engine.para.loads == 4 and engine.para.evictions == 3
    roomy = Engine(tiny_para("llama"), max_seqs=4, max_len=64)
    roomy.load_adapter("c", tmp_path / "c")
    for prompt, name, request in zip(batch, order, requests):
        alone = roomy.submit(prompt, name, greedy(6))
        roomy.run_until_done()
        assert request.tokens == alone.tokens, name


def test_registering_a_bad_adapter_is_refused_and_changes_nothing(tmp_path):
    para = tiny_para("llama")
    engine = Engine(para, max_seqs=1, max_len=64)
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "PARA"}')
    with pytest.raises(AdapterLoadError, match="no adapter_model.safetensors"):
        engine.load_adapter("bad", tmp_path)
    with pytest.raises(AdapterExists, match="already loaded"):
        engine.load_adapter("a", tmp_path)
    with pytest.raises(BadRequest, match="invalid adapter name"):
        engine.load_adapter("my.adapter", tmp_path)
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "PROMPT_TUNING"}')
    with pytest.raises(AdapterLoadError, match="PROMPT_TUNING"):
        engine.load_adapter("other", tmp_path)
    assert set(engine.adapter_names()) == {"a", "b"}


def test_adapters_are_unloaded_unless_waiting_requests_still_need_them():
    para = tiny_para("llama")
    engine = Engine(para, max_seqs=1, max_len=64)
    running = engine.submit(prompts([5])[0], "a", SamplingParams(max_tokens=8))
    engine.step()
    queued = engine.submit(prompts([6])[0], "b", greedy(2))
    with pytest.raises(AdapterInUse, match="waiting"):
        engine.unload_adapter("b")
    engine.unload_adapter("a")  # its running request keeps its vectors in its row
    with pytest.raises(UnknownAdapter):
        engine.submit(prompts([4])[0], "a", greedy(2))
    engine.run_until_done()
    assert running.tokens == reference(para, running.prompt, "a", 8) and queued.finish_reason in ("stop", "length")
    with pytest.raises(UnknownAdapter):
        engine.unload_adapter("a")


def test_an_adapter_unloaded_while_its_request_runs_outlives_the_request_s_preemption():
    """Unloaded while its request decodes, then that request is preempted: it goes back to the queue without a
    row, and its prefill again needs the adapter, which must still be there until the request ends."""
    para = tiny_para("llama")
    batch = prompts([20, 20], seed=1)
    roomy = Engine(para, max_seqs=4, max_len=64)  # the tokens of an uncrowded run, nothing unloaded
    expected = [roomy.submit(p, n, greedy(40)) for p, n in zip(batch, [BASE_ADAPTER, "a"])]
    roomy.run_until_done()
    engine = Engine(para, max_seqs=4, max_len=64, kv_tokens=64, block_size=8)  # 8 blocks: two sequences collide
    older = engine.submit(batch[0], BASE_ADAPTER, greedy(40))
    newer = engine.submit(batch[1], "a", greedy(40))  # the newest: preempted when blocks run out
    engine.step()
    engine.unload_adapter("a")
    assert "a" not in engine.adapter_names()
    while not engine.scheduler.preemptions:
        engine.step()
    assert newer.row is None and newer in engine.waiting
    with pytest.raises(UnknownAdapter):  # unloaded already, though its request waits to be prefilled with it again
        engine.unload_adapter("a")
    engine.run_until_done()
    assert [older.tokens, newer.tokens] == [r.tokens for r in expected]
    assert "a" not in engine.para.host and not engine.para.holders and engine.blocks.all_free()


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_lora_adapters_equal_peft_merged_and_share_batches_with_para_and_bare_rows(arch, tmp_path):
    lora = peft_lora(arch, tmp_path / "lora", rank=4, seed=5)
    merged = lora.merge_and_unload().eval()
    wide = peft_lora(arch, tmp_path / "wide", rank=6, seed=6,
                     targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
    wide_merged = wide.merge_and_unload().eval()
    para = tiny_para(arch)
    engine = Engine(para, max_seqs=3, max_len=64)
    assert engine.load_adapter("lo", tmp_path / "lora")["kind"] == "lora"
    engine.load_adapter("wide", tmp_path / "wide")
    batch = prompts([6, 8, 5, 7, 9, 6])
    names = ["lo", "a", BASE_ADAPTER, "wide", "b", "lo"]
    requests = [engine.submit(p, n, SamplingParams(max_tokens=8)) for p, n in zip(batch, names)]
    engine.run_until_done()
    for prompt, name, request in zip(batch, names, requests):
        if name in ("lo", "wide"):
            model = merged if name == "lo" else wide_merged
            out = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=8, do_sample=False, pad_token_id=0)
            expected = out[0, len(prompt):].tolist()
        else:
            expected = reference(para, prompt, name, 8)
        assert request.tokens == expected, name
    assert engine.lora.users == {"lo": 0, "wide": 0}


def test_lora_adapters_the_engine_cannot_serve_are_refused(tmp_path):
    peft_lora("llama", tmp_path / "wide", rank=8, seed=1)
    para = tiny_para("llama")
    with pytest.raises(AdapterLoadError, match="serves no LoRA"):
        Engine(para, max_seqs=1, max_len=32, lora_rank=0).load_adapter("x", tmp_path / "wide")
    engine = Engine(para, max_seqs=1, max_len=32, lora_rank=4)
    with pytest.raises(AdapterLoadError, match="rank 8, above the engine's maximum 4"):
        engine.load_adapter("x", tmp_path / "wide")
    config = (tmp_path / "wide" / "adapter_config.json")
    settings = json.loads(config.read_text())
    config.write_text(json.dumps({**settings, "use_dora": True}))
    with pytest.raises(AdapterLoadError, match="use_dora"):
        Engine(para, max_seqs=1, max_len=32).load_adapter("x", tmp_path / "wide")
    engine = Engine(para, max_seqs=1, max_len=32)
    for field, value in [("r", 0), ("r", "four"), ("r", 2.5), ("lora_alpha", None), ("lora_alpha", "x")]:
        config.write_text(json.dumps({**settings, field: value}))
        for check in (lambda: engine.load_adapter("x", tmp_path / "wide"), lambda: engine.validate_adapter(tmp_path / "wide")):
            with pytest.raises(AdapterLoadError, match=field):  # refused by name (a 400), not a worker failure
                check()


def test_a_burst_of_arrivals_is_prefilled_over_several_steps_with_the_same_tokens():
    para = tiny_para("llama")
    batch = prompts([5, 6, 4, 7])
    adapters = ["a", "b", BASE_ADAPTER, "a"]
    engine = Engine(para, max_seqs=4, max_len=64, max_step_tokens=11)
    requests = [engine.submit(p, a, greedy(6)) for p, a in zip(batch, adapters)]
    engine.step()
    assert [r.row is not None for r in requests] == [True, True, False, False]  # 5 + 6 tokens fit, 4 more do not
    engine.step()
    # 2 decoding rows + 4 + 7 prompt tokens would be 13: only the first of the two joins
    assert [r.row is not None for r in requests] == [True, True, True, False]
    assert len(requests[0].tokens) == 2  # the first ones kept decoding meanwhile
    engine.run_until_done()
    solo = Engine(para, max_seqs=1, max_len=64)
    alone = [solo.submit(p, a, greedy(6)) for p, a in zip(batch, adapters)]
    solo.run_until_done()
    assert [r.tokens for r in requests] == [r.tokens for r in alone]


def test_preempted_sequences_are_recomputed_and_give_the_tokens_they_give_alone():
    """A cache too small for every sequence at once: the newest are preempted, prefilled again with their
    tokens (vectors from the prompt alone) and finish with exactly the tokens of an uncrowded run."""
    para = tiny_para("qwen3")
    batch = prompts([9, 7, 8, 6, 9, 5], seed=4)
    names = ["a", "b", BASE_ADAPTER, "a", "b", "a"]
    params = [greedy(20), greedy(20, temperature=1.0, seed=3), greedy(20),
              greedy(20, temperature=0.8, top_k=30, seed=4, frequency_penalty=0.5), greedy(20), greedy(20)]
    roomy = Engine(para, max_seqs=8, max_len=64)
    expected = [roomy.submit(p, n, s) for p, n, s in zip(batch, names, params)]
    roomy.run_until_done()
    tight = Engine(para, max_seqs=8, max_len=64, kv_tokens=96, block_size=8)  # 12 blocks for 6 × ~28 tokens
    requests = [tight.submit(p, n, s) for p, n, s in zip(batch, names, params)]
    tight.run_until_done()
    assert tight.scheduler.preemptions > 0
    assert [r.tokens for r in requests] == [e.tokens for e in expected]
    assert tight.blocks.all_free()


def test_load_of_hundreds_of_requests_over_many_adapters_completes_and_equals_solo_runs(tmp_path):
    """Random arrivals, lengths, adapters (PARA of every pooler, LoRA, none), sampling and cancellations, on a
    cache that forces preemptions: every request ends right and its tokens equal a solo run's."""
    para = get_para_model(tiny_model("llama"), ParaConfig(r=4), adapter_name="p0")
    randomize_adapter(para, "p0", 0)
    poolers = ["mean", "last", "max", "attention"]
    for index in range(1, 8):
        para.add_adapter(f"p{index}", ParaConfig(r=2 + index % 3, pooler=poolers[index % 4]))
        randomize_adapter(para, f"p{index}", index)
    peft_lora("llama", tmp_path / "l0", rank=3, seed=1)
    peft_lora("llama", tmp_path / "l1", rank=5, seed=2, targets=("q_proj", "up_proj"))
    names = [f"p{i}" for i in range(8)] + ["l0", "l1", BASE_ADAPTER]
    rng = random.Random(0)
    engine = Engine(para, max_seqs=24, max_len=96, kv_tokens=640, block_size=8, device_adapters=3,
                    max_step_tokens=120)
    for lora in ("l0", "l1"):
        engine.load_adapter(lora, tmp_path / lora)
    submitted, cancelled = [], []
    for index in range(240):
        prompt = [rng.randrange(3, VOCAB) for _ in range(rng.randint(3, 30))]
        sampled = index % 3 == 0
        params = greedy(rng.randint(1, 24), temperature=0.9 if sampled else 0.0, seed=index if sampled else None)
        submitted.append(engine.submit(prompt, rng.choice(names), params))
        if index % 5 == 0:
            engine.step()
        if index % 37 == 5:
            victim = rng.choice(submitted)
            engine.cancel(victim)
            cancelled.append(victim)
    engine.run_until_done()
    assert engine.blocks.all_free() and len(engine.free_rows) == 24 and engine.scheduler.preemptions > 0
    assert engine.peak_batch[1] >= 3
    solo = Engine(para, max_seqs=1, max_len=96, device_adapters=3)
    for lora in ("l0", "l1"):
        solo.load_adapter(lora, tmp_path / lora)
    for request in submitted:
        if request in cancelled:
            assert request.finish_reason in ("cancelled", "length")
            continue
        assert request.finish_reason == "length" and len(request.tokens) == request.sampling.max_tokens
        alone = solo.submit(request.prompt, request.adapter, request.sampling)
        solo.run_until_done()
        assert alone.tokens == request.tokens, (request.adapter, request.id)


def test_a_row_whose_logits_are_not_finite_ends_alone_and_the_others_go_on():
    """Whatever made one sequence's numbers blow up (here its PARA multipliers, set to infinity after its
    prefill), only that request ends, with an error; the rest of the batch keeps its tokens."""
    para = tiny_para("llama")
    batch = prompts([6, 7, 5])
    names = ["a", "b", BASE_ADAPTER]
    engine = Engine(para, max_seqs=3, max_len=64)
    requests = [engine.submit(p, n, greedy(8)) for p, n in zip(batch, names)]
    engine.step()
    engine.para.multipliers[:, requests[0].row] = float("inf")
    engine.run_until_done()
    assert requests[0].finish_reason == "error" and "not finite" in requests[0].error
    assert len(requests[0].tokens) == 1
    for request in requests[1:]:
        assert request.finish_reason == "length" and request.tokens == reference(para, request.prompt,
                                                                                  request.adapter, 8)
    assert engine.blocks.all_free()
