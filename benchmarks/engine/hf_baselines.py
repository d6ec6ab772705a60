"""The two Hugging Face baselines of the decoding-step benchmark.

``peft_lora``: HF peft serving many LoRA adapters in one batch (mixed-batch inference: each row names
its adapter in ``adapter_names``). One step is a forward of one new token per row with a DynamicCache
(generate's default cache) already holding the prompt; peft loops over the distinct adapters of the
batch in every LoRA layer, so the step grows with the number of distinct adapters.

``hf_static``: the bare backbone decoded the way ``generate`` does with a static cache: the decode
forward compiled by ``model.get_compiled_call`` (Inductor, ``mode="reduce-overhead"``, i.e. CUDA
graphs, HF's default ``CompileConfig``), fed the inputs that ``prepare_inputs_for_generation`` builds
for one new token. A cross-check times ``generate`` itself, which reuses the same compiled forward.
"""

from __future__ import annotations

import time

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import DynamicCache, StaticCache

from measure import synchronize, time_steps

PEFT_RANK = 8


def peft_mixed_model(model, adapters: int, seed: int, rank: int = PEFT_RANK) -> PeftModel:
    """A PeftModel over ``model`` with ``adapters`` LoRA adapters a0, a1, … (q_proj, v_proj) of random non-zero B."""
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    peft_model = get_peft_model(model, config, adapter_name="a0")
    for index in range(1, adapters):
        peft_model.add_adapter(f"a{index}", config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # a fresh B is zero: the adapter would be a no-op
                param.copy_(torch.randn(param.shape, generator=generator) * 0.01)
    return peft_model.eval()


def lora_adapter_bytes(peft_model: PeftModel, name: str = "a0") -> int:
    return sum(p.numel() * p.element_size() for n, p in peft_model.named_parameters() if f".{name}." in n)


def _random_cache(config, rows: int, prompt: int, dtype, device, generator) -> DynamicCache:
    """A DynamicCache holding ``prompt`` tokens of random keys and values for each of ``rows`` sequences."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    cache = DynamicCache(config=config)
    shape = (rows, config.num_key_value_heads, prompt, head_dim)
    for layer in range(config.num_hidden_layers):
        keys = torch.randn(shape, generator=generator, device=device).to(dtype)
        values = torch.randn(shape, generator=generator, device=device).to(dtype)
        cache.update(keys, values, layer)
    return cache


@torch.no_grad()
def peft_step(peft_model: PeftModel, rows: int, distinct: int, prompt: int, steps: int, warmup: int,
              device: str, seed: int) -> dict:
    """One decoding step of ``rows`` sequences whose adapters cycle over ``distinct`` of the loaded ones."""
    config = peft_model.get_base_model().config
    dtype = peft_model.get_base_model().get_input_embeddings().weight.dtype
    generator = torch.Generator(device=device).manual_seed(seed)
    cache = _random_cache(config, rows, prompt, dtype, device, generator)
    names = [f"a{i % distinct}" for i in range(rows)]
    total = warmup + steps
    tokens = torch.randint(0, config.vocab_size, (total, rows, 1), device=device, generator=generator)

    def step(i: int):
        # The cache grows by one token a step, as in generate; the attention mask covers all of it.
        position = prompt + i
        return peft_model(input_ids=tokens[i], attention_mask=torch.ones(rows, position + 1, dtype=torch.long, device=device),
                          position_ids=torch.full((rows, 1), position, device=device), past_key_values=cache,
                          use_cache=True, logits_to_keep=1, adapter_names=names)

    return time_steps(step, steps, warmup, device, blocks=1 if steps < 6 else 3)


def prepare_for_compile() -> None:
    """Let each new batch size and cache recompile instead of silently falling back to eager."""
    limit = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    setattr(torch._dynamo.config, limit, max(64, getattr(torch._dynamo.config, limit)))


def _prefilled_static_cache(model, rows: int, prompt: int, max_len: int, generator, device):
    """A StaticCache of ``max_len`` filled with a random prompt by an eager forward (as generate's prefill)."""
    cache = StaticCache(config=model.config, max_cache_len=max_len)
    ids = torch.randint(0, model.config.vocab_size, (rows, prompt), device=device, generator=generator)
    model(input_ids=ids, attention_mask=torch.ones_like(ids), past_key_values=cache, use_cache=True, logits_to_keep=1)
    return cache


@torch.no_grad()
def hf_static_step(model, rows: int, prompt: int, max_len: int, steps: int, warmup: int, device: str,
                   seed: int) -> dict:
    """One decoding step of the compiled forward ``generate`` uses with a static cache of ``max_len`` tokens."""
    generator = torch.Generator(device=device).manual_seed(seed)
    compiled = model.get_compiled_call(model.generation_config.compile_config)  # what generate calls
    cache = _prefilled_static_cache(model, rows, prompt, max_len, generator, device)
    total = warmup + steps
    tokens = torch.randint(0, model.config.vocab_size, (total, rows, 1), device=device, generator=generator)
    inputs = []
    for i in range(total):  # built outside the timed region, as generate builds them outside the compiled call
        position = prompt + i
        step_inputs = model.prepare_inputs_for_generation(
            tokens[i], next_sequence_length=1, past_key_values=cache,
            attention_mask=torch.ones(rows, position + 1, dtype=torch.long, device=device),
            position_ids=torch.full((rows, 1), position, device=device))
        inputs.append({**step_inputs, "use_cache": True, "logits_to_keep": 1, "return_dict": True})

    def step(i: int):
        torch.compiler.cudagraph_mark_step_begin()  # each call is a new step: the last one's outputs are dead
        return compiled(**inputs[i])

    synchronize(device)
    started = time.perf_counter()
    step(0)  # compiles (or recompiles for a new batch size) and records
    synchronize(device)
    first_call_s = time.perf_counter() - started
    result = time_steps(lambda i: step(i + 1), steps, warmup - 1, device)
    return {**result, "first_call_s": round(first_call_s, 2)}


@torch.no_grad()
def hf_generate_step(model, rows: int, prompt: int, max_len: int, new_tokens: int, device: str, seed: int) -> dict:
    """Per-token time of ``generate`` with a static cache: (generate 1 + n tokens − generate 1 token) / n.

    Both calls prefill the same prompt, so the difference is n decoding steps, including generate's own
    per-token work (logits processing, stopping checks) around the compiled forward.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (rows, prompt), device=device, generator=generator)
    model.generation_config.pad_token_id = model.generation_config.eos_token_id

    def generate(n: int) -> float:
        cache = StaticCache(config=model.config, max_cache_len=max_len)
        synchronize(device)
        started = time.perf_counter()
        model.generate(ids, attention_mask=torch.ones_like(ids), past_key_values=cache, max_new_tokens=n,
                       min_new_tokens=n, do_sample=False)
        synchronize(device)
        return time.perf_counter() - started

    generate(1 + new_tokens)  # warm-up: compilation and graph recording for this batch size
    generate(1)
    short = min(generate(1) for _ in range(2))
    long = min(generate(1 + new_tokens) for _ in range(2))
    return {"step_ms": round((long - short) / new_tokens * 1000, 4), "timed_steps": new_tokens}
