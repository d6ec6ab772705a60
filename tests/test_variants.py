"""PARA-family variants (issue: quality beyond the paper): each keeps PARA's invariants.

Every variant still computes a fixed set of vectors from the prompt at prefill and applies them
element-wise while decoding, so the same references hold as for the paper's form: a fresh adapter is the
backbone exactly, response tokens never change the vectors, cached generation equals teacher forcing, and a
mixed batch equals each row alone.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig

from parapeft import BASE_ADAPTER, AdapterLoadError, ParaConfig, ParaModel, get_para_model
from parapeft.config import PAPER_FORM
from parapeft.engine import Engine
from parapeft.training.methods import attach, count_on_meta, match_budget
from parapeft.training.trainer import ResponseTrainer, is_up_side, scale_down_init
from test_equivalence import (ATOL, assert_fresh_adapter_is_the_backbone, assert_vectors_ignore_the_response,
                              pad_batch, positions, prompts, teacher_forced_logits)
from tiny_models import PAD_ID, randomize_adapter, tiny_model

VARIANTS = {
    "static": dict(static_bias=True),
    "k": dict(targets=["q", "k", "v", "up"]),
    "o-down": dict(targets=["q", "v", "o", "up", "down"]),
    "tanh": dict(scale_form="tanh"),
    "sigmoid": dict(scale_form="sigmoid"),
    "residual": dict(generator_input="residual"),
    "deep": dict(pool_layer=1),  # every layer's generator reads the top layer's input from a frozen prompt pass
    "head": dict(granularity="head", targets=["q", "k", "v", "o", "up"]),
    "everything": dict(targets=["q", "k", "v", "o", "up", "down"], static_bias=True, scale_form="tanh",
                       generator_input="residual"),
}
# k is scaled after the per-head key norm in these two (as q after the query norm)
NORMED_HEADS = ["qwen3", "gemma3_text"]


def variant_model(arch, form, seed=0, pooler="mean", scale=0.3):
    para = get_para_model(tiny_model(arch), ParaConfig(r=4, pooler=pooler, **form))
    randomize_adapter(para, "default", seed, scale=scale)
    return para.eval()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("arch", ["llama", *NORMED_HEADS])
def test_a_fresh_variant_adapter_is_bitwise_the_backbone(arch, variant):
    assert_fresh_adapter_is_the_backbone(arch, ParaConfig(r=4, **VARIANTS[variant]))


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_trained_variant_changes_the_output_through_its_targets(variant):
    para = variant_model("llama", VARIANTS[variant], scale=1.0)  # the tiny model's residual stream is small
    ids = torch.tensor([prompts([8])[0].tolist()])
    with torch.no_grad():
        adjusted = para(input_ids=ids).logits
        scales = para.last_vectors()
        with para.disable_adapter():
            bare = para(input_ids=ids).logits
    assert (adjusted - bare).abs().max() > 1e-3
    assert set(scales[0]) == set(para.peft_config["default"].targets)


@pytest.mark.parametrize("targets", [["k"], ["o"], ["down"]])
def test_each_added_target_alone_changes_the_output(targets):
    """k, the input of o_proj and the input of down_proj each act on their own (not only beside q, v, up)."""
    para = variant_model("llama", dict(targets=targets), scale=1.0)
    ids = torch.tensor([prompts([8])[0].tolist()])
    with torch.no_grad():
        adjusted = para(input_ids=ids).logits
        with para.disable_adapter():
            bare = para(input_ids=ids).logits
    assert (adjusted - bare).abs().max() > 1e-3


@pytest.mark.parametrize("form, offset", [("tanh", torch.tanh), ("sigmoid", lambda l: 2 * torch.sigmoid(l) - 1)])
def test_a_bounded_scale_form_applies_its_function_to_the_generators_output(form, offset):
    """The same generator weights under the linear form and a bounded one: layer 0 (whose input no adapter has
    touched yet) gives 1 + l and 1 + form(l) from the same l."""
    ids = torch.tensor([prompts([8])[0].tolist()])
    vectors = {}
    for name in ("linear", form):
        para = variant_model("llama", dict(scale_form=name), seed=3, scale=1.0)
        with torch.no_grad():
            para(input_ids=ids)
        vectors[name] = para.last_vectors()[0]
    for target, linear in vectors["linear"].items():
        assert (linear - 1).abs().max() > 1e-2, target  # l is not ~0, so the forms differ
        torch.testing.assert_close(vectors[form][target], 1 + offset(linear - 1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_response_tokens_never_change_a_variants_vectors(arch, variant):
    vectors = assert_vectors_ignore_the_response(variant_model(arch, VARIANTS[variant], pooler="max"))
    assert any((layer[t] - 1).abs().max() > 1e-3 for layer in vectors for t in layer), "adapter should adjust something"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_variant_generation_equals_teacher_forcing(arch, variant):
    para = variant_model(arch, VARIANTS[variant])
    ids, mask = pad_batch(prompts([8, 5]), "left")
    out = para.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, min_new_tokens=6, do_sample=False,
                        pad_token_id=PAD_ID, output_logits=True, return_dict_in_generate=True)
    generated = out.sequences[:, ids.shape[1]:]
    torch.testing.assert_close(torch.stack(out.logits, dim=1), teacher_forced_logits(para, ids, mask, generated),
                               atol=1e-4, rtol=1e-4)


MIXED = {"paper": {}, "static": VARIANTS["static"], "everything": VARIANTS["everything"], "head": VARIANTS["head"],
         "sig-k": dict(targets=["k", "up"], scale_form="sigmoid"), "deep": dict(pool_layer=1, generator_input="residual")}


def mixed_model(arch):
    names = list(MIXED)
    para = get_para_model(tiny_model(arch), ParaConfig(r=4, **MIXED[names[0]]), adapter_name=names[0])
    for i, name in enumerate(names[1:]):
        para.add_adapter(name, ParaConfig(r=3 + i, pooler=["mean", "attention", "last", "max", "mean"][i], **MIXED[name]))
    for i, name in enumerate(names):
        randomize_adapter(para, name, 10 + i, scale=0.3)
    return para.eval()


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_a_batch_mixing_variants_equals_each_row_alone(arch):
    para = mixed_model(arch)
    seqs = prompts([6, 9, 5, 8, 7, 4, 6])
    rows = ["everything", BASE_ADAPTER, "paper", "sig-k", "static", "deep", "head"]
    ids, mask = pad_batch(seqs, "left")
    with torch.no_grad():
        mixed = para(input_ids=ids, attention_mask=mask, position_ids=positions(mask), adapter_names=rows).logits
        for i, (seq, name) in enumerate(zip(seqs, rows)):
            alone = para(input_ids=seq.unsqueeze(0), adapter_names=[name]).logits[0]
            torch.testing.assert_close(mixed[i][mask[i].bool()], alone, atol=ATOL, rtol=1e-4)
    kwargs = dict(max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=PAD_ID)
    generated = para.generate(input_ids=ids, attention_mask=mask, adapter_names=rows, **kwargs)
    for i, (seq, name) in enumerate(zip(seqs, rows)):
        alone = para.generate(input_ids=seq.unsqueeze(0), adapter_names=[name], **kwargs)
        assert torch.equal(generated[i, ids.shape[1]:], alone[0, len(seq):]), name


def test_a_saved_variant_reloads_with_the_same_outputs_and_the_paper_form_keeps_its_keys(tmp_path):
    para = variant_model("llama", VARIANTS["everything"])
    ids = torch.tensor([prompts([7])[0].tolist()])
    with torch.no_grad():
        before = para(input_ids=ids).logits
    para.save_pretrained(tmp_path / "v")
    saved = json.loads((tmp_path / "v" / "adapter_config.json").read_text())
    assert saved["static_bias"] is True and saved["scale_form"] == "tanh" and saved["generator_input"] == "residual"
    reloaded = ParaModel.from_pretrained(tiny_model("llama"), tmp_path / "v")
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids).logits, before)
    assert reloaded.peft_config["default"].variant() == {key: saved[key] for key in PAPER_FORM if key in saved}
    assert set(reloaded.peft_config["default"].variant()) == {"targets", "static_bias", "scale_form", "generator_input"}
    paper = get_para_model(tiny_model("llama"), ParaConfig(r=4))
    paper.save_pretrained(tmp_path / "p")
    keys = set(json.loads((tmp_path / "p" / "adapter_config.json").read_text()))
    assert not keys & {"static_bias", "scale_form", "generator_input"}  # configs of the paper's form are unchanged
    assert ParaConfig.load(tmp_path / "p").variant() == {}


@pytest.mark.parametrize("kind", ["normed", "residual"])
def test_pooling_from_deeper_reads_the_frozen_backbones_layer_input(kind):
    para = variant_model("llama", dict(pool_layer=1, generator_input=kind))
    ids, mask = pad_batch(prompts([7, 4]), "left")
    with torch.no_grad():
        para(input_ids=ids, attention_mask=mask, position_ids=positions(mask))
        vectors = para.last_vectors()
        backbone = tiny_model("llama")  # the same weights, without PARA
        hidden = backbone.model(input_ids=ids, attention_mask=mask, position_ids=positions(mask),
                                output_hidden_states=True).hidden_states[1]
        if kind == "normed":
            hidden = backbone.model.layers[1].input_layernorm(hidden)
        keep = mask.bool().unsqueeze(-1)
        pooled = torch.where(keep, hidden, 0.0).sum(1) / mask.sum(1, keepdim=True)
        q_width = para.dims["q"]
        for index, layer in enumerate(para.layers):
            generator = layer.adapters["default"]
            expected = 1.0 + generator.up(torch.nn.functional.silu(generator.down(pooled)))
            torch.testing.assert_close(vectors[index]["q"], expected[:, :q_width], atol=1e-5, rtol=1e-5)
    with torch.no_grad(), para.disable_adapter():
        para(input_ids=ids, attention_mask=mask, position_ids=positions(mask))
    assert not para._context.deep  # the next pass replaces the prompt pass's tensors


def test_per_head_vectors_share_one_multiplier_across_each_heads_channels():
    para = variant_model("qwen3", VARIANTS["head"])
    with torch.no_grad():
        para(input_ids=torch.tensor([prompts([6])[0].tolist()]))
    head_dim = para.head_dim
    for layer in para.last_vectors():
        for target in ("q", "k", "v", "o"):
            per_head = layer[target].view(1, -1, head_dim)
            assert torch.equal(per_head, per_head[:, :, :1].expand_as(per_head)), target
        assert layer["up"].unique().numel() > para.dims["up"] // 2  # up stays per channel
    saved = para.adapter_state_dict()["layers.0.up.weight"]
    assert saved.shape[0] == para.dims["q"] // head_dim * 2 + para.dims["v"] // head_dim * 2 + para.dims["up"]


@pytest.mark.parametrize("variant", ["deep", "residual", "everything"])
def test_a_variant_trains_under_gradient_checkpointing(variant):
    """Checkpointing runs each layer again in the backward; the vectors must be recomputed from the same inputs."""
    para = variant_model("llama", VARIANTS[variant])
    para.train()
    para.layers.requires_grad_(True)
    ids = torch.tensor([prompts([9])[0].tolist()])
    labels = ids.clone()
    labels[0, :5] = -100
    runs = []
    for checkpointing in (False, True):
        if checkpointing:
            para.base_model.gradient_checkpointing_enable()
        para.zero_grad()
        para(input_ids=ids, labels=labels).loss.backward()
        runs.append([p.grad.clone() for p in para.layers.parameters() if p.requires_grad])
    assert runs[1] and all(torch.isfinite(g).all() for g in runs[1])
    assert any(g.abs().max() > 0 for g in runs[1])
    for plain, recomputed in zip(*runs, strict=True):  # the same gradients as without checkpointing
        torch.testing.assert_close(recomputed, plain, atol=1e-6, rtol=1e-5)


def test_per_head_vectors_need_an_attention_target():
    with pytest.raises(ValueError, match="granularity 'head' needs an attention target"):
        ParaConfig(granularity="head", targets=["up"])


def test_unload_restores_every_wrapped_module():
    base = tiny_model("qwen3")
    reference = {k: v.clone() for k, v in base.state_dict().items()}
    para = get_para_model(base, ParaConfig(r=4, **VARIANTS["everything"]))
    restored = para.unload()
    assert set(restored.state_dict()) == set(reference)
    assert not restored.model.layers[0]._forward_pre_hooks  # the residual hook is gone too


def test_the_engine_refuses_variants_by_name_and_serves_subsets_of_the_papers_targets(tmp_path):
    para = variant_model("llama", VARIANTS["static"])
    para.save_pretrained(tmp_path / "static")
    subset = get_para_model(tiny_model("llama"), ParaConfig(r=4, targets=["q", "up"]))
    randomize_adapter(subset, "default", 3)
    subset.save_pretrained(tmp_path / "subset")
    host = get_para_model(tiny_model("llama"), ParaConfig(r=4), adapter_name="a").eval()
    engine = Engine(host, max_seqs=2, max_len=64)
    with pytest.raises(AdapterLoadError, match="static_bias=True"):
        engine.load_adapter("static", tmp_path / "static")
    assert engine.load_adapter("subset", tmp_path / "subset")["kind"] == "para"
    with pytest.raises(AdapterLoadError, match="targets=\\['q', 'k', 'v', 'up'\\]"):
        Engine(variant_model("llama", VARIANTS["k"]), max_seqs=1, max_len=32)


SMOLLM2 = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
               num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True)


def test_variants_are_budget_matched_to_the_papers_count():
    config = AutoConfig.for_model("llama", **SMOLLM2)
    paper = count_on_meta(config, "para", 12)
    widths = {"q": 576, "k": 192, "v": 192, "o": 576, "up": 1536, "down": 1536}

    def count(r, targets, bias=False):
        out = sum(widths[t] for t in targets)
        return 30 * (r * (576 + out) + (out if bias else 0))

    assert match_budget(config, "para", paper, para_form={"static_bias": True}) == (11, count(11, "q v up".split(), True))
    assert match_budget(config, "para", paper, targets=["q", "k", "v", "up"]) == (11, count(11, ["q", "k", "v", "up"]))
    assert match_budget(config, "para", paper, targets=list(widths)) == (7, count(7, list(widths)))
    head = match_budget(config, "para", paper, para_form={"granularity": "head"})  # q: 9 heads, v: 3 heads
    assert head == (16, 30 * 16 * (576 + 9 + 3 + 1536))
    upper = {"layers_to_transform": list(range(15, 30))}  # larger r on the upper half of the layers
    assert match_budget(config, "para", paper, para_form=upper) == (24, 15 * 24 * (576 + 2304))
    assert match_budget(config, "lora", paper, targets=["q", "v", "up"]) == (9, 30 * 9 * (576 + 576 + 576 + 192 + 576 + 1536))


def test_up_side_learning_rate_ratio_and_down_init_scale():
    lora = attach(tiny_model("llama"), "lora", 4, targets=["q", "v", "up"])
    assert {n.split(".")[-4] for n, p in lora.named_parameters() if p.requires_grad and "lora_A" in n} == {
        "q_proj", "v_proj", "up_proj"}
    para = attach(tiny_model("llama"), "para", 4, para_form={"static_bias": True})
    names = [n for n, p in para.named_parameters() if p.requires_grad]
    layers = para.base_model.config.num_hidden_layers
    up_side = {n for n in names if n.endswith((".up.weight", ".up.bias"))}  # W_up and the static bias, per layer
    assert len(up_side) == 2 * layers and {n for n in names if is_up_side(n)} == up_side
    before = {n: p.detach().clone() for n, p in para.named_parameters() if ".down." in n}
    scale_down_init(para, 0.5)
    for name, param in para.named_parameters():
        if name in before:
            assert torch.equal(param, before[name] * 0.5)

    from transformers import TrainingArguments

    args = TrainingArguments(output_dir="/tmp/unused", learning_rate=1e-3, report_to=[], use_cpu=True)
    trainer = ResponseTrainer(model=para, args=args, para=True, run_log=None, up_lr_ratio=16.0)
    optimizer = trainer.create_optimizer()
    rates = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    for name, param in para.named_parameters():
        if param.requires_grad:
            assert rates[id(param)] == pytest.approx(1.6e-2 if is_up_side(name) else 1e-3), name
    assert trainer.create_optimizer() is optimizer  # asked again, it is not split twice


def test_variant_settings_are_refused_for_other_methods():
    with pytest.raises(ValueError, match="apply to PARA only"):
        attach(tiny_model("llama"), "lora", 4, para_form={"static_bias": True})
    with pytest.raises(ValueError, match="LoRA targets must be"):
        attach(tiny_model("llama"), "lora", 4, targets=["q", "attention"])


def test_per_head_vectors_refuse_a_generator_without_the_head_width():
    """A per-head generator built without the model's head width would silently be a per-channel one."""
    from parapeft.generator import VectorGenerator

    widths = {"q": 32, "k": 16, "v": 16, "o": 32, "up": 64, "down": 32}
    with pytest.raises(ValueError, match="head width"):
        VectorGenerator(32, widths, ParaConfig(r=2, granularity="head"))
    per_head = VectorGenerator(32, widths, ParaConfig(r=2, granularity="head"), head_dim=8)
    assert per_head.up.out_features == 32 // 8 + 16 // 8 + 64  # q and v per head, up per channel
