"""Configuration, supported architectures and parameter counts."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from parapeft import ParaConfig, UnsupportedArchitectureError, get_para_model
from parapeft.config import POOLERS
from tiny_models import ARCHS, tiny_model


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"r": 0}, "r must be a positive integer"),
        ({"pooler": "median"}, "pooler must be one of"),
        ({"activation": "tanh"}, "activation must be one of"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"targets": ["gate"]}, "targets must be"),
        ({"targets": []}, "targets must be"),
        ({"targets": ["q", "q"]}, "targets must be"),
        ({"static_bias": 1}, "static_bias must be"),
        ({"scale_form": "exp"}, "scale_form must be"),
        ({"generator_input": "embeddings"}, "generator_input must be"),
        ({"layers_to_transform": [-1]}, "non-negative"),
    ],
)
def test_invalid_config_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ParaConfig(**kwargs)


def test_config_round_trips_through_json(tmp_path):
    config = ParaConfig(r=7, pooler="last", activation="gelu", targets=["up", "q"], layers_to_transform=[3, 1])
    config.save(tmp_path)
    loaded = ParaConfig.load(tmp_path)
    assert loaded == config and loaded.targets == ["q", "up"] and loaded.layers_to_transform == [1, 3]


def expected_count(hidden, q, v, up, layers, r, pooler="mean"):
    return layers * (hidden * r + r * (q + v + up) + (hidden if pooler == "attention" else 0))


def test_llama2_7b_count_matches_the_design_arithmetic():
    config = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=32, vocab_size=32000)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    para = get_para_model(model, ParaConfig(r=12))
    trainable, total = para.get_nb_trainable_parameters()
    assert trainable == 8_945_664 == 32 * 12 * (4096 + 4096 + 4096 + 11008)
    assert total - trainable == sum(p.numel() for p in model.parameters() if not p.requires_grad)


@pytest.mark.parametrize("pooler", POOLERS)
@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_counts_follow_the_formula_with_gqa_value_width(arch, pooler):
    model = tiny_model(arch)
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    q, v = cfg.num_attention_heads * head_dim, cfg.num_key_value_heads * head_dim
    para = get_para_model(model, ParaConfig(r=5, pooler=pooler))
    assert para.dims["v"] == v < q  # d_v is v_proj's width under grouped-query attention
    assert para.get_nb_trainable_parameters()[0] == expected_count(cfg.hidden_size, q, v, cfg.intermediate_size, 2, 5, pooler)


def test_unsupported_architecture_names_the_supported_ones():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=64))
    with pytest.raises(UnsupportedArchitectureError, match="model_type 'gpt2'.*supported: gemma, gemma2, gemma3_text, llama, mistral, qwen2, qwen3"):
        get_para_model(gpt2, ParaConfig())


def test_calling_the_wrapped_backbone_directly_is_an_error():
    para = get_para_model(tiny_model("llama"), ParaConfig(r=2))
    with pytest.raises(RuntimeError, match="called through its ParaModel"):
        para.base_model(input_ids=torch.tensor([[5, 6, 7]]))


def test_the_inner_decoder_called_after_a_pass_refuses_instead_of_reusing_that_passs_prompt():
    """``base_model.model`` has no labels to say where the prompt is: after a ParaModel forward of the same
    shape it must not pool with that pass's prompt mask. The wrapper's own passes and a backbone called with
    labels still run through it."""
    para = get_para_model(tiny_model("llama"), ParaConfig(r=2))
    ids = torch.tensor([[5, 6, 7]])
    para(input_ids=ids)
    with pytest.raises(RuntimeError, match="called through its ParaModel"):
        para.base_model.model(input_ids=ids)
    labels = ids.clone()
    labels[0, :2] = -100
    para.base_model(input_ids=ids, labels=labels)  # the backbone's hook prepared the pass: no error
    para(input_ids=ids)
    para.generate(input_ids=ids, max_new_tokens=2, do_sample=False)
    with pytest.raises(RuntimeError, match="called through its ParaModel"):
        para.base_model.model(input_ids=ids)
    with pytest.raises(RuntimeError):
        para.base_model(input_ids=ids, labels=torch.full((1, 4), -100))  # a failed pass leaves no count behind
    with pytest.raises(RuntimeError, match="called through its ParaModel"):
        para.base_model.model(input_ids=ids)


def test_rows_without_prompt_and_wrong_adapter_lists_are_rejected():
    para = get_para_model(tiny_model("llama"), ParaConfig(r=2))
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    with pytest.raises(ValueError, match="at least one prompt position"):
        para(input_ids=ids, labels=torch.tensor([[-100, 6, 7], [8, 9, 10]]))
    with pytest.raises(ValueError, match="adapter_names has 1 entries for a batch of 2"):
        para(input_ids=ids, adapter_names=["default"])
    with pytest.raises(KeyError, match="unknown adapter 'nope'"):
        para(input_ids=ids, adapter_names=["default", "nope"])


def test_a_lora_config_read_as_para_names_its_peft_type():
    lora = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"], "alpha_pattern": {}}
    with pytest.raises(ValueError, match="not a PARA adapter config \\(peft_type='LORA'\\)"):
        ParaConfig.from_dict(lora)


def test_peft_s_adapter_toggles_work_and_its_merges_are_refused_by_name():
    from parapeft.peft_surface import NotSupportedForParaError
    from tiny_models import randomize_adapter

    base = tiny_model("llama")
    ids = torch.randint(3, 90, (1, 6))
    with torch.no_grad():
        bare = base(input_ids=ids).logits
    para = get_para_model(base, ParaConfig(r=4))
    randomize_adapter(para, "default", 1)
    with torch.no_grad():
        adapted = para(input_ids=ids).logits
        para.disable_adapters()
        assert torch.equal(para(input_ids=ids).logits, bare)
        para.enable_adapters()
        assert torch.equal(para(input_ids=ids).logits, adapted) and not torch.equal(adapted, bare)
    state = para.get_adapter_state_dict()
    assert state.keys() == para.adapter_state_dict("default").keys()
    for name in ("merge_and_unload", "merge_adapter", "unmerge_adapter"):
        with pytest.raises(NotSupportedForParaError, match=f"ParaModel.{name} is not supported"):
            getattr(para, name)()


def test_a_row_that_packs_several_sequences_is_refused():
    """TRL's packing / padding_free put several examples in one row, their positions starting again: PARA would
    pool them into one prompt's vectors. Left padding, whose padded positions repeat, is not packing."""
    para = get_para_model(tiny_model("llama"), ParaConfig(r=4))
    ids = torch.randint(3, 90, (1, 6))
    with pytest.raises(ValueError, match="packs several sequences"):
        para(input_ids=ids, position_ids=torch.tensor([[0, 1, 2, 0, 1, 2]]))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1]])
    para(input_ids=ids, attention_mask=mask, position_ids=torch.tensor([[1, 1, 0, 1, 2, 3]]))  # HF's left padding
    para(input_ids=ids, position_ids=torch.arange(6).unsqueeze(0))
