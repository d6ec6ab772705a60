"""PARA's vector generators: prompt → per-layer scaling vectors for Q, V and Up.

One ``VectorGenerator`` is one adapter's generator in one decoder layer.
``LayerGenerators`` holds every adapter's generator for a layer and computes
the vectors of a batch whose rows may each use a different adapter, in one
batched pass: the generators' weights are stacked and gathered per row, so the
cost does not grow with a loop over adapters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import TARGETS, ParaConfig
from .pooling import pool

ACTIVATION_FUNCTIONS = {"silu": F.silu, "gelu": F.gelu, "relu": F.relu}


class VectorGenerator(nn.Module):
    """``l = W_up · act(W_down · dropout(pool(x)))`` for one adapter in one layer.

    ``W_up`` starts at zero, so a fresh adapter scales everything by exactly 1.
    Its output is the concatenation of the vectors of ``config.targets`` in
    q, v, up order.
    """

    def __init__(self, hidden: int, widths: dict[str, int], config: ParaConfig):
        super().__init__()
        self.pooler = config.pooler
        self.activation = config.activation
        self.targets = list(config.targets)
        self.widths = {t: widths[t] for t in self.targets}
        self.down = nn.Linear(hidden, config.r, bias=False)
        self.up = nn.Linear(config.r, sum(self.widths.values()), bias=False)
        nn.init.zeros_(self.up.weight)
        self.scorer = nn.Parameter(torch.zeros(hidden)) if config.pooler == "attention" else None
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        pooled = pool(self.pooler, x, prompt_mask, self.scorer)
        hidden = ACTIVATION_FUNCTIONS[self.activation](self.down(self.dropout(pooled)))
        return self.up(hidden)

    def full_up_weight(self, widths: dict[str, int], rank: int) -> torch.Tensor:
        """``W_up`` laid out for all three targets and padded to ``rank`` columns (zeros elsewhere).

        Zero padding is exact: padded bottleneck units read zero rows of
        ``W_down``, and act(0) = 0 for every supported activation.
        """
        blocks, offset = [], 0
        weight = self.up.weight
        for target in TARGETS:
            if target in self.widths:
                blocks.append(weight[offset : offset + widths[target]])
                offset += widths[target]
            else:
                blocks.append(weight.new_zeros(widths[target], weight.shape[1]))
        full = torch.cat(blocks, dim=0)
        return F.pad(full, (0, rank - weight.shape[1]))

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
    """All adapters' generators of one decoder layer."""

    def __init__(self, hidden: int, widths: dict[str, int]):
        super().__init__()
        self.hidden = hidden
        self.widths = dict(widths)
        self.adapters = nn.ModuleDict()

    def add(self, name: str, config: ParaConfig, device: torch.device) -> None:
        self.adapters[name] = VectorGenerator(self.hidden, self.widths, config).to(device=device, dtype=torch.float32)

    def vectors(
        self, x: torch.Tensor, prompt_mask: torch.Tensor, names: list[str], row_slots: torch.Tensor | None
    ) -> dict[str, torch.Tensor] | None:
        """Vectors for every row, keyed by target; ``None`` when no row is adjusted in this layer.

        ``names`` are the distinct adapters of the batch; ``row_slots[i]`` is
        row i's index into ``names`` or -1 for the bare backbone (``None``
        means every row uses ``names[0]``).
        """
        present = [n for n in names if n in self.adapters]
        if not present:
            return None
        x = x.float()
        if row_slots is None:  # one adapter for the whole batch: its own small matmuls
            generator = self.adapters[names[0]]
            return split_vectors(generator(x, prompt_mask), generator.targets, generator.widths)
        generators = [self.adapters[n] if n in self.adapters else None for n in names]
        return split_vectors(self._mixed(x, prompt_mask, generators, row_slots), list(TARGETS), self.widths)

    def _mixed(
        self, x: torch.Tensor, prompt_mask: torch.Tensor, generators: list[VectorGenerator | None], row_slots: torch.Tensor
    ) -> torch.Tensor:
        """Rows use different adapters: stack their weights, gather per row, one batched product per stage."""
        active = [g for g in generators if g is not None]
        rank = max(g.down.out_features for g in active)
        zero_down = x.new_zeros(rank, self.hidden)
        zero_up = x.new_zeros(sum(self.widths.values()), rank)
        down = torch.stack([g.padded_down_weight(rank) if g else zero_down for g in generators])
        up = torch.stack([g.full_up_weight(self.widths, rank) if g else zero_up for g in generators])
        slot = row_slots.clamp(min=0)
        adjusted = (row_slots >= 0).unsqueeze(-1)

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
        return torch.where(adjusted, vectors, 0.0)

    @staticmethod
    def _rows_with(generators, slot: torch.Tensor, predicate) -> torch.Tensor:
        flags = torch.tensor([bool(g is not None and predicate(g)) for g in generators], device=slot.device)
        return flags[slot].unsqueeze(-1)
