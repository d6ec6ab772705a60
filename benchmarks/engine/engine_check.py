"""On a GPU: the engine's Triton paths against its PyTorch paths and against ParaModel.generate.

1. The paged decode-attention kernel against attention over each sequence laid out contiguously (bf16,
   the 1.1b and SmolLM2 head layouts, random context lengths, scattered blocks): the largest difference.
2. A tiny float32 Llama with PARA, LoRA and bare rows in one batch: the engine with Triton kernels and CUDA
   graphs gives the PyTorch-operation engine's tokens exactly (float32 dots are IEEE in the kernels).
3. The 1.1b shape in bf16 (random weights), PARA and bare rows: the Triton/graph engine, the PyTorch
   engine and ParaModel.generate (one row at a time), compared by the first token, whole sequences and the
   largest difference of the first token's log-probabilities. Random weights give nearly tied logits,
   so later tokens may part ways after a one-ulp difference; the first token and its logprob say more.
4. Prefill passes replayed from CUDA graphs (tiny float32 Llama, PARA, LoRA and bare prompts in waves,
   so later passes of a bucket replay the first one's graph with their own inputs) against the same engine
   running every pass eagerly: tokens and log-probabilities.

Example (from the repository root): python benchmarks/engine/engine_check.py --output benchmarks/engine/engine_check.json
(``--checks`` runs some of them and updates those entries of an existing output file.)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from measure import environment  # noqa: E402
from models import PARA_RANK, build_backbone, random_lora_dirs, random_para_tensors  # noqa: E402
from parapeft import BASE_ADAPTER, ParaConfig, get_para_model  # noqa: E402
from parapeft.engine import Engine, SamplingParams  # noqa: E402


def attention_check(heads: int, kv_heads: int, head_dim: int, rows: int = 64, block_size: int = 16) -> dict:
    from parapeft.engine.kernels.paged_attention import paged_decode_attention

    g = torch.Generator(device="cuda").manual_seed(0)
    lengths = torch.randint(1, 700, (rows,), generator=g, device="cuda")
    width = int((lengths.max() + block_size - 1) // block_size)
    total = rows * width + 1
    keys = torch.randn(total, kv_heads, block_size, head_dim, generator=g, device="cuda").bfloat16()
    values = torch.randn(total, kv_heads, block_size, head_dim, generator=g, device="cuda").bfloat16()
    tables = torch.randperm(total - 1, generator=g, device="cuda")[: rows * width].view(rows, width).int()
    q = torch.randn(rows, heads, head_dim, generator=g, device="cuda").bfloat16()
    got = paged_decode_attention(q, keys, values, tables, lengths.int(), head_dim ** -0.5).float()
    worst = 0.0
    for row in range(rows):
        n = int(lengths[row])
        k = keys[tables[row].long()].permute(1, 0, 2, 3).reshape(kv_heads, -1, head_dim)[:, :n]
        v = values[tables[row].long()].permute(1, 0, 2, 3).reshape(kv_heads, -1, head_dim)[:, :n]
        group = heads // kv_heads
        expected = torch.nn.functional.scaled_dot_product_attention(
            q[row].unsqueeze(1), k.repeat_interleave(group, 0), v.repeat_interleave(group, 0)).reshape(-1).float()
        worst = max(worst, float((got[row] - expected).abs().max()))
    return {"heads": heads, "kv_heads": kv_heads, "head_dim": head_dim, "rows": rows, "max_abs_diff": worst}


def run_engine(model, names, prompts, fused: bool, graphs: bool, loras: list[Path], max_tokens: int) -> list:
    engine = Engine(model, max_seqs=len(prompts), max_len=max(len(p) for p in prompts) + max_tokens,
                    fused_kernels=fused, cuda_graphs=graphs, device_adapters=len(names))
    for name in sorted({n for n in names if n.startswith("p")}):  # adapter pK always gets seed K
        engine.add_adapter(name, ParaConfig(r=PARA_RANK), random_para_tensors(engine, PARA_RANK, int(name[1:]), scale=0.2))
    for index, path in enumerate(loras):
        engine.load_adapter(f"l{index}", path)
    requests = [engine.submit(p, n, SamplingParams(max_tokens=max_tokens, ignore_eos=True, top_logprobs=1))
                for p, n in zip(prompts, names)]
    engine.run_until_done()
    assert engine.executor.ops.name == ("triton" if fused else "torch")
    return requests


def tiny_check(tmp: Path) -> dict:
    model = build_backbone("tiny", "cuda", torch.float32)
    loras = random_lora_dirs(model, 4, 2, tmp)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, 250, (n,), generator=g).tolist() for n in (5, 40, 17, 80, 9, 33, 64, 12)]
    names = ["p0", "p1", BASE_ADAPTER, "l0", "p2", "l1", BASE_ADAPTER, "p0"]
    eager = run_engine(model, names, prompts, False, False, loras, 48)
    fused = run_engine(model, names, prompts, True, True, loras, 48)
    same = sum(a.tokens == b.tokens for a, b in zip(eager, fused))
    diff = max(abs(x - y) for a, b in zip(eager, fused) for x, y in zip(a.logprobs, b.logprobs))
    return {"rows": len(prompts), "identical_rows": same, "max_logprob_diff": diff}


def large_check(rows: int = 16, prompt: int = 64, tokens: int = 24) -> dict:
    model = build_backbone("1.1b", "cuda", torch.bfloat16)
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(3, 32000, (prompt,), generator=g).tolist() for _ in range(rows)]
    names = [f"p{i % 8}" if i % 4 else BASE_ADAPTER for i in range(rows)]
    fused = run_engine(model, names, prompts, True, True, [], tokens)
    eager = run_engine(model, names, prompts, False, False, [], tokens)
    # ParaModel with the same adapters (the engine's random tensors, loaded into generators)
    engine = Engine(model, max_seqs=1, max_len=prompt + tokens, cuda_graphs=False)  # for the adapters' shapes
    tensors = [random_para_tensors(engine, PARA_RANK, index, scale=0.2) for index in range(8)]
    del engine
    para = get_para_model(model, ParaConfig(r=1), adapter_name="initial")
    para.delete_adapter("initial")
    for index in range(8):  # the same random tensors the engines were given
        para.add_adapter_weights(f"p{index}", ParaConfig(r=PARA_RANK), tensors[index])
    para.eval()
    reference = []
    for p, n in zip(prompts, names):
        ids = para.generate(input_ids=torch.tensor([p], device="cuda"), adapter_names=[n], max_new_tokens=tokens,
                            min_new_tokens=tokens, do_sample=False, pad_token_id=0, eos_token_id=None)
        reference.append(ids[0, prompt:].tolist())
    para.unload()

    def compare(a, b):
        return {"first_token_same": sum(x[0] == y[0] for x, y in zip(a, b)),
                "identical_rows": sum(x == y for x, y in zip(a, b)), "rows": len(a)}

    return {"fused_vs_pytorch": {**compare([r.tokens for r in fused], [r.tokens for r in eager]),
                                 "first_logprob_max_diff": max(abs(a.logprobs[0] - b.logprobs[0])
                                                               for a, b in zip(fused, eager))},
            "fused_vs_paramodel": compare([r.tokens for r in fused], reference),
            "pytorch_vs_paramodel": compare([r.tokens for r in eager], reference)}


def prefill_graph_check(tmp: Path, max_tokens: int = 12) -> dict:
    model = build_backbone("tiny", "cuda", torch.float32)
    loras = random_lora_dirs(model, 4, 2, tmp)
    g = torch.Generator().manual_seed(3)
    waves = [[torch.randint(3, 250, (n,), generator=g).tolist() for n in lengths]
             for lengths in ((5, 40, 17), (80, 9), (33, 64, 12, 7), (50,), (20, 21, 22), (3, 90))]
    kinds = [BASE_ADAPTER, "p0", "l0", "p1", "p2", "l1", "p3"]
    runs = {}
    for label, graph_tokens in (("graphs", 4096), ("eager", 0)):
        engine = Engine(model, max_seqs=16, max_len=128, fused_kernels=True, cuda_graphs=True,
                        prefill_graph_tokens=graph_tokens, device_adapters=4)
        for index in range(4):
            engine.add_adapter(f"p{index}", ParaConfig(r=PARA_RANK), random_para_tensors(engine, PARA_RANK, index, scale=0.2))
        for index, path in enumerate(loras):
            engine.load_adapter(f"l{index}", path)
        requests = []
        for number, wave in enumerate(waves):
            requests += [engine.submit(p, kinds[(3 * number + i) % len(kinds)],
                                       SamplingParams(max_tokens=max_tokens, ignore_eos=True, top_logprobs=1))
                         for i, p in enumerate(wave)]
            for _ in range(3):
                engine.step()
        engine.run_until_done()
        graphs = engine.prefill_graphs
        runs[label] = requests, (graphs.replays, len(graphs.graphs)) if graphs else (0, 0)
    (graphed, (replays, captured)), (eager, _) = runs["graphs"], runs["eager"]
    return {"rows": len(graphed), "identical_rows": sum(a.tokens == b.tokens for a, b in zip(graphed, eager)),
            "max_logprob_diff": max(abs(x - y) for a, b in zip(graphed, eager) for x, y in zip(a.logprobs, b.logprobs)),
            "passes_from_graphs": replays, "graphs_captured": captured, "waves": len(waves)}


CHECKS = ("paged_attention_bf16", "tiny_float32_triton_vs_pytorch", "1.1b_bf16", "prefill_graphs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("engine_check.json"))
    parser.add_argument("--checks", nargs="+", choices=CHECKS, default=list(CHECKS))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("engine_check.py needs a CUDA device")
    started = time.perf_counter()
    partial = set(args.checks) != set(CHECKS) and args.output.exists()
    report = json.loads(args.output.read_text()) if partial else {"benchmark": "engine_check", **environment()}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"paged_attention_bf16": lambda: [attention_check(32, 8, 64), attention_check(9, 3, 64),
                                                 attention_check(16, 16, 128)],
                "tiny_float32_triton_vs_pytorch": lambda: tiny_check(Path(tmp)),
                "1.1b_bf16": large_check, "prefill_graphs": lambda: prefill_graph_check(Path(tmp))}
        for name in args.checks:
            value = runs[name]()
            # an entry added to an earlier run's file says how it was made
            report[name] = {"result": value, **environment()} if partial else value
            print(json.dumps({name: report[name]}), flush=True)
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

if __name__ == "__main__":
    main()
