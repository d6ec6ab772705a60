"""PARA's vector generators: prompt → per-layer scaling vectors for Q, V and Up (and the variants' targets).

One ``VectorGenerator`` is one adapter's generator in one decoder layer.
``LayerGenerators`` holds every adapter's generator for a layer and computes
the vectors of a batch whose rows may each use a different adapter, in one
batched pass: the generators' weights are stacked and gathered per row, so the
cost does not grow with a loop over adapters.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from .config import ALL_TARGETS, HEAD_TARGETS, ParaConfig
from .pooling import pool

ACTIVATION_FUNCTIONS = {"silu": F.silu, "gelu": F.gelu, "relu": F.relu}
# The multiplier minus one, from the generator's output l (each is 0 at l = 0: a fresh adapter is the identity).
# 2·sigmoid(l) − 1 is tanh(l / 2): the sigmoid form is the tanh form with W_up (and b) halved.
SCALE_OFFSETS = {"linear": lambda v: v, "tanh": torch.tanh, "sigmoid": lambda v: 2.0 * torch.sigmoid(v) - 1.0}


def input_key(config: ParaConfig) -> str:
    """The name of the tensor a generator of ``config`` pools: ``normed`` / ``residual`` of its own layer, or
    ``layer<L>:normed`` / ``layer<L>:residual`` from the frozen prompt pass when it pools from deeper."""
    if config.pool_layer is None:
        return config.generator_input
    return f"layer{config.pool_layer}:{config.generator_input}"


class VectorGenerator(nn.Module):
    """``d = form(b + W_up · act(W_down · dropout(pool(x))))`` for one adapter in one layer; the multiplier is 1 + d.

    ``W_up`` (and the static bias ``b``, when the config has one) starts at zero, and every scale form gives
    d = 0 at l = 0, so a fresh adapter scales everything by exactly 1. ``x`` is the input the config names
    (``generator_input``). The output is the concatenation of the vectors of ``config.targets`` in
    :data:`~parapeft.config.ALL_TARGETS` order.
    """

    def __init__(self, hidden: int, widths: dict[str, int], config: ParaConfig, head_dim: int = 1):
        super().__init__()
        self.pooler = config.pooler
        self.activation = config.activation
        self.scale_form = config.scale_form
        # Which tensor of the pass this generator pools: its layer's own input, or a deeper layer's (pool_layer)
        self.generator_input = input_key(config)
        self.targets = list(config.targets)
        self.widths = {t: widths[t] for t in self.targets}
        # Per-head vectors: W_up produces one value per head of q, k, v, o, repeated over the head's channels
        if config.granularity == "head" and head_dim < 2:
            raise ValueError(f"per-head vectors (granularity='head') need the model's head width; got head_dim={head_dim}")
        self.repeats = {t: head_dim if config.granularity == "head" and t in HEAD_TARGETS else 1 for t in self.targets}
        self.down = nn.Linear(hidden, config.r, bias=False)
        self.up = nn.Linear(config.r, sum(w // self.repeats[t] for t, w in self.widths.items()), bias=config.static_bias)
        nn.init.zeros_(self.up.weight)
        if self.up.bias is not None:
            nn.init.zeros_(self.up.bias)
        self.scorer = nn.Parameter(torch.zeros(hidden)) if config.pooler == "attention" else None
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        pooled = pool(self.pooler, x, prompt_mask, self.scorer)
        hidden = ACTIVATION_FUNCTIONS[self.activation](self.down(self.dropout(pooled)))
        return SCALE_OFFSETS[self.scale_form](self._per_channel(self.up(hidden), dim=-1))

    def _per_channel(self, values: torch.Tensor, dim: int) -> torch.Tensor:
        """The generator's outputs along ``dim``, per-head ones repeated over their heads' channels."""
        if all(r == 1 for r in self.repeats.values()):
            return values
        parts = values.split([self.widths[t] // self.repeats[t] for t in self.targets], dim=dim)
        return torch.cat([p.repeat_interleave(self.repeats[t], dim=dim) for p, t in zip(parts, self.targets)], dim=dim)

    def _full_layout(self, tensor: torch.Tensor, widths: dict[str, int]) -> torch.Tensor:
        """Rows of ``tensor`` (this adapter's targets) spread over every target of ``widths``, zeros elsewhere;
        a per-head row is repeated for each channel of its head (exact: those channels share the value)."""
        tensor = self._per_channel(tensor, dim=0)
        blocks, offset = [], 0
        for target in widths:
            if target in self.widths:
                blocks.append(tensor[offset : offset + widths[target]])
                offset += widths[target]
            else:
                blocks.append(tensor.new_zeros(widths[target], *tensor.shape[1:]))
        return torch.cat(blocks, dim=0)

    def full_up_weight(self, widths: dict[str, int], rank: int) -> torch.Tensor:
        """``W_up`` laid out for every target of ``widths`` and padded to ``rank`` columns (zeros elsewhere).

        Zero padding is exact: padded bottleneck units read zero rows of
        ``W_down``, and act(0) = 0 for every supported activation.
        """
        weight = self.up.weight
        return F.pad(self._full_layout(weight, widths), (0, rank - weight.shape[1]))

    def full_up_bias(self, widths: dict[str, int]) -> torch.Tensor:
        """The static bias laid out like :meth:`full_up_weight` (zeros without one)."""
        if self.up.bias is None:
            return self.up.weight.new_zeros(sum(widths.values()))
        return self._full_layout(self.up.bias, widths)

    def padded_down_weight(self, rank: int) -> torch.Tensor:
        weight = self.down.weight
        return F.pad(weight, (0, 0, 0, rank - weight.shape[0]))


def split_vectors(vectors: torch.Tensor, targets: list[str], widths: dict[str, int]) -> dict[str, torch.Tensor]:
    out, offset = {}, 0
    for target in targets:
        out[target] = vectors[:, offset : offset + widths[target]]
        offset += widths[target]
    return out


class LayerGenerators(nn.Module):
    """All adapters' generators of one decoder layer; ``widths`` has every target of
    :data:`~parapeft.config.ALL_TARGETS`, in that order."""

    def __init__(self, hidden: int, widths: dict[str, int], head_dim: int = 1):
        super().__init__()
        self.hidden = hidden
        self.head_dim = head_dim
        self.widths = {t: widths[t] for t in ALL_TARGETS}
        self.adapters = nn.ModuleDict()

    def add(self, name: str, config: ParaConfig, device: torch.device) -> None:
        generator = VectorGenerator(self.hidden, self.widths, config, self.head_dim)
        self.adapters[name] = generator.to(device=device, dtype=torch.float32)

    def inputs_read(self, names: list[str]) -> set[str]:
        """The generator inputs (``normed``, ``residual``, ``layer<L>:...``) the adapters of ``names`` here pool."""
        return {self.adapters[n].generator_input for n in names if n in self.adapters}

    def vectors(
        self, inputs: dict[str, torch.Tensor], prompt_mask: torch.Tensor, names: list[str],
        row_slots: torch.Tensor | None,
    ) -> dict[str, torch.Tensor] | None:
        """Offsets ``d`` (the multiplier is 1 + d) for every row, keyed by target; ``None`` when no row is adjusted
        in this layer.

        ``inputs`` maps a generator input (``normed``, ``residual``) to the layer's [batch, time, hidden] tensor;
        it holds those the batch's adapters read. ``names`` are the distinct adapters of the batch;
        ``row_slots[i]`` is row i's index into ``names`` or -1 for the bare backbone (``None`` means every row
        uses ``names[0]``).
        """
        present = [n for n in names if n in self.adapters]
        if not present:
            return None
        if row_slots is None:  # one adapter for the whole batch: its own small matmuls
            generator = self.adapters[names[0]]
            # the generator's own dtype: float32 as created, bf16 after the wrapper was cast (``.to(torch.bfloat16)``)
            x = inputs[generator.generator_input].to(generator.down.weight.dtype)
            return split_vectors(generator(x, prompt_mask), generator.targets, generator.widths)
        generators = [self.adapters[n] if n in self.adapters else None for n in names]
        # Only the targets some adapter of the batch scales: the others keep a multiplier of exactly 1.
        widths = {t: w for t, w in self.widths.items() if any(t in g.widths for g in generators if g is not None)}
        vectors = self._mixed(inputs, prompt_mask, generators, row_slots, widths)
        return split_vectors(vectors, list(widths), widths)

    def _mixed(
        self, inputs: dict[str, torch.Tensor], prompt_mask: torch.Tensor, generators: list[VectorGenerator | None],
        row_slots: torch.Tensor, widths: dict[str, int],
    ) -> torch.Tensor:
        """Rows use different adapters: stack their weights, gather per row, one batched product per stage."""
        active = [g for g in generators if g is not None]
        slot = row_slots.clamp(min=0)
        adjusted = (row_slots >= 0).unsqueeze(-1)
        x = None
        dtype = functools.reduce(torch.promote_types, (g.down.weight.dtype for g in active))
        for kind in sorted({g.generator_input for g in active}):
            rows = self._rows_with(generators, slot, lambda g: g.generator_input == kind).unsqueeze(-1)
            value = inputs[kind].to(dtype)
            x = value if x is None else torch.where(rows, value, x)
        rank = max(g.down.out_features for g in active)
        zero_down = x.new_zeros(rank, self.hidden)
        zero_up = x.new_zeros(sum(widths.values()), rank)
        down = torch.stack([g.padded_down_weight(rank) if g else zero_down for g in generators])
        up = torch.stack([g.full_up_weight(widths, rank) if g else zero_up for g in generators])
        bias = None
        if any(g.up.bias is not None for g in active):
            zero_bias = x.new_zeros(sum(widths.values()))
            bias = torch.stack([g.full_up_bias(widths) if g else zero_bias for g in generators])

        pooled = x.new_zeros(x.shape[0], self.hidden)
        for kind in sorted({g.pooler for g in active}):
            rows = self._rows_with(generators, slot, lambda g: g.pooler == kind)
            scorer = None
            if kind == "attention":
                scorers = torch.stack([g.scorer if g and g.scorer is not None else x.new_zeros(self.hidden) for g in generators])
                scorer = scorers[slot]
            pooled = torch.where(rows, pool(kind, x, prompt_mask, scorer), pooled)
        if self.training:
            rates = torch.tensor([g.dropout.p if g else 0.0 for g in generators], device=x.device)[slot].unsqueeze(-1)
            keep = torch.rand_like(pooled) >= rates
            pooled = pooled * keep / (1.0 - rates)

        hidden = torch.einsum("bd,brd->br", pooled, down[slot])
        activated = torch.zeros_like(hidden)
        for kind in sorted({g.activation for g in active}):
            rows = self._rows_with(generators, slot, lambda g: g.activation == kind)
            activated = torch.where(rows, ACTIVATION_FUNCTIONS[kind](hidden), activated)
        vectors = torch.einsum("br,bor->bo", activated, up[slot])
        if bias is not None:
            vectors = vectors + bias[slot]
        offsets = torch.zeros_like(vectors)
        for kind in sorted({g.scale_form for g in active}):
            rows = self._rows_with(generators, slot, lambda g: g.scale_form == kind)
            offsets = torch.where(rows, SCALE_OFFSETS[kind](vectors), offsets)
        return torch.where(adjusted, offsets, 0.0)

    @staticmethod
    def _rows_with(generators, slot: torch.Tensor, predicate) -> torch.Tensor:
        flags = torch.tensor([bool(g is not None and predicate(g)) for g in generators], device=slot.device)
        return flags[slot].unsqueeze(-1)
