"""One decoding step for a batch of KV-cache slots, each row with its own PARA vectors or LoRA matrices.

The prefill of a prompt runs through ``ParaModel`` (the tested reference: it
computes the prompt's vectors layer by layer and fills a cache); its keys,
values and vectors are then copied into this module's static per-slot buffers.
Decoding reads the backbone's own modules (norms, projections, rotary
embedding) but does its own attention over the static cache, so a step's cost
and shapes do not depend on which adapters the rows use: every row's Q, V and
Up are multiplied by its slot's vectors, gathered by slot index (rows without
an adapter hold vectors of ones).

On a GPU with Triton the one-token step runs fused (``fused``): q/k/v and gate/up are one matmul each,
and Triton kernels do the residual add with RMSNorm, the rotary embedding with the cache writes, and
SiLU-and-multiply, reading each row's PARA vectors by slot inside them, so a PARA step launches exactly
the kernels of a bare step. Prefill (more than one token per row) and CPUs run the PyTorch code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..architectures import decoder_layers
from ..layer import ScaledModule
from . import kernels
from .kernels.fused_linear import FusedLinear

SUPPORTED = ("llama", "mistral", "qwen2", "qwen3")


def _plain(module: nn.Module) -> nn.Module:
    """The backbone module behind a PARA wrapper."""
    return module.base_layer if isinstance(module, ScaledModule) else module


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rms_norm_like(module: nn.Module) -> bool:
    """An HF RMSNorm of the Llama kind (weight times the normalised input), which the Triton kernel computes."""
    module = _plain(module)
    return (type(module).__name__.endswith("RMSNorm") and hasattr(module, "variance_epsilon")
            and isinstance(getattr(module, "weight", None), torch.Tensor))


class SlotDecoder(nn.Module):
    """Static KV cache and per-slot PARA scales for ``slots`` sequences of up to ``max_len`` tokens."""

    def __init__(self, model: nn.Module, slots: int, max_len: int, lora_rank: int = 0, fused: bool | None = None):
        super().__init__()
        config = model.config
        if config.model_type not in SUPPORTED:
            raise ValueError(f"the engine runs {', '.join(SUPPORTED)}; got model_type {config.model_type!r}")
        if getattr(config, "sliding_window", None) and config.sliding_window < max_len:
            raise ValueError(f"sliding-window attention ({config.sliding_window}) shorter than the engine context")
        object.__setattr__(self, "model", model)  # not a submodule: the engine does not own the weights
        self.layers = decoder_layers(model)
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.max_len = max_len
        weight = model.get_input_embeddings().weight
        layers, dtype, device = len(self.layers), weight.dtype, weight.device
        self.scratch_slot = slots  # one extra slot absorbs the writes of padding rows in graph buckets
        cache_shape = (layers, slots + 1, self.kv_heads, max_len, self.head_dim)
        self.register_buffer("keys", torch.zeros(cache_shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("values", torch.zeros(cache_shape, dtype=dtype, device=device), persistent=False)
        first = self.layers[0]
        widths = {"q": _plain(first.self_attn.q_proj).out_features, "v": _plain(first.self_attn.v_proj).out_features,
                  "up": _plain(first.mlp.up_proj).out_features}
        self.scales = {t: torch.ones(layers, slots + 1, w, dtype=dtype, device=device) for t, w in widths.items()}
        # LoRA mode (Punica/BGMV style): per-slot low-rank matrices on q and v, zero-padded to lora_rank.
        self.lora_rank = lora_rank
        hidden = _plain(first.self_attn.q_proj).in_features
        self.lora_a = {t: torch.zeros(layers, slots + 1, lora_rank, hidden, dtype=dtype, device=device)
                       for t in ("q", "v")} if lora_rank else {}
        self.lora_b = {t: torch.zeros(layers, slots + 1, widths[t], lora_rank, dtype=dtype, device=device)
                       for t in ("q", "v")} if lora_rank else {}
        self.fused = self._fusable(model, fused, device)
        self.silu = config.hidden_act in ("silu", "swish")  # else the fused step calls the model's own act_fn
        # Per layer: (q/k/v, gate/up) as one matmul each, or None where the weights cannot share a tensor.
        self.projections = [(FusedLinear.build([_plain(m) for m in (layer.self_attn.q_proj, layer.self_attn.k_proj,
                                                                     layer.self_attn.v_proj)]),
                             FusedLinear.build([_plain(layer.mlp.gate_proj), _plain(layer.mlp.up_proj)]))
                            for layer in self.layers] if self.fused else []

    def _fusable(self, model: nn.Module, fused: bool | None, device: torch.device) -> bool:
        """Whether the one-token step uses the Triton kernels: asked for (True), or by default on CUDA with Triton."""
        if fused is False or (fused is None and device.type != "cuda"):
            return False
        norms = [model.model.norm]
        for layer in self.layers:
            norms += [layer.input_layernorm, layer.post_attention_layernorm]
            norms += [getattr(layer.self_attn, n) for n in ("q_norm", "k_norm") if hasattr(layer.self_attn, n)]
        problem = ("Triton is not installed" if not kernels.available() else
                   "a norm is not an RMSNorm of the Llama kind" if not all(_rms_norm_like(n) for n in norms) else
                   "the head width is odd" if self.head_dim % 2 else None)
        if problem and fused:
            raise ValueError(f"fused kernels asked for, but {problem}")
        return problem is None

    # ------------------------------------------------------------------ slots
    def load_slot(self, slot: int, cache, length: int, vectors: list[dict[str, torch.Tensor] | None]) -> None:
        """Copy a prefilled sequence (row 0 of an HF cache) and its prompt's vectors into ``slot``."""
        for index, layer_cache in enumerate(cache.layers):
            self.keys[index, slot, :, :length] = layer_cache.keys[0, :, :length]
            self.values[index, slot, :, :length] = layer_cache.values[0, :, :length]
            for target, buffer in self.scales.items():
                layer_vectors = vectors[index] if vectors else None
                if layer_vectors is not None and target in layer_vectors:
                    buffer[index, slot] = layer_vectors[target][0]
                else:
                    buffer[index, slot] = 1.0
        if self.lora_rank:
            for target in ("q", "v"):
                self.lora_a[target][:, slot] = 0
                self.lora_b[target][:, slot] = 0

    def set_lora(self, slot: int, lora: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] | None) -> None:
        """Give ``slot`` a LoRA adapter's per-layer (A, scaled B) for q and v (``None``: no LoRA)."""
        if not self.lora_rank:
            if lora:
                raise ValueError("this engine was built without a LoRA mode (lora_rank=0)")
            return
        for target in ("q", "v"):
            self.lora_a[target][:, slot] = 0
            self.lora_b[target][:, slot] = 0
        for (index, target), (a, b) in (lora or {}).items():
            rank = a.shape[0]
            if rank > self.lora_rank:
                raise ValueError(f"LoRA rank {rank} exceeds the engine's maximum {self.lora_rank}")
            self.lora_a[target][index, slot, :rank] = a
            self.lora_b[target][index, slot, :, :rank] = b
        for buffer in self.scales.values():  # a LoRA (or bare) row carries no PARA vectors
            buffer[:, slot] = 1.0

    # ------------------------------------------------------------------- runs
    @torch.no_grad()
    def prefill(self, slot: int, token_ids: list[int]) -> torch.Tensor:
        """Run a whole prompt through the slot's own weights (bare or LoRA) in one pass; logits of its last token."""
        device = self.keys.device
        tokens = torch.tensor([token_ids], device=device)
        positions = torch.arange(len(token_ids), device=device).unsqueeze(0)
        slots = torch.tensor([slot], device=device)
        return self._run(slots, tokens, positions, len(token_ids), para=False)[:, -1]

    @torch.no_grad()
    def step(self, slots: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor, para: bool = True,
             length: int | None = None, fused: bool | None = None) -> torch.Tensor:
        """Logits [rows, vocab] for one new token per row; ``positions[i]`` is where row i's token goes.

        ``para=False`` skips the three multiplies: the bare backbone, for benchmarks.
        ``length`` is how much of each slot attention reads (masked beyond each row's position); it must
        exceed every position. Given, the step has static shapes and no host synchronisation, which CUDA
        graph capture needs; by default it is the longest row's.
        ``fused=False`` runs the PyTorch step even where the Triton kernels are on (None: ``self.fused``).
        """
        length = int(positions.max()) + 1 if length is None else length
        if self.fused and fused is not False:
            return self._run_fused(slots, tokens, positions, length, para)
        return self._run(slots, tokens.unsqueeze(1), positions.unsqueeze(1), length, para)[:, 0]

    def _lora(self, target: str, index: int, slots: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        low = torch.einsum("btd,brd->btr", x, self.lora_a[target][index, slots])
        return torch.einsum("btr,bor->bto", low, self.lora_b[target][index, slots])

    def _attend(self, index: int, slots: torch.Tensor, q: torch.Tensor, positions: torch.Tensor, length: int,
                scale: float) -> torch.Tensor:
        """Attention of queries [B, H, T, hd] over their slots' cached keys and values: [B, H, T, hd].

        The G query heads that share a key/value head are laid out as G × T query positions of that head,
        so grouped-query attention never copies keys and values G times. A batch that fills most slots
        attends over all slots in place (views, no copy) and picks its rows' outputs; a small batch
        gathers its own slots' caches instead.
        """
        rows, heads, steps, head_dim = q.shape
        group = heads // self.kv_heads
        all_slots = steps == 1 and 2 * rows >= self.keys.shape[1]
        if all_slots:
            visible_to = torch.zeros(self.keys.shape[1], dtype=positions.dtype, device=q.device)
            visible_to[slots] = positions[:, 0]  # slots outside the batch see position 0 (outputs unused)
            grouped = q.new_zeros(self.keys.shape[1], self.kv_heads, group * steps, head_dim)
            grouped[slots] = q.reshape(rows, self.kv_heads, group * steps, head_dim)
            keys, values = self.keys[index, :, :, :length], self.values[index, :, :, :length]
            visible = torch.arange(length, device=q.device).view(1, 1, -1) <= visible_to.view(-1, 1, 1)
            out = F.scaled_dot_product_attention(grouped, keys, values, attn_mask=visible.unsqueeze(1), scale=scale)
            return out[slots].reshape(rows, heads, steps, head_dim)
        keys, values = self.keys[index, slots, :, :length], self.values[index, slots, :, :length]
        visible = torch.arange(length, device=q.device).view(1, 1, -1) <= positions.unsqueeze(-1)  # [B, T, S]
        mask = visible.unsqueeze(1).expand(rows, group, steps, length).reshape(rows, 1, group * steps, length)
        grouped = q.reshape(rows, self.kv_heads, group * steps, head_dim)
        out = F.scaled_dot_product_attention(grouped, keys, values, attn_mask=mask, scale=scale)
        return out.reshape(rows, heads, steps, head_dim)

    def _run(self, slots: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor, length: int,
             para: bool) -> torch.Tensor:
        """Tokens [B, T] at positions [B, T] of their slots: write their keys and values, return logits [B, T, V]."""
        model = self.model
        rows, steps = tokens.shape
        hidden = model.get_input_embeddings()(tokens)  # [B, T, d]
        cos, sin = model.model.rotary_emb(hidden, positions)  # [B, T, hd]
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        # Every row's vectors for every layer, gathered once per step (three gathers, not three per layer).
        scales = {t: buffer[:, slots].unsqueeze(2) for t, buffer in self.scales.items()} if para else None
        for index, layer in enumerate(self.layers):
            attn, mlp = layer.self_attn, layer.mlp
            x = layer.input_layernorm(hidden)
            q = _plain(attn.q_proj)(x)
            k = _plain(attn.k_proj)(x)
            v = _plain(attn.v_proj)(x)
            if self.lora_rank:  # rows without LoRA hold zero matrices
                q = q + self._lora("q", index, slots, x)
                v = v + self._lora("v", index, slots, x)
            if scales:
                v = v * scales["v"][index]
            q = q.view(rows, steps, self.heads, self.head_dim)
            k = k.view(rows, steps, self.kv_heads, self.head_dim)
            if hasattr(attn, "q_norm"):  # Qwen3: per-head norms; PARA scales the normalised query
                q, k = _plain(attn.q_norm)(q), attn.k_norm(k)
            if scales:
                q = q * scales["q"][index].view(rows, 1, self.heads, self.head_dim)
            q, k = q.transpose(1, 2), k.transpose(1, 2)  # [B, H, T, hd]
            v = v.view(rows, steps, self.kv_heads, self.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            self.keys[index, slots.unsqueeze(1), :, positions] = k.transpose(1, 2)
            self.values[index, slots.unsqueeze(1), :, positions] = v.transpose(1, 2)
            out = self._attend(index, slots, q, positions, length, attn.scaling)
            hidden = hidden + _plain(attn.o_proj)(out.transpose(1, 2).reshape(rows, steps, -1))
            x = layer.post_attention_layernorm(hidden)
            up = _plain(mlp.up_proj)(x)
            if scales:
                up = up * scales["up"][index]
            hidden = hidden + mlp.down_proj(mlp.act_fn(mlp.gate_proj(x)) * up)
        hidden = model.model.norm(hidden)
        return model.lm_head(hidden).float()

    # ------------------------------------------------------------ fused step
    @staticmethod
    def _add_norm(norm: nn.Module, hidden: torch.Tensor, delta: torch.Tensor | None):
        """``hidden = hidden + delta`` (when given), then ``norm(hidden)``: one launch; returns (hidden, normed)."""
        from .kernels.triton_ops import rms_norm

        norm = _plain(norm)
        if delta is None:
            return hidden, rms_norm(hidden, norm.weight, norm.variance_epsilon)
        normed, hidden = rms_norm(delta, norm.weight, norm.variance_epsilon, residual=hidden)
        return hidden, normed

    def _run_fused(self, slots: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor, length: int,
                   para: bool) -> torch.Tensor:
        """``step`` (one token per row) through the Triton kernels: logits [B, V].

        The same computation as ``_run``, in the same order and rounding (see ``kernels.triton_ops``),
        with fewer launches: per layer, add+norm, q/k/v matmul, rotary with the cache writes (PARA's q and
        v scales inside), attention, o_proj, add+norm, gate/up matmul, SiLU-multiply (PARA's up scale
        inside), down_proj. The kernels read PARA vectors by slot: no per-step gather of the vectors.
        """
        from .kernels.triton_ops import rms_norm, rotary_to_cache, silu_mul

        if self.projections and self.projections[0][0] is not None and not self.projections[0][0].is_current():
            raise RuntimeError("the backbone's weights were moved or cast after the decoder fused them; "
                               "build the SlotDecoder again")
        model, rows = self.model, tokens.shape[0]
        total, group = self.keys.shape[1], self.heads // self.kv_heads
        hidden = model.get_input_embeddings()(tokens)  # [B, d]
        cos, sin = model.model.rotary_emb(hidden, positions.unsqueeze(1))  # [B, 1, hd]
        cos, sin = cos[:, 0], sin[:, 0]
        # Layer-independent attention inputs, built once per step (the PyTorch step builds them per layer).
        span = torch.arange(length, device=hidden.device)
        all_slots = 2 * rows >= total
        if all_slots:  # attend over every slot in place; the rotary kernel writes each row's query at its slot
            visible_to = torch.zeros(total, dtype=positions.dtype, device=hidden.device)
            visible_to[slots] = positions  # slots outside the batch see position 0 and keep zero queries
            mask = span.view(1, 1, 1, -1) <= visible_to.view(-1, 1, 1, 1)  # [slots, 1, 1, S]
            queries, query_rows = hidden.new_zeros(total, self.heads, self.head_dim), slots
        else:  # gather the batch's own slots
            mask = (span.view(1, 1, 1, -1) <= positions.view(-1, 1, 1, 1)).expand(rows, 1, group, length)
            queries = hidden.new_empty(rows, self.heads, self.head_dim)
            query_rows = torch.arange(rows, device=hidden.device)
        delta = None
        for index, layer in enumerate(self.layers):
            attn, mlp = layer.self_attn, layer.mlp
            qkv, gate_up = self.projections[index]
            hidden, x = self._add_norm(layer.input_layernorm, hidden, delta)
            q, k, v = qkv(x) if qkv else [_plain(m)(x) for m in (attn.q_proj, attn.k_proj, attn.v_proj)]
            if self.lora_rank:  # rows without LoRA hold zero matrices
                q = q + self._lora("q", index, slots, x.unsqueeze(1))[:, 0]
                v = v + self._lora("v", index, slots, x.unsqueeze(1))[:, 0]
            if hasattr(attn, "q_norm"):  # Qwen3: per-head norms; PARA scales the normalised query
                q_norm, k_norm = _plain(attn.q_norm), _plain(attn.k_norm)
                q = rms_norm(q.reshape(rows, self.heads, self.head_dim), q_norm.weight, q_norm.variance_epsilon)
                k = rms_norm(k.reshape(rows, self.kv_heads, self.head_dim), k_norm.weight, k_norm.variance_epsilon)
                q, k = q.view(rows, -1), k.view(rows, -1)
            rotary_to_cache(q, k, v, cos, sin, self.keys[index], self.values[index], slots, positions,
                            q_out=queries, q_rows=query_rows, q_scale=self.scales["q"][index] if para else None,
                            v_scale=self.scales["v"][index] if para else None, scale_rows=slots)
            if all_slots:
                out = F.scaled_dot_product_attention(
                    queries.view(total, self.kv_heads, group, self.head_dim), self.keys[index, :, :, :length],
                    self.values[index, :, :, :length], attn_mask=mask, scale=attn.scaling)[slots]
            else:
                out = F.scaled_dot_product_attention(
                    queries.view(rows, self.kv_heads, group, self.head_dim), self.keys[index, slots, :, :length],
                    self.values[index, slots, :, :length], attn_mask=mask, scale=attn.scaling)
            delta = _plain(attn.o_proj)(out.reshape(rows, -1))
            hidden, x = self._add_norm(layer.post_attention_layernorm, hidden, delta)
            gate, up = gate_up(x) if gate_up else [_plain(mlp.gate_proj)(x), _plain(mlp.up_proj)(x)]
            up_scale = self.scales["up"][index] if para else None
            if self.silu:
                activated = silu_mul(gate, up, up_scale, scale_rows=slots if para else None)
            else:
                activated = mlp.act_fn(gate) * (up * up_scale[slots] if para else up)
            delta = mlp.down_proj(activated)
        _, hidden = self._add_norm(model.model.norm, hidden, delta)
        return model.lm_head(hidden).float()


class GraphedStep:
    """The decoding step captured in CUDA graphs, one per (batch bucket, context bucket).

    Rows are padded to the batch bucket and decode into the decoder's scratch slot, so they never touch
    a real sequence's cache; attention reads each slot up to the context bucket (powers of two, then
    the whole cache), so short sequences do not pay for the longest context the engine allows.
    ``compile`` first compiles the step with ``torch.compile`` (Inductor fuses the norms, rotary
    embedding and PARA multiplies into fewer kernels); the graphs then replay the compiled kernels.
    Otherwise the graphs replay the decoder's Triton kernels where it has them (``fused``, default on
    when the decoder's are; a compiled step always runs the PyTorch code, which Inductor fuses itself).
    """

    def __init__(self, decoder: SlotDecoder, max_rows: int, para: bool = True, compile: bool = False,
                 fused: bool | None = None):
        self.decoder, self.para = decoder, para
        self.fused = decoder.fused and not compile and fused is not False
        self.buckets = [b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if b < max_rows] + [max_rows]
        self.lengths = [n for n in (64, 128, 256, 512, 1024, 2048, 4096, 8192) if n < decoder.max_len] + [decoder.max_len]
        self.step = torch.compile(decoder.step, fullgraph=True, dynamic=False) if compile else decoder.step
        self.graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, dict[str, torch.Tensor], torch.Tensor]] = {}

    def _capture(self, size: int, length: int):
        device = self.decoder.keys.device
        inputs = {"slots": torch.full((size,), self.decoder.scratch_slot, device=device),
                  "tokens": torch.zeros(size, dtype=torch.long, device=device),
                  "positions": torch.zeros(size, dtype=torch.long, device=device)}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph (compilation, allocator, lazy initialisations)
            for _ in range(2):
                self.step(**inputs, para=self.para, length=length, fused=self.fused)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            logits = self.step(**inputs, para=self.para, length=length, fused=self.fused)
        self.graphs[size, length] = (graph, inputs, logits)
        return self.graphs[size, length]

    def __call__(self, slots: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor,
                 length: int | None = None) -> torch.Tensor:
        """As ``SlotDecoder.step``; pass ``length`` (longest position + 1, known on the host) to avoid a sync."""
        rows = slots.shape[0]
        size = next(b for b in self.buckets if b >= rows)
        needed = int(positions.max()) + 1 if length is None else length
        context = next(n for n in self.lengths if n >= needed)
        graph, inputs, logits = self.graphs.get((size, context)) or self._capture(size, context)
        inputs["slots"].fill_(self.decoder.scratch_slot)
        inputs["slots"][:rows] = slots
        inputs["tokens"][:rows] = tokens
        inputs["positions"].zero_()
        inputs["positions"][:rows] = positions
        graph.replay()
        return logits[:rows]
