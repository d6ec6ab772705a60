"""Saving and loading adapters: exact round trips, clear errors for anything wrong."""

from __future__ import annotations

import json

import pytest
import torch

from parapeft import AdapterLoadError, ParaConfig, ParaModel, get_para_model
from parapeft.adapter_io import MAX_ABS_WEIGHT
from tiny_models import ARCHS, VOCAB, randomize_adapter, tiny_model
from transformers import LlamaConfig, LlamaForCausalLM


def saved_adapter(tmp_path, arch="llama", pooler="attention", **config):
    para = get_para_model(tiny_model(arch), ParaConfig(r=4, pooler=pooler, **config))
    randomize_adapter(para, "default", seed=3)
    para.save_pretrained(tmp_path / "adapter")
    return para, tmp_path / "adapter"


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_round_trip_is_exact(tmp_path, arch):
    para, directory = saved_adapter(tmp_path, arch, layers_to_transform=[1])
    assert sorted(p.name for p in directory.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    ids = torch.randint(3, VOCAB, (2, 9))
    with torch.no_grad():
        expected = para(input_ids=ids).logits
    loaded = ParaModel.from_pretrained(tiny_model(arch), directory)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, expected)
    for key, value in para.adapter_state_dict().items():
        assert torch.equal(loaded.adapter_state_dict()[key], value)


def test_several_named_adapters_on_one_backbone(tmp_path):
    para, directory = saved_adapter(tmp_path)
    other = get_para_model(tiny_model("llama"), ParaConfig(r=2, pooler="max", targets=["v", "up"]))
    randomize_adapter(other, "default", seed=9)
    other.save_pretrained(tmp_path / "other")
    host = ParaModel.from_pretrained(tiny_model("llama"), directory, adapter_name="first")
    host.load_adapter(tmp_path / "other", "second")
    ids = torch.randint(3, VOCAB, (1, 7))
    with torch.no_grad():
        host.set_adapter("second")
        assert torch.equal(host(input_ids=ids).logits, other(input_ids=ids).logits)
        host.set_adapter("first")
        assert torch.equal(host(input_ids=ids).logits, para(input_ids=ids).logits)
    # Loading into a loaded name replaces its weights (peft's rule; Trainer resumes that way), shapes permitting.
    with pytest.raises(ValueError, match="differs in r, pooler, targets"):
        host.load_adapter(tmp_path / "other", "first")
    with pytest.raises(KeyError, match="unknown adapter 'third'"):
        host.set_adapter("third")


def test_trainable_load_resumes_training(tmp_path):
    _, directory = saved_adapter(tmp_path)
    para = ParaModel.from_pretrained(tiny_model("llama"), directory, is_trainable=True)
    trainable = [n for n, p in para.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("layers.") for n in trainable)


def corrupt(path):
    data = bytearray(path.read_bytes())
    data[:8] = (10**9).to_bytes(8, "little")  # header length far beyond the file
    path.write_bytes(bytes(data))


def test_corrupt_weights_give_a_clear_error_and_leave_the_backbone_untouched(tmp_path):
    _, directory = saved_adapter(tmp_path)
    corrupt(directory / "adapter_model.safetensors")
    model = tiny_model("llama")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(AdapterLoadError, match="not a valid safetensors file"):
        ParaModel.from_pretrained(model, directory)
    assert set(model.state_dict()) == set(before)  # wrappers removed again
    ids = torch.randint(3, VOCAB, (1, 5))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, tiny_model("llama")(input_ids=ids).logits)


def test_truncated_or_garbage_files_are_rejected(tmp_path):
    _, directory = saved_adapter(tmp_path)
    weights = directory / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(AdapterLoadError):
        ParaModel.from_pretrained(tiny_model("llama"), directory)
    weights.write_bytes(b"\x80\x04\x95 this is a pickle, not safetensors")
    with pytest.raises(AdapterLoadError, match="safetensors"):
        ParaModel.from_pretrained(tiny_model("llama"), directory)


def test_adapter_for_another_backbone_is_refused(tmp_path):
    _, directory = saved_adapter(tmp_path)
    wider = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=48, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    with pytest.raises(AdapterLoadError, match="does not fit this backbone.*hidden: adapter 32 vs backbone 64"):
        ParaModel.from_pretrained(wider, directory)
    with pytest.raises(AdapterLoadError, match="model_type 'llama', the backbone is 'qwen2'"):
        ParaModel.from_pretrained(tiny_model("qwen2"), directory)


def test_weights_that_disagree_with_the_config_are_refused(tmp_path):
    _, directory = saved_adapter(tmp_path)
    config = json.loads((directory / "adapter_config.json").read_text())
    config["r"] = 5
    (directory / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterLoadError, match=r"down.weight has shape \(4, 32\), expected \(5, 32\)"):
        ParaModel.from_pretrained(tiny_model("llama"), directory)
    config.update(r=4, pooler="mean")
    (directory / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterLoadError, match="unexpected.*scorer"):
        ParaModel.from_pretrained(tiny_model("llama"), directory)


def test_bad_config_files_are_refused(tmp_path):
    _, directory = saved_adapter(tmp_path)
    (directory / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterLoadError, match="not valid JSON"):
        ParaModel.from_pretrained(tiny_model("llama"), directory)
    (directory / "adapter_config.json").write_text(json.dumps({"r": 4, "peft_type": "LORA"}))
    with pytest.raises(AdapterLoadError, match="not a PARA adapter"):
        ParaModel.from_pretrained(tiny_model("llama"), directory)
    (directory / "adapter_config.json").unlink()
    with pytest.raises(AdapterLoadError, match="no adapter_config.json"):
        ParaModel.from_pretrained(tiny_model("llama"), directory)


def test_nan_weights_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    _, directory = saved_adapter(tmp_path)
    tensors = load_file(directory / "adapter_model.safetensors")
    tensors["layers.0.up.weight"][0, 0] = float("nan")
    save_file(tensors, directory / "adapter_model.safetensors")
    with pytest.raises(AdapterLoadError, match="NaN"):
        ParaModel.from_pretrained(tiny_model("llama"), directory)


def _with_weight(directory, key, value):
    from safetensors.torch import load_file, save_file

    tensors = load_file(directory / "adapter_model.safetensors")
    tensors[key][0, 0] = value
    save_file(tensors, directory / "adapter_model.safetensors")


@pytest.mark.parametrize("value", [1e30, -1e4, MAX_ABS_WEIGHT * 1.01])
def test_weights_above_the_magnitude_limit_are_refused_naming_the_tensor(tmp_path, value):
    _, directory = saved_adapter(tmp_path)
    _with_weight(directory, "layers.1.down.weight", value)
    with pytest.raises(AdapterLoadError, match=r"tensor layers\.1\.down\.weight holds a weight of magnitude .* above the limit of 1000"):
        ParaModel.from_pretrained(tiny_model("llama"), directory)
    host = get_para_model(tiny_model("llama"), ParaConfig(r=4))
    with pytest.raises(AdapterLoadError, match="above the limit"):
        host.read_adapter(directory)  # what a worker's validate_only runs for an upload


def test_weights_at_the_magnitude_limit_load(tmp_path):
    _, directory = saved_adapter(tmp_path)
    _with_weight(directory, "layers.0.up.weight", -MAX_ABS_WEIGHT)
    ParaModel.from_pretrained(tiny_model("llama"), directory)


def test_committed_adapters_stay_far_below_the_magnitude_limit():
    from pathlib import Path

    from safetensors.torch import load_file

    files = sorted((Path(__file__).resolve().parents[1] / "adapters").glob("*/*/adapter_model.safetensors"))
    assert files
    for path in files:
        peak = max(t.abs().max().item() for t in load_file(path).values())
        assert peak < MAX_ABS_WEIGHT / 100, path


def test_dims_that_are_not_an_object_are_refused_clearly(tmp_path):
    _, directory = saved_adapter(tmp_path)
    config = json.loads((directory / "adapter_config.json").read_text())
    (directory / "adapter_config.json").write_text(json.dumps({**config, "dims": "x"}))
    with pytest.raises(AdapterLoadError, match="dims must be an object"):
        ParaModel.from_pretrained(tiny_model("llama"), directory)
