"""The engine benchmarks' own quick checks (tiny shape, CPU): the scripts run end to end and their rows hold
together (a latency split into parts adds up, a ratio lies inside its range, low rates run longer)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ENGINE_BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks" / "engine"


def run_script(name: str, *args: str) -> None:
    done = subprocess.run([sys.executable, name, *args, "--no-plot"], cwd=ENGINE_BENCHMARKS, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.parametrize("overlap", [False, True])
def test_trace_rows_account_for_every_request_and_the_slowest_first_tokens(tmp_path, overlap):
    output = tmp_path / "trace.json"
    run_script("trace.py", "--shape", "tiny", "--rates", "4", "16", "--duration", "1", "--min-requests", "10",
               "--drain", "3", "--adapters", "6", "--prompt-tokens", "8", "24", "--output-tokens", "3", "6",
               "--slots", "8", "--device-adapters", "3", "--output", str(output),
               *(["--overlap-steps"] if overlap else []))
    data = json.loads(output.read_text())
    assert data["settings"]["overlap_steps"] is overlap
    rows = {(r["mode"], r["rate_rps"]): r for r in data["rows"]}
    assert set(rows) == {(m, rate) for m in ("bare", "para", "lora") for rate in (4.0, 16.0)}
    assert data["settings"]["gc_freeze"] is True and data["settings"]["min_requests"] == 10
    for (mode, rate), row in rows.items():
        assert row["arrivals_s"] == max(1.0, 10 / rate)  # a low rate runs until 10 requests are expected
        assert row["requests_finished"] == row["requests_submitted"] > 0
        assert row["adapter_loads"] > 0 if mode != "bare" else row["adapter_loads"] == 0
        slowest = row["slowest_first_tokens"]
        assert 1 <= len(slowest) <= row["requests_submitted"]
        assert [s["ttft_ms"] for s in slowest] == sorted((s["ttft_ms"] for s in slowest), reverse=True)
        assert slowest[0]["ttft_ms"] == pytest.approx(row["ttft_ms_p99"], rel=0.5)
        for entry in slowest:  # a first token's time is its wait before its step plus that step
            assert entry["ttft_ms"] == pytest.approx(entry["queued_ms"] + entry["step_ms"], abs=0.05)
            assert 0 <= entry["step_host_ms"] <= entry["step_ms"] + 0.01
            assert entry["step_rows"] >= 1 and entry["step_prefill_tokens"] >= 8
        assert len(row["gc"]["collections_by_generation"]) == 3


def test_prefill_rows_give_each_mode_and_a_ratio_inside_its_range(tmp_path):
    output = tmp_path / "prefill.json"
    run_script("prefill.py", "--shapes", "tiny", "--pass-tokens", "64", "--prompt-tokens", "16", "--steps", "3",
               "--modes", "bare", "para", "lora", "--output", str(output))
    rows = {r["mode"]: r for r in json.loads(output.read_text())["rows"]}
    assert set(rows) == {"bare", "para", "lora"}
    for mode, row in rows.items():
        assert row["batch_size"] == 4 and row["pass_tokens"] == 64 and row["timed_steps"] == 3
        assert row["prefill_ms"] > 0 and row["over_floor"] > 1
        if mode != "bare":
            low, high = row[f"{mode}_over_bare_range"]
            assert low <= row[f"{mode}_over_bare"] <= high


def test_decode_gemm_times_the_shapes_the_engine_multiplies_with_tiles_that_divide_k():
    """decode_gemm.py needs a GPU to run; what it decides on the host is checked here: its projections are the
    engine's fused matmuls of the 1.1b backbone (built on the meta device), and every swept tile splits K evenly."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(ENGINE_BENCHMARKS))
    from decode_gemm import projections, sweep_plans
    from models import SHAPES

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**SHAPES["1.1b"]))
    layer = model.model.layers[0]
    attn, mlp = layer.self_attn, layer.mlp
    width = sum(m.out_features for m in (attn.q_proj, attn.k_proj, attn.v_proj))
    assert projections("1.1b") == {"qkv": (width, 2048), "o": (attn.o_proj.out_features, attn.o_proj.in_features),
                                   "gate_up": (mlp.gate_proj.out_features * 2, 2048),
                                   "down": (mlp.down_proj.out_features, mlp.down_proj.in_features),
                                   "head": (model.lm_head.out_features, model.lm_head.in_features)}
    for n, k in projections("1.1b").values():
        for rows in (1, 64, 256):
            plans = sweep_plans(rows, n, k)
            assert plans and all(k % (p.split_k * p.block_k) == 0 and p.span(k) * p.split_k == k for p in plans)
            assert {p.split_k for p in plans} >= {1, 2, 4}
            assert max(p.block_m for p in plans) == (128 if rows >= 128 else max(16, rows))
