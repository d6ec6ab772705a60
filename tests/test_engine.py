"""The engine against ParaModel.generate: same tokens for every request, however the batch is mixed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from parapeft import BASE_ADAPTER, AdapterLoadError, ParaConfig, ParaModel, get_para_model
from parapeft.engine import Engine, EngineError, SamplingParams
from parapeft.engine.decoder import SUPPORTED
from tiny_models import VOCAB, randomize_adapter, tiny_model

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


@pytest.mark.parametrize("arch", SUPPORTED)
def test_mixed_batch_with_requests_joining_mid_flight_matches_each_request_alone(arch):
    para = tiny_para(arch)
    batch = prompts([5, 9, 7, 6, 8, 4])
    adapters = ["a", "b", BASE_ADAPTER, "a", "b", BASE_ADAPTER]
    expected = [reference(para, p, a, 10) for p, a in zip(batch, adapters)]
    engine = Engine(para, slots=3, max_len=64)  # fewer slots than requests: later ones join mid-flight
    requests = [engine.submit(p, a, SamplingParams(max_tokens=10)) for p, a in zip(batch, adapters)]
    engine.run_until_done()
    assert [r.tokens for r in requests] == expected
    assert all(r.finish_reason in ("stop", "length") for r in requests)
    assert sorted(engine.free_slots) == [0, 1, 2]
    assert engine.peak_batch[1] == 2 and engine.peak_batch[0] >= 2  # "a" and "b" decoded in one step


def test_a_request_gets_the_same_tokens_alone_and_when_others_join_later():
    para = tiny_para("llama")
    first, *others = prompts([6, 5, 9, 7])
    alone = Engine(para, slots=4, max_len=64)
    solo = alone.submit(first, "a", SamplingParams(max_tokens=12, ignore_eos=True))
    alone.run_until_done()
    busy = Engine(para, slots=4, max_len=64)
    shared = busy.submit(first, "a", SamplingParams(max_tokens=12, ignore_eos=True))
    busy.step()
    busy.step()
    for prompt, adapter in zip(others, ["b", BASE_ADAPTER, "a"]):
        busy.submit(prompt, adapter, SamplingParams(max_tokens=5))
        busy.step()
    busy.run_until_done()
    assert shared.tokens == solo.tokens and len(solo.tokens) == 12


def test_greedy_logprobs_are_those_of_the_reference_forward():
    para = tiny_para("qwen3")
    prompt = prompts([7])[0]
    engine = Engine(para, slots=1, max_len=64)
    request = engine.submit(prompt, "b", SamplingParams(max_tokens=6, ignore_eos=True))
    engine.run_until_done()
    full = torch.tensor([prompt + request.tokens])
    prompt_mask = torch.tensor([[1] * len(prompt) + [0] * len(request.tokens)])
    with torch.no_grad():
        logits = para(input_ids=full, prompt_mask=prompt_mask, adapter_names=["b"]).logits[0, len(prompt) - 1 : -1]
    expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(request.tokens)[:, None])[:, 0]
    torch.testing.assert_close(torch.tensor(request.logprobs), expected, atol=1e-4, rtol=1e-4)


def test_seeded_sampling_is_reproducible_and_differs_across_seeds():
    para = tiny_para("mistral")
    prompt = prompts([6])[0]
    runs = []
    for seed in (7, 7, 8):
        engine = Engine(para, slots=2, max_len=64)
        request = engine.submit(prompt, "a", SamplingParams(max_tokens=16, temperature=1.0, top_p=0.9, top_k=40,
                                                             seed=seed, ignore_eos=True))
        engine.run_until_done()
        runs.append(request.tokens)
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_cancellation_frees_the_slot_for_the_next_request():
    para = tiny_para("llama")
    first, second = prompts([5, 6])
    engine = Engine(para, slots=1, max_len=64)
    long_request = engine.submit(first, "a", SamplingParams(max_tokens=50, ignore_eos=True))
    waiting = engine.submit(second, "b", SamplingParams(max_tokens=3, ignore_eos=True))
    engine.step()
    assert long_request.slot == 0 and waiting.slot is None
    engine.cancel(long_request)
    assert long_request.finish_reason == "cancelled" and engine.free_slots == [0]
    engine.run_until_done()
    assert len(waiting.tokens) == 3 and len(long_request.tokens) == 1


@pytest.mark.parametrize(
    "prompt, adapter, params, message",
    [
        ([], "a", SamplingParams(), "empty"),
        ([5] * 60, "a", SamplingParams(max_tokens=10), "exceeds the context of 64"),
        ([5, 6], "nope", SamplingParams(max_tokens=4), "unknown adapter 'nope'"),
        ([5, 6], "a", SamplingParams(temperature=-1), "temperature"),
        ([5, 6], "a", SamplingParams(top_p=0), "top_p"),
        ([5, 6], "a", SamplingParams(max_tokens=0), "max_tokens"),
    ],
)
def test_bad_requests_are_refused_and_the_engine_keeps_serving(prompt, adapter, params, message):
    para = tiny_para("llama")
    engine = Engine(para, slots=2, max_len=64)
    good = engine.submit(prompts([5])[0], "a", SamplingParams(max_tokens=4, ignore_eos=True))
    with pytest.raises(EngineError, match=message):
        engine.submit(prompt, adapter, params)
    engine.run_until_done()
    assert len(good.tokens) == 4


def test_unsupported_architecture_is_refused():
    with pytest.raises(ValueError, match="the engine runs llama, mistral, qwen2, qwen3"):
        Engine(tiny_para("gemma2"), slots=1, max_len=32)


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
        engine = Engine(para, slots=2, max_len=128)
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
    engine = Engine(para, slots=1, max_len=64, device_adapters=1)  # one adapter on the device at a time
    engine.adapters.register("c", tmp_path / "c")
    assert list(engine.adapters.attached) == ["b"] and set(engine.adapters.names()) == {"a", "b", "c"}
    requests = [engine.submit(p, a, SamplingParams(max_tokens=6, ignore_eos=True)) for p, a in zip(batch, order)]
    engine.run_until_done()
    assert engine.adapters.loads == 4 and engine.adapters.evictions >= 4  # every request swapped adapters
    roomy = Engine(tiny_para("llama"), slots=4, max_len=64)
    roomy.adapters.register("c", tmp_path / "c")
    for prompt, name, request in zip(batch, order, requests):
        alone = roomy.submit(prompt, name, SamplingParams(max_tokens=6, ignore_eos=True))
        roomy.run_until_done()
        assert request.tokens == alone.tokens, name


def test_registering_a_bad_adapter_is_refused_and_changes_nothing(tmp_path):
    para = tiny_para("llama")
    engine = Engine(para, slots=1, max_len=64)
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(AdapterLoadError, match="no adapter_model.safetensors"):
        engine.adapters.register("bad", tmp_path)
    with pytest.raises(ValueError, match="already loaded"):
        engine.adapters.register("a", tmp_path)
    assert set(engine.adapters.names()) == {"a", "b"} and set(para.peft_config) == {"a", "b"}


def test_static_length_step_used_by_cuda_graphs_equals_the_dynamic_step():
    para = tiny_para("qwen2")
    engine = Engine(para, slots=3, max_len=48)
    requests = [engine.submit(p, a, SamplingParams(max_tokens=4, ignore_eos=True)) for p, a in
                zip(prompts([5, 9, 7]), ["a", "b", BASE_ADAPTER])]
    engine.step()  # prefill all three
    slots = torch.tensor([r.slot for r in requests])
    tokens = torch.tensor([r.tokens[-1] for r in requests])
    positions = torch.tensor([len(r.prompt) for r in requests])
    keys = engine.decoder.keys.clone()
    dynamic = engine.decoder.step(slots, tokens, positions)
    engine.decoder.keys.copy_(keys)
    static = engine.decoder.step(slots, tokens, positions, length=engine.decoder.max_len)
    torch.testing.assert_close(static, dynamic, atol=1e-5, rtol=1e-5)
    with pytest.raises(EngineError, match="CUDA graphs need"):
        Engine(para, slots=1, max_len=32, cuda_graphs=True)


def peft_lora(arch, directory, rank, seed):
    """A peft LoRA adapter on q and v with random (non-zero) B, saved to ``directory``."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_model(arch), LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"]))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=g) * 0.3)
    model.save_pretrained(directory)
    return model


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_lora_mode_equals_peft_merged_and_mixes_with_para_rows(arch, tmp_path):
    lora = peft_lora(arch, tmp_path / "lora", rank=4, seed=5)
    merged = lora.merge_and_unload().eval()
    para = tiny_para(arch)
    engine = Engine(para, slots=3, max_len=64, lora_rank=8)
    engine.register_lora("lo", tmp_path / "lora")
    batch = prompts([6, 8, 5, 7, 9])
    names = ["lo", "a", BASE_ADAPTER, "lo", "b"]
    requests = [engine.submit(p, n, SamplingParams(max_tokens=8, ignore_eos=True)) for p, n in zip(batch, names)]
    engine.run_until_done()
    for prompt, name, request in zip(batch, names, requests):
        if name == "lo":
            out = merged.generate(input_ids=torch.tensor([prompt]), max_new_tokens=8, min_new_tokens=8, do_sample=False,
                                  pad_token_id=0)
            expected = out[0, len(prompt):].tolist()
        else:
            solo = Engine(para, slots=1, max_len=64)
            alone = solo.submit(prompt, name, SamplingParams(max_tokens=8, ignore_eos=True))
            solo.run_until_done()
            expected = alone.tokens
        assert request.tokens == expected, name


def test_lora_mode_refuses_what_it_cannot_serve(tmp_path):
    peft_lora("llama", tmp_path / "wide", rank=8, seed=1)
    para = tiny_para("llama")
    with pytest.raises(EngineError, match="no LoRA mode"):
        Engine(para, slots=1, max_len=32).register_lora("x", tmp_path / "wide")
    engine = Engine(para, slots=1, max_len=32, lora_rank=4)
    with pytest.raises(EngineError, match="rank above the engine's maximum 4"):
        engine.register_lora("x", tmp_path / "wide")
    with pytest.raises(EngineError, match="already loaded"):
        engine.register_lora("a", tmp_path / "wide")
    with pytest.raises(AdapterLoadError, match="not a plain LoRA adapter"):
        engine.register_lora("y", ADAPTERS / "copa")


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_small_batches_gather_slots_and_large_ones_attend_in_place_with_the_same_result(arch):
    """A row's logits do not depend on which attention path its batch takes, nor on the compiled step."""
    para = tiny_para(arch)
    engine = Engine(para, slots=6, max_len=48)
    requests = [engine.submit(p, a, SamplingParams(max_tokens=4, ignore_eos=True)) for p, a in
                zip(prompts([5, 9, 7, 4, 6, 8]), ["a", "b", BASE_ADAPTER, "a", "b", "a"])]
    engine.step()  # prefill all six
    slots = torch.tensor([r.slot for r in requests])
    tokens = torch.tensor([r.tokens[-1] for r in requests])
    positions = torch.tensor([len(r.prompt) for r in requests])
    keys, values = engine.decoder.keys.clone(), engine.decoder.values.clone()
    whole = engine.decoder.step(slots, tokens, positions)  # 6 rows of 7 slots: in place
    for pick in ([1], [4, 0]):  # under half the slots: gathered
        engine.decoder.keys.copy_(keys)
        engine.decoder.values.copy_(values)
        part = engine.decoder.step(slots[pick], tokens[pick], positions[pick])
        torch.testing.assert_close(part, whole[pick], atol=1e-5, rtol=1e-5)
    engine.decoder.keys.copy_(keys)
    engine.decoder.values.copy_(values)
    compiled = torch.compile(engine.decoder.step, fullgraph=True, dynamic=False)
    torch.testing.assert_close(compiled(slots, tokens, positions, length=48), whole, atol=1e-4, rtol=1e-4)


def test_a_burst_of_arrivals_is_prefilled_over_several_steps_with_the_same_tokens():
    para = tiny_para("llama")
    batch = prompts([5, 6, 4, 7])
    adapters = ["a", "b", BASE_ADAPTER, "a"]
    engine = Engine(para, slots=4, max_len=64, prefill_tokens_per_step=11)
    requests = [engine.submit(p, a, SamplingParams(max_tokens=6, ignore_eos=True)) for p, a in zip(batch, adapters)]
    engine.step()
    assert [r.slot is not None for r in requests] == [True, True, False, False]  # 5 + 6 tokens fit, 4 more do not
    engine.step()
    assert all(r.slot is not None for r in requests[2:])  # 4 + 7 tokens: the rest join one step later
    assert len(requests[0].tokens) == 2  # the first ones kept decoding meanwhile
    engine.run_until_done()
    assert [r.tokens for r in requests] == [reference(para, p, a, 6) for p, a in zip(batch, adapters)]
