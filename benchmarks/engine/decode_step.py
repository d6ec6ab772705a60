"""Decoding-step time of the engine: bare backbone vs PARA with many distinct adapters in the batch.

    python benchmarks/engine/decode_step.py --shape 1.1b            # on a GPU (random weights, bf16)
    python benchmarks/engine/decode_step.py --shape tiny --steps 3  # a quick check anywhere

Every row has a 256-token prompt in the KV cache and vectors of its own (the worst case: as many
distinct adapters as rows). The step is timed with slots and positions fixed, after warm-up, in
eager mode (no CUDA graphs yet).
The HBM floor is the bytes of every weight a step reads (embedding lookup excluded) at 4.3 TB/s.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from parapeft import ParaConfig, get_para_model
from parapeft.engine.decoder import GraphedStep, SlotDecoder

SHAPES = {
    "1.1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                 num_key_value_heads=8, vocab_size=32000),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=256),
}
HBM_BYTES_PER_S = 4.3e12


def timed(fn, steps: int, device: str) -> float:
    for _ in range(3):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="1.1b")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 64, 128])
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lora-ranks", type=int, nargs="*", default=None,
                        help="LoRA-mode ranks to time (default: 8, 16 and the rank matching PARA's parameter count)")
    parser.add_argument("--output", default=str(Path(__file__).with_name("decode_step.json")))
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**SHAPES[args.shape], max_position_embeddings=4096)).to(dtype).eval()
    weight_bytes = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "embed_tokens" not in n)
    floor_ms = weight_bytes / HBM_BYTES_PER_S * 1000
    para = get_para_model(model, ParaConfig(r=12), adapter_name="a0").eval()
    max_batch = max(args.batch_sizes)
    decoder = SlotDecoder(model, max_batch, args.prompt + 8)
    generator = torch.Generator(device=device).manual_seed(1)
    for target, scales in decoder.scales.items():  # per-slot vectors as a prefill would leave them
        scales.copy_(1 + 0.1 * torch.randn(scales.shape, generator=generator, device=device, dtype=torch.float32).to(dtype))
    decoder.keys.normal_(generator=generator)
    decoder.values.normal_(generator=generator)
    config = model.config
    per_rank = config.num_hidden_layers * (2 * config.hidden_size + decoder.scales["q"].shape[-1] + decoder.scales["v"].shape[-1])
    para_params = para.get_nb_trainable_parameters()[0]
    lora_ranks = args.lora_ranks if args.lora_ranks is not None else sorted({8, 16, round(para_params / per_rank)})
    lora_decoders = {}
    for rank in lora_ranks:  # every slot holds a LoRA adapter of its own (random matrices)
        lora_decoders[rank] = SlotDecoder(model, max_batch, args.prompt + 8, lora_rank=rank)
        for buffers in (lora_decoders[rank].lora_a, lora_decoders[rank].lora_b):
            for tensor in buffers.values():
                tensor.normal_(std=0.01, generator=generator)
        lora_decoders[rank].keys.copy_(decoder.keys)
        lora_decoders[rank].values.copy_(decoder.values)
    rows = []
    for batch in args.batch_sizes:
        slots = torch.arange(batch, device=device)
        tokens = torch.randint(0, model.config.vocab_size, (batch,), device=device, generator=generator)
        positions = torch.full((batch,), args.prompt, device=device)
        bare = timed(lambda: decoder.step(slots, tokens, positions, para=False), args.steps, device)
        rows.append({"shape": args.shape, "mode": "bare", "batch_size": batch, "distinct_adapters": 0,
                     "step_ms": round(bare, 3), "hbm_floor_ms": round(floor_ms, 3)})
        # Worst case for PARA: every row has vectors of its own (a distinct adapter per row), gathered by slot.
        ms = timed(lambda: decoder.step(slots, tokens, positions, para=True), args.steps, device)
        rows.append({"shape": args.shape, "mode": "para", "batch_size": batch, "distinct_adapters": batch,
                     "step_ms": round(ms, 3), "hbm_floor_ms": round(floor_ms, 3), "para_over_bare": round(ms / bare, 4)})
        if device == "cuda":  # the same step replayed from a CUDA graph (static shapes, full-length attention)
            for mode, use_para in (("bare_graph", False), ("para_graph", True)):
                runner = GraphedStep(decoder, max_batch, para=use_para)
                ms = timed(lambda: runner(slots, tokens, positions), args.steps, device)
                rows.append({"shape": args.shape, "mode": mode, "batch_size": batch,
                             "distinct_adapters": batch if use_para else 0, "step_ms": round(ms, 3),
                             "hbm_floor_ms": round(floor_ms, 3)})
        for rank, lora_decoder in lora_decoders.items():
            run = GraphedStep(lora_decoder, max_batch, para=False) if device == "cuda" else (
                lambda s, t, p, d=lora_decoder: d.step(s, t, p, para=False))
            ms = timed(lambda: run(slots, tokens, positions), args.steps, device)
            rows.append({"shape": args.shape, "mode": "lora_graph" if device == "cuda" else "lora", "lora_rank": rank,
                         "lora_params": rank * per_rank, "para_params": para_params, "batch_size": batch,
                         "distinct_adapters": batch, "step_ms": round(ms, 3), "hbm_floor_ms": round(floor_ms, 3)})
        print(" | ".join(f"{r['mode']}{r.get('lora_rank', '')} {r['step_ms']:.3f} ms" for r in rows if r["batch_size"] == batch),
              f"(batch {batch}, floor {floor_ms:.2f} ms)", flush=True)
    versions = {"torch": torch.__version__, "python": platform.python_version()}
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({platform.machine()})"
    result = {"gpu": gpu, "versions": versions, "command": " ".join(["python", *sys.argv]), "mode_notes":
              "bare/para: eager PyTorch; *_graph: the same step replayed from a CUDA graph per batch bucket; "
              "per-slot vectors gathered by slot index", "rows": rows}
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
