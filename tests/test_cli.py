"""The ``para`` command as a user runs it (subprocesses of the installed entry point)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from parapeft import ParaConfig, get_para_model
from tiny_models import randomize_adapter, tiny_model


def para(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parapeft.cli.main", *args], capture_output=True, text=True, timeout=timeout)


def test_help_lists_every_command():
    result = para("--help")
    assert result.returncode == 0
    for command in ("demo", "train", "eval", "generate", "info"):
        assert command in result.stdout
        sub = para(command, "--help")
        assert sub.returncode == 0 and "usage: para " + command in sub.stdout


def test_info_reports_config_count_and_size(tmp_path):
    model = get_para_model(tiny_model("qwen3"), ParaConfig(r=3, pooler="attention", targets=["q", "up"]))
    model.save_pretrained(tmp_path)
    table = para("info", str(tmp_path))
    assert table.returncode == 0, table.stderr
    assert "qwen3" in table.stdout and "attention" in table.stdout and "q, up" in table.stdout
    summary = json.loads(para("info", str(tmp_path), "--json").stdout)
    assert summary["parameters"] == model.get_nb_trainable_parameters()[0]
    assert summary["config"]["r"] == 3 and summary["size_bytes"] > 4 * summary["parameters"]
    assert summary["variant"] == {} and "the paper's" in table.stdout


def test_info_names_a_variants_settings(tmp_path):
    get_para_model(tiny_model("llama"), ParaConfig(r=3, static_bias=True, pool_layer=1)).save_pretrained(tmp_path)
    table = para("info", str(tmp_path))
    assert table.returncode == 0, table.stderr
    assert "static_bias=True, pool_layer=1" in table.stdout


def test_info_on_a_missing_or_corrupt_adapter_is_a_clear_error(tmp_path):
    result = para("info", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "no adapter_config.json" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "adapter_config.json").write_text("[1, 2]")
    result = para("info", str(tmp_path))
    assert result.returncode == 2 and "must hold a JSON object" in result.stderr


@pytest.mark.slow
def test_generate_streams_an_answer_with_an_adapter(tmp_path, smollm2):
    model, _ = smollm2
    adapter = get_para_model(model, ParaConfig(r=4))
    randomize_adapter(adapter, "default", seed=0, scale=0.0)  # trained-shaped but identity: output must equal bare
    adapter.save_pretrained(tmp_path)
    adapter.unload()
    args = ("generate", "--prompt", "What is the capital of France?", "--max-new-tokens", "12")
    bare = para(*args)
    with_adapter = para(*args, "--adapter", str(tmp_path))
    assert bare.returncode == 0 and with_adapter.returncode == 0, with_adapter.stderr
    assert "Paris" in bare.stdout and with_adapter.stdout == bare.stdout


@pytest.mark.slow
def test_generate_refuses_a_prompt_longer_than_the_context():
    result = para("generate", "--raw", "--prompt", "word " * 9000, "--max-new-tokens", "4")
    assert result.returncode == 2 and "exceeds the context of 8192" in result.stderr
