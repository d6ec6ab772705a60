"""PARA against references: the bare backbone, single-sequence runs, teacher forcing, single-adapter runs."""

from __future__ import annotations

import pytest
import torch

from parapeft import BASE_ADAPTER, ParaConfig, get_para_model
from tiny_models import ARCHS, PAD_ID, VOCAB, randomize_adapter, tiny_model

POOLERS = ["mean", "last", "max", "attention"]
ATOL = 1e-5


def prompts(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, VOCAB, (n,), generator=g) for n in lengths]


def pad_batch(seqs, side):
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), PAD_ID)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        if side == "right":
            ids[i, : len(s)], mask[i, : len(s)] = s, 1
        else:
            ids[i, width - len(s) :], mask[i, width - len(s) :] = s, 1
    return ids, mask


def positions(mask):
    return (mask.cumsum(-1) - 1).clamp(min=0)


def trained(arch, pooler="mean", seed=0, names=("default",)):
    para = get_para_model(tiny_model(arch), ParaConfig(r=4, pooler=pooler), adapter_name=names[0])
    for extra in names[1:]:
        para.add_adapter(extra, ParaConfig(r=4 + len(extra) % 3, pooler=pooler))
    for i, name in enumerate(names):
        randomize_adapter(para, name, seed + i)
    return para.eval()


def assert_fresh_adapter_is_the_backbone(arch: str, config: ParaConfig) -> None:
    """A fresh adapter of ``config`` gives the bare backbone's logits and greedy tokens bit for bit."""
    base = tiny_model(arch)
    ids, mask = pad_batch(prompts([7, 5, 9]), "left")
    with torch.no_grad():
        ref = base(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).logits
        ref_gen = base.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=PAD_ID)
    para = get_para_model(base, config)
    with torch.no_grad():
        out = para(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).logits
    gen = para.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=PAD_ID)
    assert torch.equal(out, ref)
    assert torch.equal(gen, ref_gen)


@pytest.mark.parametrize("arch", ARCHS)
def test_fresh_adapter_is_bitwise_the_backbone(arch):
    assert_fresh_adapter_is_the_backbone(arch, ParaConfig(r=4, pooler="attention"))


def assert_vectors_ignore_the_response(para) -> list:
    """The vectors of one prompt followed by two different responses (labels -100 on the prompt), and of the
    prompt alone, agree; returns the first pass's vectors."""
    prompt = prompts([6])[0]
    vectors = []
    for seed in (1, 2):
        response = prompts([5], seed=seed)[0]
        ids = torch.cat([prompt, response]).unsqueeze(0)
        labels = ids.clone()
        labels[0, : len(prompt)] = -100
        with torch.no_grad():
            para(input_ids=ids, labels=labels)
        vectors.append(para.last_vectors())
    with torch.no_grad():
        para(input_ids=prompt.unsqueeze(0))  # the prompt alone, no labels: all positions are prompt
    vectors.append(para.last_vectors())
    for layer_a, layer_b, layer_c in zip(*vectors):
        for target in layer_a:
            torch.testing.assert_close(layer_a[target], layer_b[target], atol=ATOL, rtol=0)
            torch.testing.assert_close(layer_a[target], layer_c[target], atol=ATOL, rtol=0)
    return vectors[0]


@pytest.mark.parametrize("pooler", POOLERS)
@pytest.mark.parametrize("arch", ["llama", "qwen3", "gemma3_text"])
def test_response_tokens_never_change_the_vectors(arch, pooler):
    vectors = assert_vectors_ignore_the_response(trained(arch, pooler))
    assert any((v["q"] - 1).abs().max() > 1e-3 for v in vectors), "adapter should adjust something"


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("pooler", POOLERS)
@pytest.mark.parametrize("arch", ARCHS)
def test_padded_batch_equals_single_sequences(arch, pooler, side):
    para = trained(arch, pooler)
    seqs = prompts([9, 4, 7])
    ids, mask = pad_batch(seqs, side)
    with torch.no_grad():
        batch_logits = para(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).logits
        batch_vectors = para.last_vectors()
        for i, seq in enumerate(seqs):
            single = para(input_ids=seq.unsqueeze(0)).logits[0]
            valid = mask[i].bool()
            torch.testing.assert_close(batch_logits[i][valid], single, atol=ATOL, rtol=1e-4)
            for layer_batch, layer_single in zip(batch_vectors, para.last_vectors()):
                torch.testing.assert_close(layer_batch["v"][i], layer_single["v"][0], atol=ATOL, rtol=0)


def teacher_forced_logits(para, ids, mask, generated, adapter_names=None):
    """Logits of a single forward over prompt + generated tokens, pooling only the prompt."""
    full = torch.cat([ids, generated], dim=1)
    full_mask = torch.cat([mask, torch.ones_like(generated)], dim=1)
    prompt_mask = torch.cat([mask, torch.zeros_like(generated)], dim=1)
    with torch.no_grad():
        logits = para(
            input_ids=full,
            attention_mask=full_mask,
            prompt_mask=prompt_mask,
            position_ids=positions(full_mask),
            adapter_names=adapter_names,
        ).logits
    start = ids.shape[1] - 1
    return logits[:, start : start + generated.shape[1]]


@pytest.mark.parametrize("pooler", POOLERS)
@pytest.mark.parametrize("arch", ARCHS)
def test_incremental_generation_equals_teacher_forcing(arch, pooler):
    para = trained(arch, pooler)
    ids, mask = pad_batch(prompts([8, 5]), "left")
    steps = 6
    out = para.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
        pad_token_id=PAD_ID, output_logits=True, return_dict_in_generate=True,
    )
    generated = out.sequences[:, ids.shape[1] :]
    incremental = torch.stack(out.logits, dim=1)
    torch.testing.assert_close(incremental, teacher_forced_logits(para, ids, mask, generated), atol=1e-4, rtol=1e-4)


def test_cached_forward_reuses_prefill_vectors():
    """A manual decode loop through ParaModel.forward equals one forward over the whole sequence."""
    para = trained("llama")
    prompt = prompts([7])[0].unsqueeze(0)
    with torch.no_grad():
        out = para(input_ids=prompt, use_cache=True)
        cache, logits, tokens = out.past_key_values, [out.logits[:, -1]], []
        for _ in range(4):
            token = logits[-1].argmax(-1, keepdim=True)
            tokens.append(token)
            mask = torch.ones(1, prompt.shape[1] + len(tokens), dtype=torch.long)
            out = para(input_ids=token, attention_mask=mask, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            logits.append(out.logits[:, -1])
    generated = torch.cat(tokens, dim=1)
    reference = teacher_forced_logits(para, prompt, torch.ones_like(prompt), generated)
    torch.testing.assert_close(torch.stack(logits[:4], dim=1), reference, atol=1e-4, rtol=1e-4)


NAMES = ("alpha", "beta", "gamma")


@pytest.mark.parametrize("arch", ARCHS)
def test_mixed_adapter_batch_equals_each_row_alone(arch):
    para = trained(arch, names=NAMES)
    assert sorted(c.r for c in para.peft_config.values()) == [4, 5, 6]  # stacked with zero padding
    seqs = prompts([6, 9, 5, 8, 7])
    rows = ["beta", BASE_ADAPTER, "alpha", "gamma", "beta"]
    ids, mask = pad_batch(seqs, "left")
    with torch.no_grad():
        mixed = para(input_ids=ids, attention_mask=mask, position_ids=positions(mask), adapter_names=rows).logits
        base = para.unload()
        for i, (seq, name) in enumerate(zip(seqs, rows)):
            if name == BASE_ADAPTER:
                alone = base(input_ids=seq.unsqueeze(0)).logits[0]
            else:
                para_again = trained(arch, names=NAMES)
                para_again.set_adapter(name)
                alone = para_again(input_ids=seq.unsqueeze(0)).logits[0]
            torch.testing.assert_close(mixed[i][mask[i].bool()], alone, atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "gemma2", "qwen3"])
def test_mixed_adapter_generation_equals_each_row_alone(arch):
    para = trained(arch, names=NAMES)
    seqs = prompts([6, 9, 5, 8])
    rows = ["gamma", "alpha", BASE_ADAPTER, "beta"]
    ids, mask = pad_batch(seqs, "left")
    kwargs = dict(max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=PAD_ID)
    mixed = para.generate(input_ids=ids, attention_mask=mask, adapter_names=rows, **kwargs)
    for i, (seq, name) in enumerate(zip(seqs, rows)):
        alone = para.generate(input_ids=seq.unsqueeze(0), adapter_names=[name], **kwargs)
        assert torch.equal(mixed[i, ids.shape[1] :], alone[0, len(seq) :]), f"row {i} ({name})"


def test_sampling_with_several_return_sequences_matches_teacher_forcing():
    """Rows repeated for num_return_sequences keep their own prompt's vectors and adapter."""
    para = trained("llama", names=NAMES)
    ids, mask = pad_batch(prompts([6, 8]), "left")
    torch.manual_seed(0)
    out = para.generate(
        input_ids=ids, attention_mask=mask, adapter_names=["gamma", "alpha"], do_sample=True, temperature=1.0,
        num_return_sequences=3, max_new_tokens=5, min_new_tokens=5, pad_token_id=PAD_ID,
        output_logits=True, return_dict_in_generate=True,
    )
    rep_ids, rep_mask = ids.repeat_interleave(3, 0), mask.repeat_interleave(3, 0)
    generated = out.sequences[:, ids.shape[1] :]
    reference = teacher_forced_logits(para, rep_ids, rep_mask, generated, ["gamma"] * 3 + ["alpha"] * 3)
    torch.testing.assert_close(torch.stack(out.logits, dim=1), reference, atol=1e-4, rtol=1e-4)
    assert len({tuple(r.tolist()) for r in generated}) > 1, "sampling should give different sequences"


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_beam_search_scores_match_teacher_forcing(arch):
    para = trained(arch, names=NAMES)
    ids, mask = pad_batch(prompts([6, 8]), "left")
    out = para.generate(
        input_ids=ids, attention_mask=mask, adapter_names=["beta", "alpha"], num_beams=3, num_return_sequences=2,
        max_new_tokens=5, min_new_tokens=5, length_penalty=0.0, do_sample=False, pad_token_id=PAD_ID,
        output_scores=True, return_dict_in_generate=True,
    )
    rep_ids, rep_mask = ids.repeat_interleave(2, 0), mask.repeat_interleave(2, 0)
    generated = out.sequences[:, ids.shape[1] :]
    logits = teacher_forced_logits(para, rep_ids, rep_mask, generated, ["beta"] * 2 + ["alpha"] * 2)
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, generated.unsqueeze(-1)).squeeze(-1).sum(-1)
    torch.testing.assert_close(out.sequences_scores, logprobs, atol=1e-4, rtol=1e-4)


def test_a_wrapper_cast_to_bf16_runs_its_generators_in_bf16():
    """``para.to(torch.bfloat16)`` casts the generators too (as peft casts LoRA weights): they then read the layer
    input in bf16, alone and in a mixed batch, and the logits stay those of the float32 wrapper to bf16 rounding."""
    para = trained("llama", names=NAMES)
    seqs = prompts([6, 9, 5])
    rows = ["beta", BASE_ADAPTER, "alpha"]
    ids, mask = pad_batch(seqs, "left")
    with torch.no_grad():
        reference = para(input_ids=ids, attention_mask=mask, position_ids=positions(mask), adapter_names=rows).logits
        single = para(input_ids=ids).logits
        para.to(torch.bfloat16)
        assert next(para.layers.parameters()).dtype == torch.bfloat16
        mixed = para(input_ids=ids, attention_mask=mask, position_ids=positions(mask), adapter_names=rows).logits
        alone = para(input_ids=ids).logits
    torch.testing.assert_close(mixed[mask.bool()].float(), reference[mask.bool()], atol=0.05, rtol=0.05)
    torch.testing.assert_close(alone.float(), single, atol=0.05, rtol=0.05)
