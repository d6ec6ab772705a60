"""The batched device sampler against per-row references and transformers' logits processors."""

from __future__ import annotations

import pytest
import torch
from transformers import (RepetitionPenaltyLogitsProcessor, SequenceBiasLogitsProcessor, TemperatureLogitsWarper,
                          TopKLogitsWarper, TopPLogitsWarper)

from parapeft.engine import SamplingParams
from parapeft.engine.sampler import BatchNeeds, Sampler, uniforms

VOCAB = 50


def _setup(params: list[SamplingParams], prompts, outputs, seeds):
    sampler = Sampler(len(params) + 2, VOCAB, torch.device("cpu"))
    rows = torch.tensor([2 + i for i in range(len(params))])  # rows need not start at 0
    sampler.assign(list(zip(rows.tolist(), params, seeds, prompts, outputs)))
    return sampler, rows


def test_rows_admitted_together_get_the_values_of_rows_admitted_one_by_one():
    """One batched assignment writes every row's scalars and penalty tables as separate ones would, including
    a row that held another request before (nothing of the old request survives)."""
    params = [SamplingParams(temperature=0.7, top_p=0.9, top_k=5, seed=1, presence_penalty=0.5),
              SamplingParams(),
              SamplingParams(temperature=1.3, frequency_penalty=0.2, repetition_penalty=1.4, logit_bias={3: 2.0}),
              SamplingParams(temperature=0.2, top_k=2, seed=2 ** 62 + 5)]
    entries = [(3, params[0], 11, [1, 2], [4]), (0, params[1], 12, [5], []), (5, params[2], 13, [6, 7, 6], [8, 8]),
               (2, params[3], 2 ** 62 + 5, [9], [])]
    together, alone = Sampler(6, VOCAB, torch.device("cpu")), Sampler(6, VOCAB, torch.device("cpu"))
    stale = SamplingParams(temperature=1.9, top_p=0.1, top_k=7, repetition_penalty=2.0, presence_penalty=1.0,
                           logit_bias={1: -5.0})
    for sampler in (together, alone):
        sampler.assign([(0, stale, 99, [1, 1], [2, 2, 2])])  # row 0's previous request
    together.assign(entries)
    for entry in entries:
        alone.assign([entry])
    for name in ("temperature", "top_p", "top_k", "seed", "generated", "presence", "frequency", "repetition",
                 "_counts", "_prompt_seen", "_bias"):
        assert torch.equal(getattr(together, name), getattr(alone, name)), name
    assert together.top_k[3] == 5 and together.seed[2] == 2 ** 62 + 5 and together.generated[5] == 2
    assert together.top_p[1] == 1 and together.repetition[1] == 1 and together.temperature[1] == 0
    # nothing of row 0's previous request is left: its bias, counts and prompt tokens are cleared
    assert not together._bias[0].any() and not together._counts[0].any() and not together._prompt_seen[0].any()
    assert together._bias[5, 3] == 2.0 and together._counts[5, 8] == 2 and together._prompt_seen[5, 6]


def _reference_scores(logits, p: SamplingParams, prompt, out):
    """One row through transformers' processors (repetition penalty, bias, temperature, top-k, top-p) and
    OpenAI's presence/frequency formula."""
    scores = logits.clone().unsqueeze(0)
    ids = torch.tensor([prompt + out])
    if p.repetition_penalty != 1.0:
        scores = RepetitionPenaltyLogitsProcessor(p.repetition_penalty)(ids, scores)
    counts = torch.bincount(torch.tensor(out, dtype=torch.long), minlength=VOCAB).float() if out else torch.zeros(VOCAB)
    scores = scores - p.frequency_penalty * counts - p.presence_penalty * (counts > 0).float()
    if p.logit_bias:
        scores = SequenceBiasLogitsProcessor({(t,): b for t, b in p.logit_bias.items()})(ids, scores)
    if p.temperature > 0:
        scores = TemperatureLogitsWarper(p.temperature)(ids, scores)
        if p.top_k:
            scores = TopKLogitsWarper(p.top_k)(ids, scores)
        if p.top_p < 1:
            scores = TopPLogitsWarper(p.top_p)(ids, scores)
    return scores[0]


CASES = [
    SamplingParams(),  # greedy
    SamplingParams(temperature=0.7),
    SamplingParams(temperature=1.3, top_k=5),
    SamplingParams(temperature=1.0, top_p=0.8),
    SamplingParams(temperature=0.9, top_k=12, top_p=0.6, repetition_penalty=1.3),
    SamplingParams(repetition_penalty=0.8, logit_bias={3: 5.0, 7: -100.0}),
    SamplingParams(temperature=1.1, presence_penalty=0.5, frequency_penalty=0.7, logit_bias={11: 2.5}),
]


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(len(CASES), VOCAB, generator=g) * 3
    prompts = [torch.randint(0, VOCAB, (6,), generator=g).tolist() for _ in CASES]
    outputs = [torch.randint(0, VOCAB, (i % 4,), generator=g).tolist() for i in range(len(CASES))]
    return logits, prompts, outputs


def test_processed_scores_equal_transformers_processors_row_by_row():
    logits, prompts, outputs = _inputs()
    sampler, rows = _setup(CASES, prompts, outputs, range(len(CASES)))
    got = sampler.process(logits, rows, BatchNeeds.of(CASES))
    for index, params in enumerate(CASES):
        expected = _reference_scores(logits[index], params, prompts[index], outputs[index])
        kept = torch.isfinite(expected)
        assert torch.equal(torch.isfinite(got[index]), kept), index
        torch.testing.assert_close(got[index][kept], expected[kept], atol=1e-5, rtol=1e-5)


def test_batched_draw_equals_a_row_at_a_time_with_the_same_seeds():
    logits, prompts, outputs = _inputs(1)
    seeds = [11, 12, 13, 14, 15, 16, 17]
    sampler, rows = _setup(CASES, prompts, outputs, seeds)
    tokens, packed = sampler.sample(logits, rows, BatchNeeds.of(CASES))
    for index, params in enumerate(CASES):
        alone, alone_rows = _setup([params], [prompts[index]], [outputs[index]], [seeds[index]])
        single, single_packed = alone.sample(logits[index:index + 1], alone_rows, BatchNeeds.of([params]))
        assert int(single[0]) == int(tokens[index]) == int(packed[index, 0]), index
        scores = _reference_scores(logits[index], params, prompts[index], outputs[index])
        if params.temperature == 0:
            assert int(tokens[index]) == int(scores.argmax())
        else:  # the exponential race with the row's own numbers
            u = uniforms(torch.tensor([seeds[index]]), torch.tensor([len(outputs[index])]), VOCAB)[0]
            assert int(tokens[index]) == int((torch.softmax(scores, -1) / -torch.log(u)).argmax())
        expected_logprob = torch.log_softmax(logits[index], -1)[int(tokens[index])]
        assert abs(float(packed[index, 1]) - float(expected_logprob)) < 1e-5


def test_draws_follow_the_distribution_and_each_step_draws_fresh_numbers():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0] + [-30.0] * (VOCAB - 4)])
    probs = torch.softmax(logits[0], -1)
    params = SamplingParams(temperature=1.0)
    counts = torch.zeros(VOCAB)
    sampler, rows = _setup([params], [[1]], [[]], [0])
    for seed in range(4000):
        sampler.seed[rows] = seed
        tokens, _ = sampler.sample(logits, rows, BatchNeeds.of([params]))
        counts[int(tokens[0])] += 1
    torch.testing.assert_close(counts / counts.sum(), probs, atol=0.025, rtol=0)
    # one request's stream: the step counter advances, so consecutive tokens are not the same draw
    sampler.seed[rows] = 3
    flat = torch.zeros(1, VOCAB)
    drawn = {int(sampler.sample(flat, rows, BatchNeeds.of([params]))[0][0]) for _ in range(40)}
    assert len(drawn) > 20


def test_penalty_counts_follow_the_sampled_tokens_and_top_logprobs_come_sorted():
    params = SamplingParams(frequency_penalty=1.0, top_logprobs=4)
    sampler, rows = _setup([params], [[1, 2]], [[]], [0])
    logits = torch.zeros(1, VOCAB)
    logits[0, 9] = 0.6  # greedy picks 9 once; then its penalty (1.0 per use) makes it lose to the flat rest
    first, packed = sampler.sample(logits, rows, BatchNeeds.of([params]))
    second, _ = sampler.sample(logits, rows, BatchNeeds.of([params]))
    assert int(first[0]) == 9 and int(second[0]) != 9
    ids, values = packed[0, 3:7], packed[0, 7:11]
    assert int(ids[0]) == 9 and torch.all(values[:-1] >= values[1:])


def test_rows_with_non_finite_logits_are_flagged_alone():
    params = [SamplingParams(temperature=1.0), SamplingParams(), SamplingParams(temperature=0.5, top_p=0.9)]
    sampler, rows = _setup(params, [[1]] * 3, [[]] * 3, [1, 2, 3])
    logits = torch.randn(3, VOCAB)
    logits[1, 4] = float("nan")
    logits[2, 0] = float("inf")
    clean = logits.clone()
    clean[1:] = 0
    _, packed = sampler.sample(logits, rows, BatchNeeds.of(params))
    assert packed[:, 2].tolist() == [1.0, 0.0, 0.0]
    other, _ = _setup(params[:1], [[1]], [[]], [1])
    alone, _ = other.sample(logits[:1], torch.tensor([2]), BatchNeeds.of(params[:1]))
    assert int(alone[0]) == int(packed[0, 0])


@pytest.mark.parametrize("bad", [SamplingParams(repetition_penalty=0), SamplingParams(top_k=-1),
                                 SamplingParams(logit_bias={1: 101.0}), SamplingParams(seed=-1),
                                 SamplingParams(frequency_penalty=float("inf"))])
def test_out_of_range_values_are_refused(bad):
    from parapeft.engine import BadRequest

    with pytest.raises(BadRequest):
        bad.validate(VOCAB)
