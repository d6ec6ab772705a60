"""On a GPU: the engine's Triton kernels against the PyTorch code they replace, then the fused step's speed.

  kernels   each kernel against its eager PyTorch reference on CUDA (bf16): max abs error and how many
            elements differ at all (the kernels round where eager PyTorch rounds, so most should be 0)
  step      the fused decoding step against the PyTorch step on a random backbone (--shape, 1.1b), one
            batch mixing PARA rows and bare rows: logits, caches, greedy tokens over --greedy-steps steps
  engine    a tiny Llama with a PARA adapter through the Engine: fused CUDA graphs give the tokens of
            the eager PyTorch step, for a batch mixing the adapter and the bare model
  timing    the CUDA-graphed step at --batch rows (--distinct adapters), fused and PyTorch, bare and PARA,
            plus the kernels one eager step launches (torch.profiler)

Each part runs on its own: one that fails records its error in the JSON and the others still run.
From the repository root:
  python benchmarks/engine/kernel_check.py --output /tmp/kernel_check.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode_step import EngineSlots  # noqa: E402
from measure import H200_HBM_BYTES_PER_S, environment, floor_ms, kv_bytes, time_steps, weight_bytes  # noqa: E402
from models import SHAPES, build_backbone  # noqa: E402

from parapeft.engine.decoder import GraphedStep, _rotate_half  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="1.1b")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--distinct", type=int, default=32, help="distinct adapters among the PARA rows (label)")
    parser.add_argument("--prompt", type=int, default=256, help="tokens already in every row's cache")
    parser.add_argument("--greedy-steps", type=int, default=16)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("kernel_check.json"))
    return parser.parse_args()


def _difference(got: torch.Tensor, expected: torch.Tensor) -> dict:
    got, expected = got.float(), expected.float()
    return {"max_abs_error": (got - expected).abs().max().item(), "differing": int((got != expected).sum()),
            "elements": expected.numel()}


# --------------------------------------------------------------------------------------------- kernels
def check_kernels(args) -> dict:
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    from parapeft.engine.kernels import triton_ops as ops

    g = torch.Generator(device="cuda").manual_seed(0)
    dtype, results = torch.bfloat16, {}

    def randn(*shape, scale=1.0):
        return (torch.randn(shape, device="cuda", generator=g) * scale).to(dtype)

    for rows, width in ((64, 2048), (64, 576), (2048, 128), (64, 8192)):
        norm = LlamaRMSNorm(width, eps=1e-5).to("cuda", dtype)
        with torch.no_grad():
            norm.weight.copy_(1 + 0.1 * torch.randn(width, device="cuda", generator=g))
            x, delta = randn(rows, width), randn(rows, width)
            results[f"rms_norm {rows}x{width}"] = _difference(ops.rms_norm(x, norm.weight, 1e-5), norm(x))
            normed, summed = ops.rms_norm(delta, norm.weight, 1e-5, residual=x)
            results[f"add_rms_norm {rows}x{width}"] = _difference(normed, norm(x + delta))
            results[f"add_rms_norm {rows}x{width} residual"] = _difference(summed, x + delta)
    for batch, heads, kv_heads, head_dim in ((64, 32, 8, 64), (64, 9, 3, 64), (8, 16, 4, 80)):
        for scaled in (False, True):
            slot_count, max_len = batch + 3, 40
            q = randn(batch, heads * head_dim)
            k, v = randn(batch, kv_heads * head_dim), randn(batch, kv_heads * head_dim)
            angles = torch.rand(batch, head_dim // 2, device="cuda", generator=g) * 100
            emb = torch.cat((angles, angles), -1)
            cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
            keys = randn(slot_count, kv_heads, max_len, head_dim)
            values = randn(slot_count, kv_heads, max_len, head_dim)
            slots = torch.randperm(slot_count, device="cuda", generator=g)[:batch]
            positions = torch.randint(0, max_len, (batch,), device="cuda", generator=g)
            q_scale = (1 + randn(slot_count, q.shape[1], scale=0.1)) if scaled else None
            v_scale = (1 + randn(slot_count, v.shape[1], scale=0.1)) if scaled else None
            ref_q = (q * q_scale[slots] if scaled else q).view(batch, heads, head_dim)
            ref_v = (v * v_scale[slots] if scaled else v).view(batch, kv_heads, head_dim)
            ref_k = k.view(batch, kv_heads, head_dim)
            c, s = cos.unsqueeze(1), sin.unsqueeze(1)
            ref_q, ref_k = ref_q * c + _rotate_half(ref_q) * s, ref_k * c + _rotate_half(ref_k) * s
            ref_keys, ref_values = keys.clone(), values.clone()
            ref_keys[slots, :, positions], ref_values[slots, :, positions] = ref_k, ref_v
            got = ops.rotary_to_cache(q, k, v, cos, sin, keys, values, slots, positions, q_scale=q_scale,
                                      v_scale=v_scale, scale_rows=slots if scaled else None)
            name = f"rotary {batch}x{heads}/{kv_heads}x{head_dim}{' scaled' if scaled else ''}"
            results[f"{name} q"] = _difference(got, ref_q)
            results[f"{name} keys"] = _difference(keys, ref_keys)
            results[f"{name} values"] = _difference(values, ref_values)
    for rows, width in ((64, 8192), (64, 1536), (3, 5000)):
        for scaled in (False, True):
            gate, up = randn(rows, 2 * width, scale=3).split(width, dim=1)  # strided halves, as gate/up gives them
            scale = 1 + randn(rows + 5, width, scale=0.1)
            scale_rows = torch.randperm(rows + 5, device="cuda", generator=g)[:rows]
            got = ops.silu_mul(gate, up, scale if scaled else None, scale_rows if scaled else None)
            expected = F.silu(gate) * (up * scale[scale_rows] if scaled else up)
            results[f"silu_mul {rows}x{width}{' scaled' if scaled else ''}"] = _difference(got, expected)
    return results


# ------------------------------------------------------------------------------------------------ step
def _mixed_slots(model, args) -> EngineSlots:
    """Every slot with a random prompt cache and its own PARA vectors, except every fourth: a bare row."""
    slots = EngineSlots(model, args.batch, args.prompt + args.greedy_steps + 8, args.prompt, 0, seed=1)
    slots.fill(1)
    for buffer in slots.decoder.scales.values():
        buffer[:, 1::4] = 1.0
    return slots


def check_step(model, slots: EngineSlots, args) -> dict:
    decoder = slots.decoder
    if not decoder.fused:
        raise RuntimeError("the decoder has no fused kernels here (Triton missing?)")
    rows = torch.arange(args.batch, device="cuda")
    first = torch.randint(0, model.config.vocab_size, (args.batch,), device="cuda",
                          generator=torch.Generator(device="cuda").manual_seed(2))
    keys, values = decoder.keys.clone(), decoder.values.clone()
    length = args.prompt + args.greedy_steps + 1
    results = {}
    for para in (False, True):
        runs = {}
        for fused in (False, True):
            decoder.keys.copy_(keys)
            decoder.values.copy_(values)
            tokens, logits, chosen = first, None, []
            for step in range(args.greedy_steps):
                positions = torch.full((args.batch,), args.prompt + step, device="cuda")
                out = decoder.step(rows, tokens, positions, para=para, length=length, fused=fused)
                logits = out if logits is None else logits
                tokens = out.argmax(-1)
                chosen.append(tokens)
            runs[fused] = (logits, torch.stack(chosen, 1), decoder.keys[:, rows].clone(),
                           decoder.values[:, rows].clone())
        (l0, t0, k0, v0), (l1, t1, k1, v1) = runs[False], runs[True]
        same_rows = (t0 == t1).all(1)
        results["para (bare every 4th row)" if para else "bare"] = {
            "first_step_logits": _difference(l1, l0),
            "first_step_argmax_agree": float((l0.argmax(-1) == l1.argmax(-1)).float().mean()),
            "greedy_rows_identical": f"{int(same_rows.sum())}/{args.batch}",
            "greedy_tokens_agree": float((t0 == t1).float().mean()),
            "keys_after": _difference(k1, k0), "values_after": _difference(v1, v0)}
    decoder.keys.copy_(keys)
    decoder.values.copy_(values)
    return results


def check_engine() -> dict:
    """A tiny Llama with a PARA adapter through the Engine: fused graphs against the eager PyTorch step."""
    from graph_check import tiny_engine_tokens

    out = tiny_engine_tokens({"eager_pytorch": {"cuda_graphs": False, "fused": False},
                              "graphs_fused": {"cuda_graphs": True, "fused": True}})
    return {"tokens_equal": out["graphs_fused"] == out["eager_pytorch"],
            "rows_equal": sum(a == b for a, b in zip(out["graphs_fused"], out["eager_pytorch"]))}


# ---------------------------------------------------------------------------------------------- timing
def _kernels_per_step(decoder, rows, tokens, positions, length, para, fused) -> int:
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    decoder.step(rows, tokens, positions, para=para, length=length, fused=fused)  # compiled, warm
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        decoder.step(rows, tokens, positions, para=para, length=length, fused=fused)
        torch.cuda.synchronize()
    return sum(e.count for e in prof.key_averages() if e.device_type == DeviceType.CUDA)


def time_graphs(model, slots: EngineSlots, args) -> dict:
    decoder = slots.decoder
    rows = torch.arange(args.batch, device="cuda")
    tokens = torch.randint(0, model.config.vocab_size, (args.batch,), device="cuda",
                           generator=torch.Generator(device="cuda").manual_seed(3))
    positions = torch.full((args.batch,), args.prompt, device="cuda")
    length = args.prompt + 1
    dtype = model.get_input_embeddings().weight.dtype
    kv = kv_bytes(model.config, args.batch, length, dtype.itemsize)
    para_bytes = args.batch * sum(b.shape[0] * b.shape[2] for b in decoder.scales.values()) * dtype.itemsize
    results = {}
    for fused in (False, True):
        for para in (False, True):
            name = f"{'para' if para else 'bare'} {'fused' if fused else 'unfused'}"
            try:
                graphed = GraphedStep(decoder, args.batch, para=para, fused=fused)
                timing = time_steps(lambda _, step=graphed: step(rows, tokens, positions, length=length), args.steps,
                                    args.warmup, "cuda")
                floor = floor_ms(weight_bytes(model) + kv + (para_bytes if para else 0), H200_HBM_BYTES_PER_S)
                results[name] = {**timing, "hbm_floor_ms": floor, "times_floor": round(timing["step_ms"] / floor, 2),
                                 "distinct_adapters": args.distinct if para else 0}
                results[name]["kernels_per_eager_step"] = _kernels_per_step(decoder, rows, tokens, positions, length,
                                                                             para, fused)
                del graphed
            except Exception as err:  # noqa: BLE001 - the other configurations still count
                results[name] = {"error": f"{type(err).__name__}: {err}"}
            torch.cuda.empty_cache()
    summary = {}
    for fused in ("unfused", "fused"):
        bare, para = results.get(f"bare {fused}", {}), results.get(f"para {fused}", {})
        if "step_ms" in bare and "step_ms" in para:
            summary[f"para_overhead_{fused}_pct"] = round(100 * (para["step_ms"] / bare["step_ms"] - 1), 2)
    if "step_ms" in results.get("bare fused", {}) and "step_ms" in results.get("bare unfused", {}):
        summary["bare_speedup_fused"] = round(results["bare unfused"]["step_ms"] / results["bare fused"]["step_ms"], 3)
    results["summary"] = summary
    return results


def main() -> None:
    args = parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("kernel_check.py needs a CUDA device")
    started = time.perf_counter()
    report = {"benchmark": "kernel_check", **environment(), "shape": args.shape, "batch": args.batch,
              "prompt_tokens": args.prompt, "errors": []}

    def save():
        report["elapsed_s"] = round(time.perf_counter() - started, 1)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")

    def attempt(name, fn, *fn_args, record=True):
        """``fn(*fn_args)``, its result recorded under ``name`` (when ``record``); None if it failed."""
        print(f"[{time.perf_counter() - started:6.1f}s] {name} ...", flush=True)
        result = None
        try:
            result = fn(*fn_args)
            if record:
                report[name] = result
                print(json.dumps(result, indent=1)[:6000], flush=True)
        except Exception as err:  # noqa: BLE001 - one failing part must not cost the others
            traceback.print_exc()
            report["errors"].append({"part": name, "error": f"{type(err).__name__}: {err}"})
        save()
        return result

    attempt("kernels", check_kernels, args)
    attempt("engine", check_engine)
    model = attempt("building the model", build_backbone, args.shape, "cuda", torch.bfloat16, record=False)
    slots = attempt("filling the slots", _mixed_slots, model, args, record=False) if model is not None else None
    if slots is not None:
        report["setup"] = (f"{args.shape} Llama, random weights, bf16; {args.batch} slots with {args.prompt}-token "
                           "random caches and PARA vectors, every 4th slot without (a bare row)")
        attempt("step", check_step, model, slots, args)
        attempt("timing", time_graphs, model, slots, args)
    save()
    print(f"wrote {args.output} in {time.perf_counter() - started:.0f} s; errors: {report['errors'] or 'none'}")


if __name__ == "__main__":
    main()
