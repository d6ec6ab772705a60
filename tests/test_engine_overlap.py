"""Steps launched ahead (``overlap_steps``): the next step is queued before the last one's tokens are taken, and
every request still gets exactly the tokens, log-probabilities and stops of one step at a time, whatever
joins, ends by end of sequence or length, is cancelled or preempted meanwhile."""

from __future__ import annotations

import random

import pytest
import torch

from parapeft import BASE_ADAPTER
from parapeft.engine import Engine, SamplingParams
from test_engine import tiny_para
from tiny_models import VOCAB, save_random_lora, tiny_model


def prompts(count, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, VOCAB, (int(torch.randint(4, 12, (1,), generator=g)),), generator=g).tolist()
            for _ in range(count)]


def drive(engine: Engine, arrivals: dict[int, list[tuple]] | None = None, cancel_at: dict[int, int] | None = None):
    """Run the engine as the service does (the next step launched ahead where it can), submitting
    ``arrivals[i]`` before iteration i and cancelling request ``cancel_at[i]`` (an index into the submitted
    ones) between launching ahead and taking the last step's results. Returns the requests in submission order."""
    arrivals, cancel_at = arrivals or {}, cancel_at or {}
    submitted, pending, i = [], None, 0
    while True:
        for args in arrivals.get(i, []):
            submitted.append(engine.submit(*args))
        if not (engine.waiting or engine.running or pending is not None or any(k > i for k in arrivals)):
            return submitted
        ahead = engine.launch_ahead(pending)
        if i in cancel_at:
            engine.cancel(submitted[cancel_at[i]])
        engine.finish(pending)
        pending = ahead if ahead is not None else (engine.launch() if engine.waiting or engine.running else None)
        i += 1


def assert_same(got, expected):
    """Tokens and stops exactly; log-probabilities to 1e-4 (rows batched differently round differently)."""
    assert [(r.tokens, r.finish_reason) for r in got] == [(r.tokens, r.finish_reason) for r in expected]
    for mine, theirs in zip(got, expected):
        assert mine.logprobs == pytest.approx(theirs.logprobs, abs=1e-4)


def workload(tmp_path, longer: int = 1):
    """Requests over PARA, LoRA and bare rows with mixed lengths, sampling and penalties, arriving in waves
    (``longer`` times as many tokens each)."""
    batch = prompts(10)
    names = ["a", "b", BASE_ADAPTER, "l", "a", "l", "b", BASE_ADAPTER, "a", "b"]
    params = [SamplingParams(max_tokens=n * longer, **extra) for n, extra in zip(
        [12, 3, 9, 1, 15, 7, 10, 2, 11, 6],
        [{}, {"temperature": 0.9, "seed": 5}, {"top_logprobs": 3}, {}, {"temperature": 1.1, "top_p": 0.8, "seed": 2},
         {"frequency_penalty": 0.4}, {}, {}, {"repetition_penalty": 1.3}, {"temperature": 0.7, "top_k": 9, "seed": 1}])]
    items = list(zip(batch, names, params))
    return {0: items[:4], 2: items[4:7], 5: items[7:]}


@pytest.fixture()
def para_and_lora(tmp_path):
    para = tiny_para("llama")
    lora = tmp_path / "lora"
    save_random_lora(tiny_model("llama"), lora, 4, 3, scale=0.3)
    return para, lora


def engine_for(para, lora, overlap, eos, **options):
    engine = Engine(para, max_seqs=4, max_len=64, overlap_steps=overlap, eos_token_ids=eos, **options)
    engine.load_adapter("l", lora)
    return engine


def frequent_token(para, lora, tmp_path):
    """A token the workload's greedy rows draw mid-sequence, to serve as end of sequence (so rows end by it)."""
    engine = engine_for(para, lora, False, set())
    drawn = [t for r in drive(engine, workload(tmp_path)) for t in r.tokens[1:]]
    return max(set(drawn), key=drawn.count)


def test_steps_launched_ahead_give_the_tokens_of_one_step_at_a_time(para_and_lora, tmp_path):
    para, lora = para_and_lora
    eos = {frequent_token(para, lora, tmp_path)}
    one_at_a_time = engine_for(para, lora, False, eos)
    expected = drive(one_at_a_time, workload(tmp_path))
    overlapped = engine_for(para, lora, True, eos)
    got = drive(overlapped, workload(tmp_path))
    assert one_at_a_time.steps_ahead == 0 and overlapped.steps_ahead > 10
    assert {r.finish_reason for r in expected} == {"stop", "length"}  # rows end both ways
    assert_same(got, expected)
    assert [[[t for t, _ in alternatives] for alternatives in r.top_logprobs] for r in got] == \
        [[[t for t, _ in alternatives] for alternatives in r.top_logprobs] for r in expected]
    assert overlapped.blocks.all_free() and len(overlapped.free_rows) == 4 and overlapped.in_flight == 0
    assert all(r.in_flight == 0 for r in got)


def test_a_request_cancelled_while_a_step_is_ahead_stops_and_the_others_keep_their_tokens(para_and_lora, tmp_path):
    para, lora = para_and_lora
    expected = drive(engine_for(para, lora, False, set()), workload(tmp_path))
    engine = engine_for(para, lora, True, set())
    got = drive(engine, workload(tmp_path), cancel_at={4: 0})
    assert got[0].finish_reason == "cancelled" and 0 < len(got[0].tokens) < len(expected[0].tokens)
    assert got[0].tokens == expected[0].tokens[:len(got[0].tokens)]
    assert_same(got[1:], expected[1:])
    assert engine.blocks.all_free() and engine.in_flight == 0


def test_a_step_that_would_preempt_waits_for_the_tokens_and_preempted_rows_give_their_solo_tokens(para_and_lora,
                                                                                                 tmp_path):
    para, lora = para_and_lora
    roomy = drive(engine_for(para, lora, False, set()), workload(tmp_path, longer=3))
    tight = engine_for(para, lora, True, set(), kv_tokens=64, block_size=4)  # 16 blocks for up to 4 × ~50 tokens
    got = drive(tight, workload(tmp_path, longer=3))
    assert tight.scheduler.preemptions > 0 and tight.steps_ahead > 0
    assert_same(got, roomy)
    assert tight.blocks.all_free() and tight.in_flight == 0


def test_only_one_step_may_be_ahead_and_launch_refuses_while_one_is_in_flight(para_and_lora):
    para, lora = para_and_lora
    engine = engine_for(para, lora, True, set())
    for prompt in prompts(3):
        engine.submit(prompt, "a", SamplingParams(max_tokens=8))
    first = engine.launch()
    with pytest.raises(RuntimeError, match="in flight"):
        engine.launch()
    second = engine.launch_ahead(first)
    assert second is not None and engine.in_flight == 2
    assert engine.launch_ahead(second) is None  # the first one's results are not taken yet
    engine.finish(first)
    engine.finish(second)
    off = engine_for(para, lora, False, set())
    off.submit(prompts(1)[0], "a", SamplingParams(max_tokens=4))
    assert off.launch_ahead(off.launch()) is None  # without overlap_steps, never ahead


def test_a_row_given_back_after_a_plan_that_launched_nothing_keeps_no_stale_block_entries(monkeypatch):
    """A plan made a step ahead can grow a row's blocks and then launch nothing (another row cannot grow). If the
    row's sequence then ends, its blocks are free again and a new sequence may take the row: one flush must not
    write the freed block and the new one to the same table entry (on a GPU either value could stay), and every
    running sequence's device block table must name exactly its own blocks."""
    from parapeft.engine.kv_cache import PagedKVCache

    twice, stale = [], []
    flush, forget_row = PagedKVCache.flush, PagedKVCache.forget_row

    def watched_flush(cache):
        entries = [(row, index) for row, index, _ in cache._pending]
        twice.extend(entry for entry in set(entries) if entries.count(entry) > 1)
        flush(cache)

    def watched_forget(cache, row):
        stale.extend(entry for entry in cache._pending if entry[0] == row)
        forget_row(cache, row)

    monkeypatch.setattr(PagedKVCache, "flush", watched_flush)
    monkeypatch.setattr(PagedKVCache, "forget_row", watched_forget)
    para = tiny_para("llama")
    rng = random.Random(1)
    for trial in range(16):
        eos = {rng.randrange(3, VOCAB) for _ in range(6)}  # sequences end early, at random, freeing rows mid-run
        engine = Engine(para, max_seqs=4, max_len=48, kv_tokens=64, block_size=4, overlap_steps=True, eos_token_ids=eos)
        pending = None
        for _ in range(300):
            if rng.random() < 0.4:
                prompt = [rng.randrange(3, VOCAB) for _ in range(rng.randint(3, 14))]
                engine.submit(prompt, rng.choice(["a", "b", BASE_ADAPTER]), SamplingParams(max_tokens=rng.randint(2, 30)))
            ahead = engine.launch_ahead(pending)
            engine.finish(pending)
            pending = ahead if ahead is not None else (engine.launch() if engine.waiting or engine.running else None)
            for request in engine.running:
                if request.row is not None and request.blocks:
                    assert engine.cache.block_tables[request.row, :len(request.blocks)].tolist() == request.blocks
        engine.finish(pending)
        engine.run_until_done()
        assert engine.blocks.all_free()
    assert stale, "the workload no longer makes a plan ahead that notes blocks and launches nothing: change it"
    assert twice == []
