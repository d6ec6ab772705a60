"""Tiny random causal LMs of every supported architecture (hidden 32, 2 layers), for fast CPU tests."""

from __future__ import annotations

import torch
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GemmaConfig,
    GemmaForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

VOCAB = 96
PAD_ID = 0
_COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,  # grouped-query attention: v_proj is narrower than q_proj
    max_position_embeddings=128,
    pad_token_id=PAD_ID,
    bos_token_id=1,
    eos_token_id=2,
)

FACTORIES = {
    "llama": (LlamaConfig, LlamaForCausalLM, {}),
    "mistral": (MistralConfig, MistralForCausalLM, {"sliding_window": None}),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, {}),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM, {"head_dim": 8}),
    "gemma": (GemmaConfig, GemmaForCausalLM, {"head_dim": 8}),
    "gemma2": (Gemma2Config, Gemma2ForCausalLM, {"head_dim": 8, "sliding_window": 64}),
    "gemma3_text": (Gemma3TextConfig, Gemma3ForCausalLM, {"head_dim": 8, "sliding_window": 64}),
}
ARCHS = list(FACTORIES)


def tiny_model(arch: str, seed: int = 0) -> torch.nn.Module:
    config_cls, model_cls, extra = FACTORIES[arch]
    torch.manual_seed(seed)
    config = config_cls(**_COMMON, **extra)
    config._attn_implementation = "eager"
    model = model_cls(config).eval()
    return model


def randomize_adapter(para, adapter_name: str, seed: int, scale: float = 0.5) -> None:
    """Give an adapter non-zero weights (a fresh one is the identity), so tests see real adjustments."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in para.layers:
            if adapter_name in layer.adapters:
                for param in layer.adapters[adapter_name].parameters():
                    param.copy_(torch.randn(param.shape, generator=generator) * scale)


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def save_tiny_checkpoint(path, corpus: list[str], chat: bool = True, vocab_size: int = 300, context: int = 64) -> None:
    """A random 2-layer Llama and a byte-level BPE tokenizer trained on ``corpus``, saved as an HF directory.

    With ``chat`` the tokenizer gets ChatML special tokens and template, like the embedded SmolLM2.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] if chat else ["<eos>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=specials[-1], pad_token=specials[-1])
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


def save_random_lora(model: torch.nn.Module, directory, rank: int, seed: int, scale: float,
                     targets=("q_proj", "v_proj")):
    """Wrap ``model`` in a peft LoRA adapter whose B matrices are random (so it changes the output; peft
    initialises B to zero), save it to ``directory`` and return the peft model."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets)))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    peft_model.save_pretrained(directory)
    return peft_model
