"""Training and evaluation end to end on a tiny local model and the real COPA data."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig

from parapeft.tasks import get_task
from parapeft.training.methods import count_on_meta, load_adapter, match_budget
from parapeft.training.trainer import TrainArgs, train
from tiny_models import save_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny chat model whose tokenizer was trained on COPA text, so sequences stay short."""
    path = tmp_path_factory.mktemp("tiny-chat-llama")
    copa = get_task("copa").examples("train")
    corpus = [f"{e.prompt} {e.target}" for e in copa] * 2
    save_tiny_checkpoint(path, corpus, chat=True, vocab_size=600, context=256)
    return str(path)


def args_for(tiny_dir, out, **overrides) -> TrainArgs:
    values = dict(model=tiny_dir, task="copa", method="para", out=str(out), rank=4, lr=2e-2, batch_size=4,
                  max_steps=8, train_limit=24, eval_limit=8, eval_every=4, eval_batch_size=8, log_every=1,
                  max_length=256, progress=False, dropout=0.1)
    values.update(overrides)
    return TrainArgs(**values)


def losses(out):
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


@pytest.mark.parametrize("method", ["para", "lora", "ia3", "dora"])
def test_training_lowers_the_loss_and_keeps_the_best_adapter(tiny_dir, tmp_path, method):
    summary = train(args_for(tiny_dir, tmp_path, method=method, lr=5e-2 if method == "ia3" else 2e-2,
                             dropout=0.0 if method == "ia3" else 0.1))
    curve = losses(tmp_path)
    assert len(curve) == 8
    assert sum(curve[-3:]) / 3 < sum(curve[:3]) / 3, curve
    # the trainer's own response loss ran (it counts the tokens trained on; the Trainer's default loss does not)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(r["tokens_per_s"] > 0 for r in records if "loss" in r)
    assert summary["trainable_params"] > 0 and summary["dev_metric"] is not None
    for name in ("best", "checkpoints/checkpoint-8", "curves.png", "summary.json", "run_config.json"):
        assert (tmp_path / name).exists(), name
    assert (tmp_path / "best" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("method, variant", [
    ("para", dict(static_bias=True, targets=["q", "k", "v", "o", "up", "down"], scale_form="tanh",
                  generator_input="residual", pool_layer=1, up_lr_ratio=4.0, down_init_scale=0.5)),
    ("lora", dict(targets=["q", "v", "up"], up_lr_ratio=4.0)),
])
def test_a_variant_trains_saves_and_records_its_settings(tiny_dir, tmp_path, method, variant):
    summary = train(args_for(tiny_dir, tmp_path, method=method, budget_match=True, **variant))
    curve = losses(tmp_path)
    assert sum(curve[-3:]) / 3 < sum(curve[:3]) / 3, curve
    assert summary["variant"] == variant
    saved = json.loads((tmp_path / "best" / "adapter_config.json").read_text())
    if method == "para":
        assert saved["targets"] == variant["targets"] and saved["static_bias"] and saved["scale_form"] == "tanh"
        assert summary["rank"] < 4  # six targets and a bias at the paper's r = 4 count
    else:
        assert sorted(saved["target_modules"]) == ["q_proj", "up_proj", "v_proj"]
    recorded = json.loads((tmp_path / "run_config.json").read_text())
    assert recorded["budget_target"] == count_on_meta(AutoConfig.from_pretrained(tiny_dir), "para", 4)


@pytest.mark.parametrize("overrides, message", [
    (dict(method="ia3"), "--dropout applies to PARA, LoRA and DoRA"),  # args_for sets dropout 0.1
    (dict(task="squad", select_by="loglik"), "needs candidate answers"),
    (dict(evals=0, eval_every=None), "--evals must be at least 1"),
])
def test_settings_a_run_cannot_honour_are_refused_before_it_trains(tiny_dir, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        train(args_for(tiny_dir, tmp_path, **overrides))
    assert not (tmp_path / "metrics.jsonl").exists()


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tiny_dir, tmp_path):
    whole = tmp_path / "whole"
    train(args_for(tiny_dir, whole))
    parts = tmp_path / "parts"
    stopped = train(args_for(tiny_dir, parts, stop_after=3))
    assert stopped["stopped_at_step"] == 3 and not (parts / "summary.json").exists()
    train(args_for(tiny_dir, parts, resume=True))
    a = load_file(str(whole / "checkpoints" / "checkpoint-8" / "adapter_model.safetensors"))
    b = load_file(str(parts / "checkpoints" / "checkpoint-8" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert losses(whole) == losses(parts)
    with pytest.raises(FileExistsError, match="not empty"):
        train(args_for(tiny_dir, parts))
    with pytest.raises(ValueError, match=r"other settings \(lr: 0.02 -> 0.05\)"):  # not someone else's checkpoint
        train(args_for(tiny_dir, parts, resume=True, lr=5e-2))


def test_saved_best_adapter_reloads_with_its_recorded_dev_metric(tiny_dir, tmp_path):
    from parapeft.backbones import load_base_model
    from parapeft.evaluation import evaluate

    summary = train(args_for(tiny_dir, tmp_path))
    model, tokenizer = load_base_model(tiny_dir)
    model = load_adapter(model, tmp_path / "best")
    task = get_task("copa")
    result = evaluate(model, tokenizer, task, task.examples("dev", limit=8), max_length=256, progress=False)
    assert result.metrics[summary["metric_name"]] == summary["dev_metric"]


SMOLLM2_SHAPE = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                     num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True)


def test_budget_matching_on_the_smollm2_shape():
    config = AutoConfig.for_model("llama", **SMOLLM2_SHAPE)
    para = count_on_meta(config, "para", 12)
    assert para == 30 * 12 * (576 + 576 + 192 + 1536) == 1_036_800
    assert match_budget(config, "lora", para) == (18, 18 * 30 * (576 + 576 + 576 + 192))  # exactly equal here
    rank, count = match_budget(config, "dora", para)  # DoRA adds a magnitude per output feature
    assert rank == 18 and count == 1_036_800 + 30 * (576 + 192)
    assert match_budget(config, "ia3", para) == (0, 30 * (576 + 192 + 576))  # fixed: one vector per target
    assert match_budget(config, "lora", 100_000)[0] == 2  # 115,200 is closer than 57,600
