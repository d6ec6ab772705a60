"""Hub conventions: canonical base model id and named variant, model card YAML, Hub ids from an offline cache,
peft's generic config keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from parapeft import ParaConfig, ParaModel, PeftKeyWarning, get_para_model, load_base_model
from parapeft.backbones.identity import backbone_identity, backbone_to_load
from parapeft.backbones.materialize import MANIFEST_NAME
from tiny_models import VOCAB, randomize_adapter, save_tiny_checkpoint, tiny_model

REPO_ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
CORPUS = ["the cat sat on the mat and the dog ran to the park"] * 20


def named_model_dir(tmp_path) -> Path:
    """A model directory laid out as the named-model cache lays out smollm2-135m (manifest included)."""
    path = tmp_path / "models" / "smollm2-135m"
    save_tiny_checkpoint(path, CORPUS, chat=True, vocab_size=120)
    (path / MANIFEST_NAME).write_text(json.dumps({"format": 1, "name": "smollm2-135m"}))
    return path


def test_an_adapter_records_the_canonical_id_and_the_named_variant_never_the_path(tmp_path):
    model, _ = load_base_model(str(named_model_dir(tmp_path)))
    para = get_para_model(model, ParaConfig(r=2))
    para.save_pretrained(tmp_path / "adapter", task="copa", metrics={"accuracy": 0.625})
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == SMOLLM2 and config["base_model_variant"] == "smollm2-135m"
    assert str(tmp_path) not in (tmp_path / "adapter" / "adapter_config.json").read_text()
    card = ModelCard.load(tmp_path / "adapter" / "README.md")
    assert card.data.library_name == "parapeft" and card.data.base_model == SMOLLM2
    assert card.data.pipeline_tag == "text-generation" and f"base_model:adapter:{SMOLLM2}" in card.data.tags
    assert card.data.datasets == ["aps/super_glue"]
    (result,) = card.data.eval_results
    assert (result.metric_type, result.metric_value, result.dataset_config) == ("accuracy", 0.625, "copa")
    assert backbone_to_load(config["base_model_name_or_path"], config["base_model_variant"]) == "smollm2-135m"


def test_identity_of_hub_cache_snapshots_hub_ids_and_own_paths():
    assert backbone_identity("/c/hub/models--Qwen--Qwen3-0.6B/snapshots/abc123") == ("Qwen/Qwen3-0.6B", None)
    assert backbone_identity("Qwen/Qwen3-0.6B") == ("Qwen/Qwen3-0.6B", None)
    assert backbone_identity("smollm2-135m") == (SMOLLM2, "smollm2-135m")
    assert backbone_identity("/home/me/my-model") == ("/home/me/my-model", None)  # no other name exists
    with pytest.raises(ValueError, match="named model 'nope'"):
        backbone_to_load(SMOLLM2, "nope")


@pytest.mark.parametrize("directory", sorted((REPO_ROOT / "adapters").glob("*/*")), ids=lambda p: p.name)
def test_committed_adapters_follow_hub_conventions(directory):
    config = ParaConfig.load(directory)
    assert config.base_model_name_or_path == SMOLLM2 and config.base_model_variant == "smollm2-135m"
    card = ModelCard.load(directory / "README.md")
    assert card.data.library_name == "parapeft" and card.data.base_model == SMOLLM2
    assert card.data.eval_results and card.data.eval_results[0].dataset_name == directory.name


def test_peft_generic_keys_load_with_a_warning_and_contradicting_ones_are_refused():
    data = ParaConfig(r=3).to_dict()
    peft_keys = {"peft_version": "0.21.2", "task_type": "CAUSAL_LM", "revision": None, "inference_mode": True}
    with pytest.warns(PeftKeyWarning, match="peft_version='0.21.2', inference_mode=True"):
        assert ParaConfig.from_dict({**data, **peft_keys}).r == 3
    with pytest.raises(ValueError, match="task_type 'SEQ_CLS'"):
        ParaConfig.from_dict({**data, "task_type": "SEQ_CLS"})
    with pytest.raises(ValueError, match="unknown keys in PARA adapter config: lora_alpha"):
        ParaConfig.from_dict({**data, "lora_alpha": 16})


def hub_snapshot(cache: Path, repo_id: str, source: Path, commit: str) -> None:
    """Lay ``source``'s files out as huggingface_hub's cache holds a downloaded repository."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in source.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


OFFLINE_CHECK = """
import json, sys, torch
from parapeft import ParaModel, load_base_model
from parapeft.cli.main import main
model, tokenizer = load_base_model("test-org/tiny-chat")
para = ParaModel.from_pretrained(model, "test-org/para-adapter")
with torch.no_grad():
    logits = para(input_ids=torch.tensor([[5, 6, 7, 8]])).logits
torch.save(logits, sys.argv[1])
print("config", json.dumps(para.peft_config["default"].base_model_name_or_path))
sys.exit(main(["generate", "--adapter", "test-org/para-adapter", "--max-new-tokens", "2", "--prompt", "hello"]))
"""


def test_models_and_adapters_load_by_hub_id_from_an_offline_cache(tmp_path):
    save_tiny_checkpoint(tmp_path / "tiny", CORPUS, chat=True, vocab_size=120)
    cache = tmp_path / "hub"
    hub_snapshot(cache, "test-org/tiny-chat", tmp_path / "tiny", "a" * 40)
    model, _ = load_base_model(str(cache / "models--test-org--tiny-chat" / "snapshots" / ("a" * 40)))
    para = get_para_model(model, ParaConfig(r=3))
    randomize_adapter(para, "default", 5, scale=0.3)
    para.save_pretrained(tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == "test-org/tiny-chat"
    hub_snapshot(cache, "test-org/para-adapter", tmp_path / "adapter", "b" * 40)
    with torch.no_grad():
        expected = para(input_ids=torch.tensor([[5, 6, 7, 8]])).logits
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", OFFLINE_CHECK, str(tmp_path / "logits.pt")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'config "test-org/tiny-chat"' in done.stdout
    assert torch.equal(torch.load(tmp_path / "logits.pt"), expected)


def test_an_uncached_hub_id_offline_is_a_clear_adapter_error(tmp_path):
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    code = ("from parapeft.hub import resolve_adapter_dir\n"
            "try:\n    resolve_adapter_dir('test-org/missing')\nexcept ValueError as err:\n    print(err)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "neither in the cache nor downloadable" in done.stdout, done.stderr[-2000:]


def test_a_fresh_adapter_records_a_local_models_path_as_given():
    para = get_para_model(tiny_model("llama"), ParaConfig(r=2))
    assert para.peft_config["default"].base_model_variant is None
    assert "base_model_variant" not in para.peft_config["default"].to_dict()  # written only when set
    assert para(input_ids=torch.randint(3, VOCAB, (1, 4))).logits.shape[-1] == VOCAB
