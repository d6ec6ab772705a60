"""The engine's own forward pass over the backbone's weights: packed prefill and the decoding step.

Both passes run the same per-layer code with the operations chosen once (``ops``: PyTorch, or Triton
kernels on a GPU): add+norm, the adapters' hook on the normalised input (PARA's generators), one q/k/v
matmul with LoRA deltas added, q/k norms (Qwen3), rotary embedding that scales Q and V by each token's PARA
row and writes K and V into the paged cache, attention (causal within each packed prompt, or one query per
row over its cached blocks), o_proj, add+norm, one gate/up matmul, activation times the scaled Up,
down_proj. Nothing goes through the HF forward, so there is no ``DynamicCache`` and no copy into the cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..architectures import decoder_layers
from ..layer import ScaledModule
from .adapters import RowAdapters
from .batch import DecodeBatch, PrefillBatch
from .config import EngineConfig
from .errors import ConfigError
from .kernels.fused_linear import FusedLinear
from .kv_cache import PagedKVCache
from .ops import TorchOps, select_ops

SUPPORTED = ("llama", "mistral", "qwen2", "qwen3")


def plain(module: nn.Module) -> nn.Module:
    """The backbone module behind a PARA wrapper (the engine may be handed a ParaModel's backbone)."""
    return module.base_layer if isinstance(module, ScaledModule) else module


class _Projection:
    """Projections reading one input (q/k/v, gate/up, or a single one) as one matmul through the ops when their
    weights can share a tensor; otherwise (quantized, offloaded, ...) each module's own forward."""

    def __init__(self, modules: list[nn.Module], ops: TorchOps):
        self.modules, self.ops = modules, ops
        self.fused = FusedLinear.build(modules)

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.fused is None:
            return [m(x) for m in self.modules]
        return self.fused(x, self.ops.linear)


@dataclass
class _Layer:
    input_norm: nn.Module
    qkv: _Projection
    q_norm: nn.Module | None
    k_norm: nn.Module | None
    o_proj: _Projection
    post_norm: nn.Module
    gate_up: _Projection
    down: _Projection
    act_fn: object
    scaling: float


class Executor:
    def __init__(self, model: nn.Module, config: EngineConfig, cache_factory, adapters: list[RowAdapters] | None = None):
        hf = model.config
        if hf.model_type not in SUPPORTED:
            raise ConfigError(f"the engine runs {', '.join(SUPPORTED)}; got model_type {hf.model_type!r}")
        if getattr(hf, "sliding_window", None) and hf.sliding_window < config.max_len:
            raise ConfigError(f"sliding-window attention ({hf.sliding_window}) shorter than the engine context")
        self.model = model
        self.heads, self.kv_heads = hf.num_attention_heads, hf.num_key_value_heads
        self.head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
        weight = model.get_input_embeddings().weight
        self.dtype, self.device = weight.dtype, weight.device
        layers = decoder_layers(model)
        norms = [model.model.norm] + [plain(n) for layer in layers for n in (
            layer.input_layernorm, layer.post_attention_layernorm, getattr(layer.self_attn, "q_norm", None),
            getattr(layer.self_attn, "k_norm", None)) if n is not None]
        self.ops: TorchOps = select_ops(norms, hf.hidden_act in ("silu", "swish"), self.device, config.fused_kernels,
                                        config.skinny_matmul_rows)

        def projection(*modules: nn.Module) -> _Projection:
            return _Projection([plain(m) for m in modules], self.ops)

        self.layers = []
        for layer in layers:
            attn, mlp = layer.self_attn, layer.mlp
            self.layers.append(_Layer(
                input_norm=plain(layer.input_layernorm), qkv=projection(attn.q_proj, attn.k_proj, attn.v_proj),
                q_norm=plain(attn.q_norm) if hasattr(attn, "q_norm") else None,
                k_norm=plain(attn.k_norm) if hasattr(attn, "k_norm") else None,
                o_proj=projection(attn.o_proj), post_norm=plain(layer.post_attention_layernorm),
                gate_up=projection(mlp.gate_proj, mlp.up_proj), down=projection(mlp.down_proj),
                act_fn=mlp.act_fn, scaling=attn.scaling))
        self.head = projection(model.lm_head)
        self.cache: PagedKVCache = cache_factory(len(self.layers), self.kv_heads, self.head_dim, self.dtype, self.device)
        self.adapters = adapters or []
        self.vocab = model.get_output_embeddings().weight.shape[0]

    # ---------------------------------------------------------------- passes
    @torch.no_grad()
    def prefill(self, batch: PrefillBatch) -> torch.Tensor:
        """Every prompt of the batch in one pass: fills the cache and the PARA rows; last-token logits [P, V]."""
        cache = self.cache

        def attend(index: int, q: torch.Tensor) -> torch.Tensor:
            return self.ops.prefill_attention(q, cache.keys[index], cache.values[index], batch,
                                              self.layers[index].scaling)

        hidden = self._layers(batch.token_ids, batch.positions, batch.blocks, batch.offsets, batch.token_rows,
                              batch, attend)
        # From the batch's device tensor: a copy from the host here would wait for the whole pass just queued
        cache.seq_lens.index_copy_(0, batch.rows, batch.lengths.to(torch.int32))
        return self._logits(hidden.index_select(0, batch.last_index))

    @torch.no_grad()
    def decode(self, batch: DecodeBatch, max_blocks: int | None = None) -> torch.Tensor:
        """One token per row: the row's last token at position ``seq_lens[row]``; logits [B, V].

        Reads its inputs from the cache's per-row tables on the device, so it needs no host values (CUDA
        graphs capture it per batch size with ``max_blocks`` None: attention reads up to each row's length).
        """
        cache, rows = self.cache, batch.rows
        batch.extras.clear()  # what the adapters derive from the rows is derived again (and captured) every step
        positions = cache.seq_lens.index_select(0, rows).long()
        tables = cache.block_tables.index_select(0, rows)
        blocks = tables.gather(1, (positions // cache.block_size).unsqueeze(1))[:, 0].long()
        offsets = positions % cache.block_size
        context = (positions + 1).to(torch.int32)
        width = tables.shape[1] if max_blocks is None else max_blocks

        def attend(index: int, q: torch.Tensor) -> torch.Tensor:
            return self.ops.decode_attention(q, cache.keys[index], cache.values[index], tables, context,
                                             self.layers[index].scaling, width)

        tokens = cache.last_tokens.index_select(0, rows)
        hidden = self._layers(tokens, positions, blocks, offsets, rows, batch, attend)
        cache.seq_lens.index_copy_(0, rows, context)
        cache.seq_lens.narrow(0, cache.scratch_row, 1).zero_()  # padding rows never advance (a kernel, no copy)
        return self._logits(hidden)

    # ---------------------------------------------------------------- layers
    def _layers(self, tokens, positions, blocks, offsets, scale_rows, batch, attend) -> torch.Tensor:
        ops, model, cache = self.ops, self.model, self.cache
        count = tokens.shape[0]
        hidden = model.get_input_embeddings()(tokens)  # [T, d]
        cos, sin = model.model.rotary_emb(hidden.unsqueeze(0), positions.unsqueeze(0))
        cos, sin = cos[0], sin[0]  # [T, hd]
        delta = None
        for index, layer in enumerate(self.layers):
            hidden, x = ops.add_norm(layer.input_norm, hidden, delta)
            for kind in self.adapters:
                kind.after_norm(index, x, batch)
            q, k, v = layer.qkv(x)
            for target, out in (("q", q), ("k", k), ("v", v)):
                for kind in self.adapters:
                    kind.add_delta(index, target, x, out, batch)
            if layer.q_norm is not None:  # Qwen3: per-head norms; PARA scales the normalised query
                q = ops.norm(layer.q_norm, q.reshape(count, self.heads, self.head_dim)).view(count, -1)
                k = ops.norm(layer.k_norm, k.reshape(count, self.kv_heads, self.head_dim)).view(count, -1)
            scales = self._scales(index, batch)
            queries = ops.rotary_to_cache(q, k, v, cos, sin, cache.keys[index], cache.values[index], blocks, offsets,
                                          self.heads, self.kv_heads, q_scale=scales.get("q"), v_scale=scales.get("v"),
                                          scale_rows=scale_rows)
            out = attend(index, queries.reshape(count, self.heads, self.head_dim))
            delta, = layer.o_proj(out)
            for kind in self.adapters:
                kind.add_delta(index, "o", out, delta, batch)
            hidden, x = ops.add_norm(layer.post_norm, hidden, delta)
            gate, up = layer.gate_up(x)
            for target, projected in (("gate", gate), ("up", up)):
                for kind in self.adapters:
                    kind.add_delta(index, target, x, projected, batch)
            activated = ops.act_mul(layer.act_fn, gate, up, scales.get("up"), scale_rows)
            delta, = layer.down(activated)
            for kind in self.adapters:
                kind.add_delta(index, "down", activated, delta, batch)
        return hidden + delta

    def _scales(self, index: int, batch) -> dict[str, torch.Tensor]:
        for kind in self.adapters:
            found = kind.scales(index, batch)
            if found:
                return found
        return {}

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(self.ops.norm(self.model.model.norm, hidden))[0].float()
