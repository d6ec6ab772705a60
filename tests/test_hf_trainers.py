"""A ParaModel trains unchanged under transformers.Trainer and trl.SFTTrainer (real trainers, tiny model, CPU).

Each trainer: the loss on the training examples goes down, a checkpoint holds the adapter alone,
ParaModel.from_pretrained on it reproduces the trained model's logits exactly, and a run resumed from
a checkpoint ends where the uninterrupted run ends. The paths the trainers call (TRL's fused LM head
on the backbone, a backbone called with labels) give the loss and vectors of ParaModel's own forward.
"""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments
from trl import SFTConfig, SFTTrainer
from trl.trainer.utils import add_fused_lm_head

from parapeft import ParaConfig, ParaModel, get_para_model, load_base_model
from parapeft.tasks import get_task, render_prompt
from parapeft.training.batching import collate, encode_for_training
from tiny_models import VOCAB, randomize_adapter, save_tiny_checkpoint, tiny_model

ADAPTER_ONLY = {"adapter_config.json", "adapter_model.safetensors", "README.md"}
BACKBONE_FILES = {"model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-chat")
    copa = get_task("copa").examples("train")
    save_tiny_checkpoint(path, [f"{e.prompt} {e.target}" for e in copa] * 2, chat=True, vocab_size=400, context=256)
    return str(path)


@pytest.fixture(scope="module")
def examples():
    return get_task("copa").examples("train", limit=16)


def fresh_para(tiny_dir):
    model, tokenizer = load_base_model(tiny_dir)
    torch.manual_seed(0)
    return get_para_model(model, ParaConfig(r=4)), tokenizer


def training_loss(para, tokenizer, examples) -> float:
    batch = collate([encode_for_training(tokenizer, e, 256) for e in examples], tokenizer.pad_token_id)
    para.eval()
    with torch.no_grad():
        return para(**batch).loss.item()


def assert_adapter_only(checkpoint):
    names = {p.name for p in checkpoint.iterdir()}
    assert ADAPTER_ONLY <= names, names
    assert not names & BACKBONE_FILES, names
    assert all(k.startswith("layers.") for k in load_file(str(checkpoint / "adapter_model.safetensors")))


def assert_reloads_exactly(para, tiny_dir, checkpoint, tokenizer, examples):
    batch = collate([encode_for_training(tokenizer, e, 256) for e in examples[:4]], tokenizer.pad_token_id)
    para.eval()
    with torch.no_grad():
        expected = para(**batch).logits
        reloaded = ParaModel.from_pretrained(load_base_model(tiny_dir)[0], checkpoint)
        assert torch.equal(reloaded(**batch).logits, expected)


def final_adapter(para) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in para.adapter_state_dict().items()}


# ------------------------------------------------------------------------------------------------ TRL
def sft_dataset(examples, chat: bool) -> Dataset:
    if chat:  # conversational prompt-completion records
        rows = [{"prompt": [{"role": "user", "content": e.prompt}], "completion": [{"role": "assistant", "content": e.target}]}
                for e in examples]
    else:
        rows = [{"prompt": e.prompt, "completion": " " + e.target} for e in examples]
    return Dataset.from_list(rows)


def sft_args(out, **overrides) -> SFTConfig:
    values = dict(output_dir=str(out), max_steps=8, per_device_train_batch_size=4, learning_rate=5e-2, logging_steps=1,
                  save_steps=4, report_to=[], use_cpu=True, seed=0, lr_scheduler_type="constant", max_length=256,
                  disable_tqdm=True, bf16=False)  # fp32: the reload check compares logits exactly
    values.update(overrides)
    return SFTConfig(**values)


@pytest.mark.parametrize("chat", [True, False], ids=["chat", "prompt-completion"])
def test_sft_trainer_trains_a_para_model_and_checkpoints_the_adapter_alone(tiny_dir, examples, tmp_path, chat):
    para, tokenizer = fresh_para(tiny_dir)
    before = training_loss(para, tokenizer, examples)
    trainer = SFTTrainer(model=para, args=sft_args(tmp_path), train_dataset=sft_dataset(examples, chat),
                         processing_class=tokenizer)
    trainer.train()
    assert training_loss(para, tokenizer, examples) < before - 0.01
    checkpoint = tmp_path / "checkpoint-8"
    assert_adapter_only(checkpoint)
    assert_reloads_exactly(para, tiny_dir, checkpoint, tokenizer, examples)


# ChatML with the {% generation %} markers TRL's assistant_only_loss reads (which positions are the assistant's).
TRAINING_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}<|im_start|>assistant\n{% generation %}"
    "{{ m['content'] }}<|im_end|>{% endgeneration %}\n{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def messages_dataset(examples) -> Dataset:
    return Dataset.from_list([{"messages": [{"role": "user", "content": e.prompt}, {"role": "assistant", "content": e.target}]}
                              for e in examples])


def test_sft_trainer_on_chat_messages_with_assistant_only_loss(tiny_dir, examples, tmp_path):
    para, tokenizer = fresh_para(tiny_dir)
    tokenizer.chat_template = TRAINING_TEMPLATE
    before = training_loss(para, tokenizer, examples)
    trainer = SFTTrainer(model=para, args=sft_args(tmp_path, assistant_only_loss=True),
                         train_dataset=messages_dataset(examples), processing_class=tokenizer)
    trainer.train()
    assert training_loss(para, tokenizer, examples) < before - 0.01
    assert_adapter_only(tmp_path / "checkpoint-8")


def test_sft_trainer_with_a_loss_on_every_token_is_refused_by_name(tiny_dir, examples, tmp_path):
    """Language-modelling a whole transcript leaves no prompt to pool: a clear error, not silent training."""
    para, tokenizer = fresh_para(tiny_dir)
    trainer = SFTTrainer(model=para, args=sft_args(tmp_path), train_dataset=messages_dataset(examples),
                         processing_class=tokenizer)
    with pytest.raises(ValueError, match="at least one prompt position"):
        trainer.train()


def test_sft_trainer_resumes_where_it_stopped(tiny_dir, examples, tmp_path):
    data = sft_dataset(examples, chat=True)
    whole, tokenizer = fresh_para(tiny_dir)
    SFTTrainer(model=whole, args=sft_args(tmp_path / "whole"), train_dataset=data, processing_class=tokenizer).train()
    resumed, _ = fresh_para(tiny_dir)
    trainer = SFTTrainer(model=resumed, args=sft_args(tmp_path / "parts"), train_dataset=data, processing_class=tokenizer)
    trainer.train(resume_from_checkpoint=str(tmp_path / "whole" / "checkpoint-4"))
    assert trainer.state.global_step == 8
    a, b = final_adapter(whole), final_adapter(resumed)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_trl_fused_head_and_a_backbone_called_with_labels_give_paras_own_loss_and_vectors():
    """TRL computes the loss on the patched backbone; PARA must pool the same prompt positions as its forward."""
    para = get_para_model(tiny_model("llama"), ParaConfig(r=4))
    randomize_adapter(para, "default", 1, scale=0.3)
    ids = torch.randint(3, VOCAB, (3, 12))
    labels = ids.clone()
    labels[0, :5] = labels[1, :8] = labels[2, :3] = -100
    attention = torch.ones_like(ids)
    attention[1, 10:] = 0
    labels[1, 10:] = -100
    reference = para(input_ids=ids, attention_mask=attention, labels=labels)
    reference_vectors = [dict(v) for v in para.last_vectors()]
    direct = para.get_base_model()(input_ids=ids, attention_mask=attention, labels=labels)
    torch.testing.assert_close(direct.loss, reference.loss)
    add_fused_lm_head(para.get_base_model())  # what SFTTrainer does to a peft model's base model
    fused = para(input_ids=ids, attention_mask=attention, labels=labels, fused_lm_head=True)
    torch.testing.assert_close(fused.loss, reference.loss, atol=1e-5, rtol=1e-5)
    for got, want in zip(para.last_vectors(), reference_vectors):
        assert all(torch.equal(got[t], want[t]) for t in want)
    completion = (labels != -100).long()
    by_completion_mask = para(input_ids=ids, attention_mask=attention, completion_mask=completion)
    torch.testing.assert_close(by_completion_mask.logits, reference.logits)


def test_a_training_forward_without_the_prompt_is_refused():
    """A trainer that drops labels (label smoothing, custom loss) would let responses reach the pooler."""
    para = get_para_model(tiny_model("llama"), ParaConfig(r=2))
    para.train()
    with pytest.raises(ValueError, match="does not say where the prompt is"):
        para(input_ids=torch.randint(3, VOCAB, (2, 6)))


# ------------------------------------------------------------------------------------ transformers.Trainer
def trainer_dataset(tokenizer, examples) -> Dataset:
    rows = [encode_for_training(tokenizer, e, 256) for e in examples]
    return Dataset.from_list([{"input_ids": r.input_ids, "labels": r.labels} for r in rows])


def trainer_args(out, **overrides) -> TrainingArguments:
    values = dict(output_dir=str(out), max_steps=8, per_device_train_batch_size=4, learning_rate=5e-2, logging_steps=1,
                  save_steps=4, report_to=[], use_cpu=True, seed=0, lr_scheduler_type="constant", disable_tqdm=True,
                  remove_unused_columns=False, bf16=False)
    values.update(overrides)
    return TrainingArguments(**values)


def hf_trainer(para, tokenizer, examples, out) -> Trainer:
    return Trainer(model=para, args=trainer_args(out), train_dataset=trainer_dataset(tokenizer, examples),
                   data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True), processing_class=tokenizer)


def test_transformers_trainer_trains_checkpoints_the_adapter_alone_and_resumes(tiny_dir, examples, tmp_path):
    whole, tokenizer = fresh_para(tiny_dir)
    before = training_loss(whole, tokenizer, examples)
    hf_trainer(whole, tokenizer, examples, tmp_path / "whole").train()
    assert training_loss(whole, tokenizer, examples) < before - 0.01
    checkpoint = tmp_path / "whole" / "checkpoint-8"
    assert_adapter_only(checkpoint)
    assert_adapter_only(tmp_path / "whole" / "checkpoint-4")
    assert_reloads_exactly(whole, tiny_dir, checkpoint, tokenizer, examples)

    resumed, _ = fresh_para(tiny_dir)
    trainer = hf_trainer(resumed, tokenizer, examples, tmp_path / "parts")
    trainer.train(resume_from_checkpoint=str(tmp_path / "whole" / "checkpoint-4"))
    assert trainer.state.global_step == 8
    a, b = final_adapter(whole), final_adapter(resumed)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_loading_into_a_loaded_adapter_replaces_its_weights_in_place(tiny_dir, tmp_path):
    """How Trainer resumes: load_adapter into the active adapter keeps the parameters an optimizer holds."""
    para, _ = fresh_para(tiny_dir)
    params = [p for p in para.parameters() if p.requires_grad]
    other, _ = fresh_para(tiny_dir)
    randomize_adapter(other, "default", 3, scale=0.2)
    other.save_pretrained(tmp_path / "saved")
    para.load_adapter(tmp_path / "saved", "default", is_trainable=True)
    assert [p for p in para.parameters() if p.requires_grad] == params
    assert all(torch.equal(para.adapter_state_dict()[k], v) for k, v in other.adapter_state_dict().items())
    with pytest.raises(ValueError, match="differs in r"):
        bigger = get_para_model(tiny_model("llama"), ParaConfig(r=6))
        bigger.save_pretrained(tmp_path / "r6")
        small = get_para_model(tiny_model("llama"), ParaConfig(r=4))
        small.load_adapter(tmp_path / "r6", "default")


def test_prompt_rendering_matches_the_chat_template_trl_applies(tiny_dir, examples):
    """The chat dataset above trains on the same prompt text as para train (so TRL and para train agree)."""
    _, tokenizer = fresh_para(tiny_dir)
    example = examples[0]
    trl_prompt = tokenizer.apply_chat_template([{"role": "user", "content": example.prompt}], tokenize=False,
                                               add_generation_prompt=True)
    assert trl_prompt == render_prompt(example, tokenizer)
