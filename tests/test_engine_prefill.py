"""The packed prefill against ParaModel run per prompt: vectors, keys and values, last logits; and the paged
cache against contiguous attention and its block bookkeeping."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from transformers import DynamicCache

from parapeft import BASE_ADAPTER, ParaConfig, get_para_model
from parapeft.engine import Engine, SamplingParams
from parapeft.engine.batch import PrefillBucket, attention_groups
from parapeft.engine.block_manager import BlockManager, OutOfBlocks
from parapeft.engine.executor import SUPPORTED
from parapeft.engine.graphs import PrefillGraphs
from test_engine import peft_lora, prompts
from tiny_models import randomize_adapter, tiny_model


def every_pooler_para(arch):
    para = get_para_model(tiny_model(arch), ParaConfig(r=4, pooler="mean"), adapter_name="mean")
    para.add_adapter("last", ParaConfig(r=3, pooler="last", activation="gelu"))
    para.add_adapter("max", ParaConfig(r=5, pooler="max", targets=["v", "up"]))
    para.add_adapter("attn", ParaConfig(r=2, pooler="attention", activation="relu", layers_to_transform=[1]))
    for seed, name in enumerate(para.peft_config):
        randomize_adapter(para, name, seed + 10)
    return para.eval()


def prefill_once(engine: Engine, requests):
    """Run the scheduler and one packed prefill of everything it admits; logits per request."""
    plan = engine.scheduler.schedule()
    assert sorted(r.id for r in plan.prefill) == sorted(r.id for r in requests) and not plan.decode
    engine.cache.flush()
    ordered = sorted(plan.prefill, key=lambda r: -len(r.prefill_tokens()))
    logits, _ = engine._prefill(ordered)
    return {r.id: row for r, row in zip(ordered, logits)}


def cached(engine: Engine, request, layer: int):
    """The request's keys and values as [kv_heads, length, head_dim], read back through its block table."""
    n, size = len(request.prompt), engine.cache.block_size
    blocks = torch.tensor(request.blocks)
    keys = engine.cache.keys[layer][blocks].permute(1, 0, 2, 3).reshape(engine.cache.keys.shape[2], -1,
                                                                        engine.cache.keys.shape[-1])
    values = engine.cache.values[layer][blocks].permute(1, 0, 2, 3).reshape(keys.shape)
    return keys[:, :n], values[:, :n]


@pytest.mark.parametrize("arch", SUPPORTED)
def test_packed_prefill_equals_paramodel_per_prompt(arch, tmp_path):
    para = every_pooler_para(arch)
    lora = peft_lora(arch, tmp_path / "lora", rank=3, seed=2, targets=("q_proj", "k_proj", "v_proj", "up_proj"))
    merged = lora.merge_and_unload().eval()
    batch = prompts([7, 23, 3, 12, 16, 9, 1], seed=5)
    names = ["mean", "last", "max", "attn", "lo", BASE_ADAPTER, "mean"]
    engine = Engine(para, max_seqs=8, max_len=64, block_size=4)
    engine.load_adapter("lo", tmp_path / "lora")
    requests = [engine.submit(p, n, SamplingParams(max_tokens=2)) for p, n in zip(batch, names)]
    logits = prefill_once(engine, requests)
    for request in requests:
        ids = torch.tensor([request.prompt])
        cache = DynamicCache(config=para.base_model.config)
        with torch.no_grad():
            if request.adapter == "lo":
                out = merged(input_ids=ids, past_key_values=cache, use_cache=True)
                vectors = [None] * len(engine.executor.layers)
            else:
                out = para(input_ids=ids, adapter_names=[request.adapter], past_key_values=cache, use_cache=True)
                vectors = para.last_vectors() if request.adapter != BASE_ADAPTER else [None] * len(engine.executor.layers)
        torch.testing.assert_close(logits[request.id], out.logits[0, -1], atol=2e-5, rtol=1e-4)
        for layer, layer_vectors in enumerate(vectors):
            for target, buffer in engine.para.scale_buffers.items():
                got = buffer[layer, request.row]
                want = layer_vectors[target][0] if layer_vectors and target in layer_vectors else torch.ones_like(got)
                torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5, msg=f"{request.adapter} {layer} {target}")
            keys, values = cached(engine, request, layer)
            torch.testing.assert_close(keys, out.past_key_values.layers[layer].keys[0], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(values, out.past_key_values.layers[layer].values[0], atol=1e-5, rtol=1e-4)


def test_the_order_of_prompts_in_a_pass_changes_nothing():
    para = every_pooler_para("llama")
    batch = prompts([9, 4, 14, 6], seed=8)
    names = ["attn", BASE_ADAPTER, "max", "last"]
    results = []
    for order in itertools.islice(itertools.permutations(range(4)), 0, 24, 5):
        engine = Engine(para, max_seqs=4, max_len=32)
        requests = {i: engine.submit(batch[i], names[i], SamplingParams(max_tokens=1)) for i in order}
        logits = prefill_once(engine, list(requests.values()))
        results.append(torch.stack([logits[requests[i].id] for i in range(4)]))
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], atol=1e-5, rtol=1e-5)


def padded_pass_equals_the_exact_pass(fused: bool, tmp: Path) -> None:
    """A pass padded to a CUDA-graph bucket (padding tokens and prompts, LoRA's padding tiles) gives the exact
    pass's logits, keys, values and PARA multipliers, and writes nothing outside its own rows and blocks but
    the scratch row and block, whose multipliers stay exactly one. (The graphs replay on a GPU: engine_check.py.)"""
    para = every_pooler_para("llama")
    peft_lora("llama", tmp / "lora", rank=3, seed=2, targets=("q_proj", "v_proj", "up_proj"))
    names = ["mean", "lo", "last", BASE_ADAPTER, "max"] + ([] if fused else ["attn"])  # attention pooling: PyTorch
    texts = prompts([13, 17, 9, 4, 21, 6][:len(names)], seed=12)
    results = []
    for bucket in (None, PrefillBucket(tokens=96, prompts=9)):
        engine = Engine(para, max_seqs=8, max_len=48, block_size=4, fused_kernels=fused)
        engine.load_adapter("lo", tmp / "lora")
        earlier = engine.submit(prompts([11], seed=3)[0], "mean", SamplingParams(max_tokens=8))
        engine.step()
        keys, values = engine.cache.keys.clone(), engine.cache.values.clone()
        multipliers = engine.para.multipliers.clone()
        requests = [engine.submit(p, n, SamplingParams(max_tokens=2)) for p, n in zip(texts, names)]
        plan = engine.scheduler.schedule()
        engine.cache.flush()
        ordered = sorted(plan.prefill, key=lambda r: -len(r.prefill_tokens()))
        batch = engine._prefill_batch(ordered, bucket)
        if bucket is not None:
            assert batch.tokens == 96 and len(batch.rows_host) == 9 and batch.tiles.shape[0] == bucket.tiles
        logits = engine.executor.prefill(batch)[:batch.prompts]
        scratch = engine.cache.scratch_row
        assert torch.equal(engine.para.multipliers[:, scratch], torch.ones_like(engine.para.multipliers[:, scratch]))
        mine = {b for r in requests for b in r.blocks} | {engine.cache.scratch_block}
        others = [b for b in range(engine.cache.num_blocks) if b not in mine]
        for now, before in ((engine.cache.keys, keys), (engine.cache.values, values)):  # bitwise: unwritten
            assert torch.equal(now[:, others].view(torch.int32), before[:, others].view(torch.int32))  # memory may be NaN
        untouched = [row for row in range(scratch) if row not in {r.row for r in requests}]
        assert earlier.row in untouched
        assert torch.equal(engine.para.multipliers[:, untouched], multipliers[:, untouched])
        by_id = {r.id: row for r, row in zip(ordered, logits)}
        results.append({
            "logits": torch.stack([by_id[r.id] for r in requests]),
            "multipliers": engine.para.multipliers[:, [r.row for r in requests]],
            "cache": [cached(engine, r, layer) for r in requests for layer in range(len(engine.executor.layers))],
            "lengths": engine.cache.seq_lens[[r.row for r in requests]]})
    exact, padded = results
    torch.testing.assert_close(padded["logits"], exact["logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded["multipliers"], exact["multipliers"], atol=1e-6, rtol=1e-6)
    assert torch.equal(padded["lengths"], exact["lengths"])
    for (k1, v1), (k2, v2) in zip(padded["cache"], exact["cache"]):
        torch.testing.assert_close(k1, k2, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(v1, v2, atol=1e-5, rtol=1e-5)


def template_pass_touches_only_scratch(fused: bool, tmp: Path) -> None:
    """The passes a prefill graph is recorded from (Engine.capture_graphs: bare, PARA, LoRA and both) write
    nothing but the scratch row and block, whose multipliers stay exactly one, while other sequences run."""
    para = every_pooler_para("qwen3")
    peft_lora("qwen3", tmp / "lora", rank=3, seed=2, targets=("q_proj", "k_proj", "down_proj"))
    engine = Engine(para, max_seqs=2, max_len=40, block_size=4, fused_kernels=fused)  # every row running
    engine.load_adapter("lo", tmp / "lora")
    running = [engine.submit(p, n, SamplingParams(max_tokens=6)) for p, n in zip(prompts([9, 14], seed=4), ["mean", "max"])]
    engine.step()
    keys, values, multipliers = engine.cache.keys.clone(), engine.cache.values.clone(), engine.para.multipliers.clone()
    lengths = engine.cache.seq_lens.clone()
    assert engine.para.reserve_tables() and engine.lora.reserve_tables() == fused  # LoRA's template: its tiles
    kinds = [engine.para, engine.lora] if fused else [engine.para]
    for mix in ([], [engine.para], kinds[1:], kinds):
        engine.executor.prefill(engine._template_batch(PrefillBucket(tokens=64, prompts=3), mix))
    scratch, others = engine.cache.scratch_row, list(range(engine.cache.num_blocks))
    assert torch.equal(engine.para.multipliers[:, scratch], torch.ones_like(engine.para.multipliers[:, scratch]))
    assert torch.equal(engine.para.multipliers[:, :scratch], multipliers[:, :scratch])
    assert torch.equal(engine.cache.seq_lens[:scratch], lengths[:scratch])
    for now, before in ((engine.cache.keys, keys), (engine.cache.values, values)):
        assert torch.equal(now[:, others].view(torch.int32), before[:, others].view(torch.int32))
    engine.cache.seq_lens[scratch] = 0
    engine.run_until_done()
    assert all(len(r.tokens) == 6 for r in running)


def test_the_template_pass_of_a_prefill_graph_touches_only_scratch(tmp_path):
    template_pass_touches_only_scratch(fused=False, tmp=tmp_path)


def test_a_pass_padded_to_a_graph_bucket_equals_the_exact_pass(tmp_path):
    padded_pass_equals_the_exact_pass(fused=False, tmp=tmp_path)


def test_prefill_buckets_keep_padding_small_and_refuse_what_does_not_fit():
    engine = Engine(every_pooler_para("llama"), max_seqs=8, max_len=64)
    graphs = PrefillGraphs(engine.executor, max_tokens=4096, max_prompts=8)
    for tokens in range(1, 4097, 37):
        bucket = graphs.bucket(tokens, 2)
        assert bucket.tokens >= tokens and bucket.tokens - tokens < (128 if tokens <= 1024 else 256)
        assert bucket.tiles >= -(-tokens // 64) + 2  # room for every real prompt's partial tile
    assert graphs.bucket(4097, 1) is None  # longer passes run eagerly
    assert graphs.bucket(128, 8) is not None and graphs.bucket(128, 9) is None  # one padding prompt always
    assert PrefillGraphs(engine.executor, max_tokens=1000, max_prompts=8).buckets[-1].tokens == 896
    # the PyTorch operations' passes are never graphed; a pass without adapters of a kind is, for that kind
    assert engine.para.graphable([None, None]) and not engine.para.graphable(["mean", None])
    assert engine.lora.graphable([None]) and not engine.lora.graphable(["lo"])


def test_attention_groups_cover_every_token_once_and_bound_padding():
    lengths = [40, 38, 20, 19, 18, 3, 1]
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    groups = attention_groups(lengths, starts, torch.device("cpu"))
    assert len(groups) > 1 and groups[0].start == 0 and groups[-1].end == sum(lengths)
    for before, after in zip(groups, groups[1:]):
        assert before.end == after.start
    for group in groups:
        prompts_in, longest = group.pad_index.shape
        real = group.end - group.start
        assert group.out_index.shape[0] == real
        assert prompts_in == 1 or prompts_in * longest <= 1.5 * real
        # the padded layout's real positions hold the group's tokens, in packed order
        assert torch.equal(group.pad_index.reshape(-1)[group.out_index], torch.arange(group.start, group.end))


def test_paged_attention_equals_contiguous_attention_for_a_decoding_batch():
    """Decode logits read through scattered blocks equal a forward over each whole sequence."""
    para = every_pooler_para("qwen2")
    engine = Engine(para, max_seqs=6, max_len=64, block_size=3)
    batch = prompts([5, 11, 8, 2], seed=9)
    names = ["mean", "max", BASE_ADAPTER, "last"]
    requests = [engine.submit(p, n, SamplingParams(max_tokens=7, ignore_eos=True, top_logprobs=5))
                for p, n in zip(batch, names)]
    engine.run_until_done()
    for request in requests:
        full = torch.tensor([request.prompt + request.tokens])
        mask = torch.tensor([[1] * len(request.prompt) + [0] * len(request.tokens)])
        with torch.no_grad():
            logits = para(input_ids=full, prompt_mask=mask, adapter_names=[request.adapter]).logits[0]
        logprobs = torch.log_softmax(logits[len(request.prompt) - 1:-1], -1)
        expected = logprobs.gather(1, torch.tensor(request.tokens)[:, None])[:, 0]
        torch.testing.assert_close(torch.tensor(request.logprobs, dtype=torch.float32), expected, atol=1e-4, rtol=1e-4)


def test_blocks_are_handed_out_grown_and_all_returned():
    manager = BlockManager(num_blocks=5, block_size=4)
    first, second = [], []
    assert manager.grow(first, 6) == [(0, 0), (1, 1)] and manager.free == 3
    assert manager.grow(first, 8) == []  # still fits in two blocks
    manager.grow(second, 9)
    assert not manager.can_hold(13, len(second)) and manager.can_hold(12, len(second))
    with pytest.raises(OutOfBlocks):
        manager.grow(second, 13)
    manager.release(first)
    assert first == [] and manager.free == 2 and not manager.all_free()
    manager.release(second)
    assert manager.all_free()
