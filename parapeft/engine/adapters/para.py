"""PARA in the engine: generators stacked per device slot, vectors computed inside the packed prefill.

At prefill, after each layer's input norm, every PARA prompt of the pass is pooled over its own prompt
positions (segment pooling: mean, last, max or attention, batched across prompts), its generator is applied
(``W_down`` and ``W_up`` gathered by the prompt's adapter slot), and ``1 + l`` is written into the layer's
per-row scale buffers. The projections of that layer, and every later decoding step of that sequence, read
the scales by row. Rows without a PARA adapter hold ones. The arithmetic follows ``ParaModel`` (generators in
float32 on the layer input, scales cast to the model's dtype), which the equivalence tests check.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...adapter_io import AdapterLoadError, check_compatible, load_weights
from ...config import TARGETS, ParaConfig
from ...generator import ACTIVATION_FUNCTIONS
from ...model import adapter_shapes, read_adapter_config
from .base import RowAdapters


@dataclass
class _HostAdapter:
    config: ParaConfig
    tensors: dict[str, torch.Tensor]  # as saved (for info and re-export)
    down: torch.Tensor  # [layers, r, hidden] float32, zero for layers the adapter leaves alone
    up: torch.Tensor  # [layers, q + v + up widths, r] float32, zero rows for targets it leaves alone
    scorer: torch.Tensor | None  # [layers, hidden] (attention pooling)


@dataclass
class _PrefillState:
    rows: torch.Tensor  # [P'] the PARA prompts' sequence rows
    slots: torch.Tensor  # [P'] their adapters' device slots
    pool_tokens: torch.Tensor  # [N] packed indices of the positions each PARA prompt pools over
    pool_segment: torch.Tensor  # [N] which PARA prompt each of them belongs to
    counts: torch.Tensor  # [P', 1] how many positions each prompt pools over
    last: torch.Tensor  # [P'] the packed index of each prompt's last pooled position
    poolers: dict[str, torch.Tensor | None]  # pooler -> [P', 1] rows using it (None: every row)
    activations: dict[str, torch.Tensor | None]


class ParaAdapters(RowAdapters):
    kind = "para"

    def __init__(self, model_type: str, dims: dict[str, int], capacity: int, rows: int, dtype: torch.dtype,
                 device: torch.device):
        super().__init__(capacity)
        self.model_type, self.dims, self.dtype, self.device = model_type, dims, dtype, device
        self.widths = {t: dims[t] for t in TARGETS}
        layers = dims["num_layers"]
        # Per-row multipliers 1 + l of every layer, read by row in prefill and decoding; row `rows` is scratch.
        self.scale_buffers = {t: torch.ones(layers, rows + 1, w, dtype=dtype, device=device)
                              for t, w in self.widths.items()}
        self.rank = 0  # the stacked tables' bottleneck width (the largest rank resident so far)
        self.down = self.up = self.scorer = None
        self.slot_pooler: list[str | None] = [None] * capacity
        self.slot_activation: list[str | None] = [None] * capacity

    # ------------------------------------------------------------ registry
    def read(self, directory) -> tuple[ParaConfig, dict[str, torch.Tensor]]:
        """A saved adapter's config and weights, checked against the backbone (safetensors only)."""
        config = read_adapter_config(directory)
        check_compatible(config, self.model_type, self.dims, str(directory))
        return config, load_weights(directory, adapter_shapes(config, self.dims))

    def register(self, name: str, directory) -> None:
        self.add(name, *self.read(directory))

    def add(self, name: str, config: ParaConfig, tensors: dict[str, torch.Tensor]) -> None:
        """Register an adapter from tensors in memory (as ``ParaModel.adapter_state_dict`` gives them)."""
        check_compatible(config, self.model_type, self.dims, repr(name))
        expected = adapter_shapes(config, self.dims)
        if {k: tuple(v.shape) for k, v in tensors.items()} != expected:
            raise AdapterLoadError(f"weights of adapter {name!r} do not match its config")
        self._add(name, self._host_layout(config, tensors))

    def _host_layout(self, config: ParaConfig, tensors: dict[str, torch.Tensor]) -> _HostAdapter:
        layers, hidden = self.dims["num_layers"], self.dims["hidden"]
        total = sum(self.widths.values())
        down = torch.zeros(layers, config.r, hidden)
        up = torch.zeros(layers, total, config.r)
        scorer = torch.zeros(layers, hidden) if config.pooler == "attention" else None
        for index in config.layers_to_transform or range(layers):
            down[index] = tensors[f"layers.{index}.down.weight"].float()
            weight, source, target_offset = tensors[f"layers.{index}.up.weight"].float(), 0, 0
            for target in TARGETS:  # the saved rows cover config.targets, in TARGETS order
                width = self.widths[target]
                if target in config.targets:
                    up[index, target_offset:target_offset + width] = weight[source:source + width]
                    source += width
                target_offset += width
            if scorer is not None:
                scorer[index] = tensors[f"layers.{index}.scorer"].float()
        return _HostAdapter(config, {k: v.detach().cpu() for k, v in tensors.items()}, down, up, scorer)

    def info(self, name: str) -> dict:
        entry = self.host[name]
        return {"name": name, "kind": self.kind, "parameters": sum(t.numel() for t in entry.tensors.values()),
                "base_model": entry.config.base_model_name_or_path or ""}

    # ------------------------------------------------------------ residency
    def _tables(self, rank: int) -> None:
        """Stacked generator weights for ``capacity`` slots, widened (zero-padded, which is exact: padded
        bottleneck units read zero rows and act(0) = 0) when an adapter of a larger rank arrives."""
        if rank <= self.rank:
            return
        layers, hidden = self.dims["num_layers"], self.dims["hidden"]
        total = sum(self.widths.values())
        f32 = dict(dtype=torch.float32, device=self.device)
        down = torch.zeros(layers, self.capacity, rank, hidden, **f32)
        up = torch.zeros(layers, self.capacity, total, rank, **f32)
        if self.down is not None:
            down[:, :, :self.rank] = self.down
            up[..., :self.rank] = self.up
        else:
            self.scorer = torch.zeros(layers, self.capacity, hidden, **f32)
        self.down, self.up, self.rank = down, up, rank

    def _load(self, name: str, slot: int) -> None:
        entry = self.host[name]
        self._tables(entry.config.r)
        r = entry.config.r
        self.down[:, slot].zero_()
        self.down[:, slot, :r] = entry.down.to(self.device)
        self.up[:, slot].zero_()
        self.up[:, slot, :, :r] = entry.up.to(self.device)
        self.scorer[:, slot] = 0 if entry.scorer is None else entry.scorer.to(self.device)
        self.slot_pooler[slot], self.slot_activation[slot] = entry.config.pooler, entry.config.activation

    # ------------------------------------------------------------ rows
    def assign_rows(self, rows: list[int], names: list[str | None]) -> None:
        """Rows without a PARA adapter get ones for every layer; PARA rows are written by their prefill."""
        super().assign_rows(rows, names)
        plain = [row for row, name in zip(rows, names) if name is None]
        if plain:
            index = torch.tensor(plain, device=self.device)
            for buffer in self.scale_buffers.values():
                buffer[:, index] = 1.0

    # ------------------------------------------------------------ prefill
    def prepare_prefill(self, batch, names: list[str | None]) -> None:
        chosen = [i for i, name in enumerate(names) if name is not None]
        batch.extras.pop(self.kind, None)
        if not chosen:
            return
        slots = self.acquire([names[i] for i in chosen])
        pooled_positions, segments, last = [], [], []
        for segment, prompt in enumerate(chosen):
            start, pool = batch.starts_host[prompt], batch.pool_lens_host[prompt]
            pooled_positions.append(torch.arange(start, start + pool))
            segments.append(torch.full((pool,), segment))
            last.append(start + pool - 1)
        device = self.device

        def groups(values: list[str]) -> dict[str, torch.Tensor | None]:
            kinds = sorted(set(values))
            if len(kinds) == 1:
                return {kinds[0]: None}
            return {k: torch.tensor([v == k for v in values], device=device).unsqueeze(1) for k in kinds}

        counts = [batch.pool_lens_host[i] for i in chosen]
        batch.extras[self.kind] = _PrefillState(
            rows=torch.tensor([batch.rows_host[i] for i in chosen], device=device),
            slots=torch.tensor(slots, device=device),
            pool_tokens=torch.cat(pooled_positions).to(device), pool_segment=torch.cat(segments).to(device),
            counts=torch.tensor(counts, dtype=torch.float32, device=device).unsqueeze(1),
            last=torch.tensor(last, device=device),
            poolers=groups([self.slot_pooler[s] for s in slots]),
            activations=groups([self.slot_activation[s] for s in slots]))

    def after_norm(self, layer: int, x: torch.Tensor, batch) -> None:
        state: _PrefillState | None = batch.extras.get(self.kind)
        if state is None:
            return
        prompts = state.rows.shape[0]
        points = x.index_select(0, state.pool_tokens).float()  # [N, hidden]
        pooled = None
        for kind, rows in state.poolers.items():
            value = self._pool(kind, layer, x, points, state, prompts)
            pooled = value if rows is None else torch.where(rows, value, pooled if pooled is not None else value)
        hidden = torch.bmm(self.down[layer].index_select(0, state.slots), pooled.unsqueeze(2))[:, :, 0]
        activated = None
        for kind, rows in state.activations.items():
            value = ACTIVATION_FUNCTIONS[kind](hidden)
            activated = value if rows is None else torch.where(rows, value, activated if activated is not None else value)
        vectors = torch.bmm(self.up[layer].index_select(0, state.slots), activated.unsqueeze(2))[:, :, 0]
        offset = 0
        for target, width in self.widths.items():
            scale = (1.0 + vectors[:, offset:offset + width]).to(self.dtype)
            self.scale_buffers[target][layer].index_copy_(0, state.rows, scale)
            offset += width

    def _pool(self, kind: str, layer: int, x: torch.Tensor, points: torch.Tensor, state: _PrefillState,
              prompts: int) -> torch.Tensor:
        """``pooling.pool`` of every PARA prompt over its own positions, for the packed layout."""
        segment = state.pool_segment
        if kind == "mean":
            return points.new_zeros(prompts, points.shape[1]).index_add_(0, segment, points) / state.counts
        if kind == "last":
            return x.index_select(0, state.last).float()
        if kind == "max":
            index = segment.unsqueeze(1).expand_as(points)
            return points.new_full((prompts, points.shape[1]), float("-inf")).scatter_reduce_(0, index, points, "amax")
        if kind == "attention":
            scorer = self.scorer[layer].index_select(0, state.slots)  # [P', hidden]
            scores = (points * scorer.index_select(0, segment)).sum(dim=1)
            top = scores.new_full((prompts,), float("-inf")).scatter_reduce_(0, segment, scores, "amax")
            weights = torch.exp(scores - top.index_select(0, segment))
            weights = weights / weights.new_zeros(prompts).index_add_(0, segment, weights).index_select(0, segment)
            return points.new_zeros(prompts, points.shape[1]).index_add_(0, segment, weights.unsqueeze(1) * points)
        raise ValueError(f"unknown pooler {kind!r}")

    # ------------------------------------------------------------ both passes
    def scales(self, layer: int, batch) -> dict[str, torch.Tensor] | None:
        if not batch.para:
            return None
        return {t: buffer[layer] for t, buffer in self.scale_buffers.items()}

