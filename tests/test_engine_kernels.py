"""The decoding step's Triton kernels against the PyTorch code they replace, run by Triton's CPU interpreter.

Triton decides between compiling and interpreting when a kernel (or Triton's own library) is decorated,
so TRITON_INTERPRET must be set before Triton is first imported, and setting it inside pytest would
also turn every later Triton kernel of the run into interpreted code. So the tests run in this process
only when it was started with TRITON_INTERPRET=1; otherwise ``test_kernels_under_the_interpreter`` runs
this module in a subprocess with it set, and the tests are skipped here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

triton_language = pytest.importorskip(
    "triton.language", reason="the fused kernels need Triton (pip install triton); the engine runs without it")

from triton.runtime.interpreter import InterpretedFunction  # noqa: E402
from transformers.models.llama.modeling_llama import LlamaRMSNorm  # noqa: E402

from parapeft import BASE_ADAPTER, ParaConfig, get_para_model  # noqa: E402
from parapeft.engine import Engine, SamplingParams  # noqa: E402
from parapeft.engine.kernels.decode_linear import LinearPlan, decode_linear  # noqa: E402
from parapeft.engine.kernels.fused_linear import FusedLinear  # noqa: E402
from parapeft.engine.ops.torch_ops import rotate_half as _rotate_half  # noqa: E402
from test_engine import prompts, reference, tiny_para  # noqa: E402
from tiny_models import randomize_adapter, tiny_model  # noqa: E402

INTERPRETED = isinstance(triton_language.sum, InterpretedFunction)  # Triton's library decorated for the CPU


def _round_bf16_to_nearest() -> bool:
    """Make the interpreter round float32 to bf16 to nearest even, as GPUs and PyTorch do (it truncates).

    Then a bf16 kernel can be checked bit for bit against eager PyTorch, whose rounding it reproduces.
    Best effort: a Triton without this internal function keeps truncating and the bf16 checks are looser.
    """
    from triton.runtime import interpreter

    convert = getattr(interpreter, "_convert_float", None)
    if convert is None:
        return False

    def rounded(data, input_dtype, output_dtype, rounding_mode):
        if input_dtype == triton_language.float32 and output_dtype == triton_language.bfloat16:
            as_bf16 = torch.from_numpy(np.array(data, dtype=np.float32)).to(torch.bfloat16)
            return as_bf16.view(torch.int16).numpy().view(np.uint16)
        return convert(data, input_dtype, output_dtype, rounding_mode)

    interpreter._convert_float = rounded
    return True


def _scalar_loop_bounds() -> None:
    """Let the interpreter use a loaded scalar as a loop bound, as compiled kernels do (the paged attention
    kernel loops up to each row's length). It converts the scalar's one-element array with ``int()``, which
    NumPy 2 refuses for arrays that are not 0-dimensional. The interpreter patches tensors at every launch,
    so the fix goes after its patch."""
    from triton.runtime import interpreter

    patch = interpreter._patch_lang_tensor

    def patched(tensor):
        patch(tensor)
        tensor.__index__ = lambda self: int(np.asarray(self.handle.data).reshape(-1)[0])

    interpreter._patch_lang_tensor = patched


if INTERPRETED:
    from parapeft.engine.kernels import triton_ops as ops

    BF16_ROUNDED = _round_bf16_to_nearest()
    _scalar_loop_bounds()

interpreted = pytest.mark.skipif(not INTERPRETED, reason="needs TRITON_INTERPRET=1 from the start: "
                                                       "run by test_kernels_under_the_interpreter in a subprocess")


@pytest.mark.skipif(INTERPRETED, reason="this process interprets Triton: the tests run here directly")
def test_kernels_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"],
                          cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True,
                          timeout=1200, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed and int(passed.group(1)) >= 60, f"the interpreted tests did not run:\n{done.stdout[-3000:]}"


DTYPES = [torch.float32, torch.bfloat16]


def assert_matches(got: torch.Tensor, expected: torch.Tensor, exact: bool = False) -> None:
    """Equal (``exact``: the kernel reproduces every eager rounding) or within one rounding step (a
    reduction in another order). bf16 under an interpreter that truncates: within a few bf16 steps."""
    if got.dtype == torch.bfloat16 and not BF16_ROUNDED:
        torch.testing.assert_close(got, expected, atol=0.05, rtol=0.03)
    elif exact:
        assert torch.equal(got, expected), (got.float() - expected.float()).abs().max()
    elif got.dtype == torch.bfloat16:
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=2 ** -7)
    else:
        torch.testing.assert_close(got, expected)


# --------------------------------------------------------------------------------------------- kernels
@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 64), (5, 96), (2, 3, 40)])
def test_rms_norm_matches_hf_rmsnorm_with_and_without_the_residual_add(dtype, shape):
    g = torch.Generator().manual_seed(0)
    x, delta = (torch.randn(shape, generator=g).to(dtype) for _ in range(2))
    norm = LlamaRMSNorm(shape[-1], eps=1e-5).to(dtype)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.1 * torch.randn(shape[-1], generator=g))
        assert_matches(ops.rms_norm(x, norm.weight, 1e-5), norm(x))
        normed, summed = ops.rms_norm(delta, norm.weight, 1e-5, residual=x)
        assert_matches(summed, x + delta, exact=True)  # the residual stream, rounded as the eager add rounds it
        assert_matches(normed, norm(x + delta))


def _rope(batch, head_dim, dtype, g):
    angles = torch.rand(batch, head_dim // 2, generator=g) * 20
    emb = torch.cat((angles, angles), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head_dim", [8, 12, 64])  # 12: a half of 6 lanes, not a power of two
@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("queries_at_slots", [False, True])
def test_rotary_kernel_writes_the_caches_and_queries_of_the_eager_step(dtype, head_dim, scaled, queries_at_slots):
    g = torch.Generator().manual_seed(1)
    batch, heads, kv_heads, slot_count, max_len = 3, 4, 2, 5, 7
    q = torch.randn(batch, heads * head_dim, generator=g).to(dtype)
    k = torch.randn(batch, kv_heads * head_dim, generator=g).to(dtype)
    v = torch.randn(batch, kv_heads * head_dim, generator=g).to(dtype)
    qkv = torch.cat([q, k, v], dim=1)  # strided rows, as the fused projection gives them
    q, k, v = qkv.split([q.shape[1], k.shape[1], v.shape[1]], dim=1)
    cos, sin = _rope(batch, head_dim, dtype, g)
    keys = torch.randn(slot_count, kv_heads, max_len, head_dim, generator=g).to(dtype)
    values = torch.randn(slot_count, kv_heads, max_len, head_dim, generator=g).to(dtype)
    slots, positions = torch.tensor([4, 0, 2]), torch.tensor([3, 0, 6])
    q_scale = (1 + 0.1 * torch.randn(slot_count, q.shape[1], generator=g)).to(dtype) if scaled else None
    v_scale = (1 + 0.1 * torch.randn(slot_count, v.shape[1], generator=g)).to(dtype) if scaled else None

    # The PyTorch operation's code (TorchOps.rotary_to_cache).
    expected_q = q * q_scale[slots] if scaled else q
    expected_v = v * v_scale[slots] if scaled else v
    expected_q = expected_q.view(batch, heads, head_dim)
    rot_k = k.view(batch, kv_heads, head_dim)
    c, s = cos.unsqueeze(1), sin.unsqueeze(1)
    expected_q = expected_q * c + _rotate_half(expected_q) * s
    rot_k = rot_k * c + _rotate_half(rot_k) * s
    expected_keys, expected_values = keys.clone(), values.clone()
    expected_keys[slots, :, positions] = rot_k
    expected_values[slots, :, positions] = expected_v.view(batch, kv_heads, head_dim)

    q_out = torch.zeros(slot_count, heads, head_dim, dtype=dtype) if queries_at_slots else None
    got = ops.rotary_to_cache(q, k, v, cos, sin, keys, values, slots, positions, q_out=q_out,
                              q_rows=slots if queries_at_slots else None, q_scale=q_scale, v_scale=v_scale,
                              scale_rows=slots if scaled else None)
    assert_matches(got[slots] if queries_at_slots else got, expected_q, exact=True)
    assert_matches(keys, expected_keys, exact=True)
    assert_matches(values, expected_values, exact=True)
    if queries_at_slots:  # slots outside the batch keep their (zero) queries
        assert not got[[1, 3]].any()


@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 48), (4, 1500), (2, 2, 96)])  # 1500: two column blocks, ragged
@pytest.mark.parametrize("scaled", [False, True])
def test_silu_mul_matches_the_eager_activation_and_para_multiply(dtype, shape, scaled):
    g = torch.Generator().manual_seed(2)
    gate, up = (torch.randn(shape, generator=g).mul(3).to(dtype) for _ in range(2))
    rows = gate.numel() // shape[-1]
    if scaled:
        scale = (1 + 0.1 * torch.randn(rows + 2, shape[-1], generator=g)).to(dtype)
        scale_rows = torch.randperm(rows + 2, generator=g)[:rows]
        got = ops.silu_mul(gate, up, scale, scale_rows)
        expected = F.silu(gate) * (up * scale[scale_rows].view(shape))
    else:
        got, expected = ops.silu_mul(gate, up), F.silu(gate) * up
    # bf16: every rounding reproduced; float32: exp may differ from PyTorch's in the last bit
    assert_matches(got, expected, exact=dtype == torch.bfloat16)


@interpreted
def test_fused_projections_share_the_modules_weights_and_give_their_outputs():
    layers = [torch.nn.Linear(16, width, bias=True) for width in (12, 4, 4)]
    x = torch.randn(3, 16)
    with torch.no_grad():
        expected = [layer(x) for layer in layers]
        fused = FusedLinear.build(layers)
        assert fused is not None and fused.is_current()
        for got, want, layer in zip(fused(x), expected, layers):
            torch.testing.assert_close(got, want)
            assert layer(x).equal(want)  # the HF modules still compute what they did
        layers[1].weight[0, 0] = 7.0  # the module's parameter is a view: the fused weight sees the write
        assert fused.weight[12, 0] == 7.0
        again = FusedLinear.build(layers)  # a second engine on the same model shares the fused tensor
        assert again.weight.data_ptr() == fused.weight.data_ptr() and fused.is_current()
        assert torch.equal(again.weight, fused.weight) and torch.equal(again.bias, fused.bias)
    assert FusedLinear.build([torch.nn.Linear(16, 4), torch.nn.Linear(16, 4, bias=False)]) is None


@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, n, k, tiles", [
    (1, 96, 256, None), (5, 48, 32, None), (17, 200, 256, (64, 32, 64, 2)), (64, 130, 512, (64, 64, 64, 4)),
    (70, 64, 128, (64, 64, 64, 1)), (9, 33, 200, (64, 16, 64, 3)), (3, 160, 1024, (128, 16, 128, 8))])
@pytest.mark.parametrize("bias", [False, True])
def test_decode_linear_equals_f_linear_for_every_split_and_tail(dtype, rows, n, k, tiles, bias):
    """The skinny matmul against F.linear: rows and outputs off the tile sizes, K splits that divide K evenly or
    leave a tail (and a split past K), with and without a bias; plans picked by ``plan`` too."""
    g = torch.Generator().manual_seed(rows * n + k)
    x, w, b = torch.randn(rows, k, generator=g), torch.randn(n, k, generator=g) / k ** 0.5, torch.randn(n, generator=g)
    x, w, b = x.to(dtype), w.to(dtype), b.to(dtype)
    got = decode_linear(x, w, b if bias else None, LinearPlan(*tiles) if tiles else None)
    expected = F.linear(x.float(), w.float(), b.float() if bias else None)
    assert got.shape == (rows, n) and got.dtype == dtype
    # one rounding of a float32 sum (the order of its terms differs from cuBLAS's)
    torch.testing.assert_close(got.float(), expected, atol=1e-5 if dtype == torch.float32 else 1e-2,
                               rtol=1e-5 if dtype == torch.float32 else 2 ** -7)


# ----------------------------------------------------------------------------------- paged attention
def _paged_case(dtype, heads, kv_heads, head_dim, lengths, block_size, g):
    """Random keys and values of sequences of ``lengths`` scattered over shuffled blocks, and contiguous copies."""
    blocks_per = [-(-n // block_size) for n in lengths]
    total = sum(blocks_per) + 3
    order = torch.randperm(total, generator=g).tolist()
    keys = torch.randn(total, kv_heads, block_size, head_dim, generator=g).to(dtype)
    values = torch.randn(total, kv_heads, block_size, head_dim, generator=g).to(dtype)
    width = max(blocks_per)
    tables = torch.full((len(lengths), width), total - 1, dtype=torch.int32)
    for row, count in enumerate(blocks_per):
        tables[row, :count] = torch.tensor([order.pop() for _ in range(count)], dtype=torch.int32)
    q = torch.randn(len(lengths), heads, head_dim, generator=g).to(dtype)
    return q, keys, values, tables, torch.tensor(lengths, dtype=torch.int32)


def _contiguous_attention(q, keys, values, tables, context, scale):
    """Each row's cache laid out contiguously from its blocks, then plain SDPA with GQA expanded."""
    outs = []
    for row in range(q.shape[0]):
        n = int(context[row])
        k = keys[tables[row]].permute(1, 0, 2, 3).reshape(keys.shape[1], -1, keys.shape[-1])[:, :n].float()
        v = values[tables[row]].permute(1, 0, 2, 3).reshape(keys.shape[1], -1, keys.shape[-1])[:, :n].float()
        group = q.shape[1] // keys.shape[1]
        k, v = k.repeat_interleave(group, 0), v.repeat_interleave(group, 0)
        weights = torch.softmax(q[row].float().unsqueeze(1) @ k.transpose(1, 2) * scale, dim=-1)
        outs.append((weights @ v)[:, 0].reshape(-1))
    return torch.stack(outs)


@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("heads, kv_heads, head_dim", [(4, 2, 8), (9, 3, 64), (8, 8, 16), (4, 1, 32)])
@pytest.mark.parametrize("splits", [1, 3])
def test_paged_attention_kernel_equals_contiguous_attention(dtype, heads, kv_heads, head_dim, splits):
    from parapeft.engine.kernels.paged_attention import paged_decode_attention
    from parapeft.engine.ops import TorchOps

    g = torch.Generator().manual_seed(5)
    lengths = [1, 16, 70, 130, 9]  # one position; a whole block; several 64-position tiles, ragged
    q, keys, values, tables, context = _paged_case(dtype, heads, kv_heads, head_dim, lengths, 16, g)
    scale = head_dim ** -0.5
    expected = _contiguous_attention(q, keys, values, tables, context, scale)
    got = paged_decode_attention(q, keys, values, tables, context, scale, splits=splits)
    reference = TorchOps().decode_attention(q, keys, values, tables, context, scale, tables.shape[1])
    tolerance = {} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
    torch.testing.assert_close(got.float(), expected, **tolerance)
    torch.testing.assert_close(reference.float(), expected, **tolerance)


@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("heads, kv_heads, head_dim", [(4, 2, 8), (9, 3, 64), (4, 4, 32)])
def test_prefill_attention_kernel_equals_causal_attention_per_prompt(dtype, heads, kv_heads, head_dim):
    """Packed prompts of ragged lengths (one longer than a tile), keys and values read through block tables."""
    from parapeft.engine.batch import prefill_tiles
    from parapeft.engine.kernels.prefill_attention import paged_prefill_attention

    g = torch.Generator().manual_seed(6)
    lengths, block_size = [70, 1, 16, 33], 8
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    _, keys, values, tables, _ = _paged_case(dtype, heads, kv_heads, head_dim, lengths, block_size, g)
    q = torch.randn(sum(lengths), heads, head_dim, generator=g).to(dtype)
    scale = head_dim ** -0.5
    got = paged_prefill_attention(q, keys, values, tables, torch.tensor(starts), torch.tensor(lengths),
                                  torch.tensor(prefill_tiles(lengths), dtype=torch.int32), scale)
    for prompt, (start, n) in enumerate(zip(starts, lengths)):
        k = keys[tables[prompt].long()].permute(1, 0, 2, 3).reshape(kv_heads, -1, head_dim)[:, :n].float()
        v = values[tables[prompt].long()].permute(1, 0, 2, 3).reshape(kv_heads, -1, head_dim)[:, :n].float()
        group = heads // kv_heads
        expected = F.scaled_dot_product_attention(q[start:start + n].float().transpose(0, 1),
                                                  k.repeat_interleave(group, 0), v.repeat_interleave(group, 0),
                                                  is_causal=True, scale=scale).transpose(0, 1).reshape(n, -1)
        tolerance = {} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
        torch.testing.assert_close(got[start:start + n].float(), expected, **tolerance)


@interpreted
def test_generator_kernels_equal_the_pytorch_generators():
    """Mean, last and max pooling with SiLU, GELU and ReLU, ranks and targets differing, bare prompts among
    them, and prompts pooling fewer positions than they hold (re-run tokens after a preemption): the layer
    multipliers the kernels write equal those of the PyTorch code."""
    from parapeft.engine.batch import build_prefill

    configs = {"m": ParaConfig(r=4), "l": ParaConfig(r=3, pooler="last", activation="gelu"),
               "x": ParaConfig(r=5, pooler="max", activation="relu", targets=["v", "up"], layers_to_transform=[1])}
    para = get_para_model(tiny_model("qwen2"), configs["m"], adapter_name="m")
    for name, config in configs.items():
        if name != "m":
            para.add_adapter(name, config)
    for seed, name in enumerate(configs):
        randomize_adapter(para, name, seed + 20)
    sequences = [(0, prompts([9])[0], 9), (1, prompts([12], seed=1)[0], 7), (2, prompts([5], seed=2)[0], 5),
                 (3, prompts([70], seed=3)[0], 66)]
    names = ["m", "l", None, "x"]
    results = []
    for fused in (False, True):
        engine = Engine(para.eval(), max_seqs=4, max_len=96, fused_kernels=fused)
        for row, tokens, _ in sequences:
            engine.cache.note_blocks(row, engine.blocks.grow([], len(tokens)))
        engine.cache.flush()
        batch = build_prefill(sequences, engine.cache, engine.device, fused=fused)
        engine.para.prepare_prefill(batch, names)
        assert (batch.extras["para"].kernel is not None) == fused
        x = torch.randn(batch.tokens, 32, generator=torch.Generator().manual_seed(4))
        for layer in range(2):
            engine.para.after_norm(layer, x, batch)
        results.append(engine.para.multipliers[:, :4].clone())
        if fused:  # tiles smaller than the prompts and the hidden width: several loop steps and channel blocks
            from parapeft.engine.kernels.para_generator import generate_multipliers

            k, out = batch.extras["para"].kernel, torch.ones_like(engine.para.multipliers)
            for layer in range(2):
                generate_multipliers(x, k["starts"], k["pooled"], k["poolers"], k["activations"], k["slots"],
                                     batch.rows, engine.para.down[layer], engine.para.up[layer], out[layer],
                                     block_d=8, block_t=4, warps=1)
            torch.testing.assert_close(out[:, :4], results[1], atol=1e-5, rtol=1e-5)
            # the bare prompt's slot skipped: its row is left as it was (the engine gives such rows ones first)
            out = torch.full_like(engine.para.multipliers, 7.0)
            for layer in range(2):
                generate_multipliers(x, k["starts"], k["pooled"], k["poolers"], k["activations"], k["slots"],
                                     batch.rows, engine.para.down[layer], engine.para.up[layer], out[layer],
                                     skip_slot=engine.para.none_slot)
            assert torch.equal(out[:, 2], torch.full_like(out[:, 2], 7.0))
            torch.testing.assert_close(out[:, [0, 1, 3]], results[1][:, [0, 1, 3]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(results[1], results[0], atol=1e-5, rtol=1e-5)
    assert torch.equal(results[1][:, 2], torch.ones_like(results[1][:, 2]))  # the bare prompt's row


@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
def test_lora_kernels_add_each_tiles_adapter_product(dtype):
    from parapeft.engine.kernels.lora_sgmv import lora_add, lora_tiles

    g = torch.Generator().manual_seed(7)
    tokens, width_in, width_out, rank = 41, 48, 40, 5
    x = torch.randn(tokens, width_in, generator=g).to(dtype)
    a = torch.randn(3, rank, width_in, generator=g).mul(0.3).to(dtype)
    b = torch.randn(3, width_out, rank, generator=g).mul(0.3).to(dtype)
    fused = torch.randn(tokens, width_out + 8, generator=g).to(dtype)  # out is a strided slice
    out, beside = fused[:, :width_out], fused[:, width_out:].clone()
    segments = [(0, 20, 2), (20, 21, 0), (25, 41, 1)]  # tokens 21-24 have no adapter
    expected = out.clone()
    for start, end, slot in segments:
        expected[start:end] += (x[start:end] @ a[slot].T) @ b[slot].T
    lora_add(x, a, b, torch.tensor(lora_tiles(segments), dtype=torch.int32), out)
    tolerance = {} if dtype == torch.float32 else {"atol": 3e-2, "rtol": 3e-2}
    torch.testing.assert_close(out, expected, **tolerance)
    assert torch.equal(fused[:, width_out:], beside)  # the columns next to the slice are not touched


# ---------------------------------------------------------------------------------------------- engine
def _lora_dir(tmp_path, arch):
    from test_engine import peft_lora

    peft_lora(arch, tmp_path / "lora", rank=3, seed=8, targets=("q_proj", "v_proj", "up_proj"))
    return tmp_path / "lora"


@interpreted
@pytest.mark.parametrize("arch, skinny_rows", [("llama", 0), ("qwen2", 0), ("qwen3", 0), ("llama", 64), ("qwen2", 64)])
def test_engine_with_triton_kernels_equals_the_pytorch_engine(arch, skinny_rows, tmp_path, monkeypatch):
    """PARA, LoRA and bare rows prefilled together and decoded together: same tokens and logprobs whether
    the passes run through the Triton kernels (paged attention included; with ``skinny_rows``, every matmul
    through the Triton matmul too) or the PyTorch operations. qwen2: q/k/v biases; qwen3: q/k norms."""
    from parapeft.engine.ops import triton_ops

    skinny_calls = []
    monkeypatch.setattr(triton_ops, "decode_linear",
                        lambda *args, **kw: skinny_calls.append(1) or decode_linear(*args, **kw))
    para = tiny_para(arch)
    lora = _lora_dir(tmp_path, arch)
    batch = prompts([5, 19, 7, 6, 11])
    adapters = ["a", "b", BASE_ADAPTER, "lo", "a"]
    runs = []
    for fused in (False, True):
        engine = Engine(para, max_seqs=4, max_len=64, block_size=4, fused_kernels=fused,
                        skinny_matmul_rows=skinny_rows)
        assert engine.executor.ops.name == ("triton" if fused else "torch")
        engine.load_adapter("lo", lora)
        requests = [engine.submit(p, a, SamplingParams(max_tokens=9, ignore_eos=True)) for p, a in zip(batch, adapters)]
        engine.run_until_done()
        runs.append(requests)
    if skinny_rows:  # every projection and the head of every pass of the Triton engine: 2 layers x 4 + 1
        assert len(skinny_calls) >= 9 * engine.steps
    else:
        assert not skinny_calls
    for torch_run, triton_run in zip(*runs):
        assert triton_run.tokens == torch_run.tokens
        torch.testing.assert_close(torch.tensor(triton_run.logprobs), torch.tensor(torch_run.logprobs),
                                   atol=1e-4, rtol=1e-4)


@interpreted
def test_engine_with_triton_kernels_gives_each_request_its_reference_tokens():
    para = tiny_para("llama")
    batch = prompts([5, 9, 7, 6])
    adapters = ["a", "b", BASE_ADAPTER, "a"]
    expected = [reference(para, p, a, 6) for p, a in zip(batch, adapters)]
    engine = Engine(para, max_seqs=3, max_len=64, fused_kernels=True)
    requests = [engine.submit(p, a, SamplingParams(max_tokens=6)) for p, a in zip(batch, adapters)]
    engine.run_until_done()
    assert [r.tokens for r in requests] == expected


@interpreted
def test_a_pass_padded_to_a_graph_bucket_equals_the_exact_pass_with_the_kernels(tmp_path):
    """The padded pass a prefill graph replays, through the Triton kernels (attention tiles of the padding
    prompt, the generator kernels' padding prompts), against the exact pass."""
    from test_engine_prefill import padded_pass_equals_the_exact_pass

    padded_pass_equals_the_exact_pass(fused=True, tmp=tmp_path)


@interpreted
def test_the_template_pass_of_a_prefill_graph_touches_only_scratch_with_the_kernels(tmp_path):
    from test_engine_prefill import template_pass_touches_only_scratch

    template_pass_touches_only_scratch(fused=True, tmp=tmp_path)


@interpreted
def test_a_pass_replays_from_a_graph_only_where_the_kernels_run_it_whole():
    """Attention pooling runs PyTorch code whose shapes follow the prompts: such a pass is never padded to a
    bucket (its padding tokens would be pooled into the scratch row)."""
    from test_engine_prefill import every_pooler_para

    engine = Engine(every_pooler_para("llama"), max_seqs=4, max_len=32, fused_kernels=True)
    assert engine.para.graphable(["mean", None, "last", "max"]) and engine.lora.graphable(["lo", None])
    assert not engine.para.graphable(["mean", "attn"])
