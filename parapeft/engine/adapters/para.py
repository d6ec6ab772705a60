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

from ...adapter_io import AdapterLoadError, check_compatible, check_magnitude, load_weights
from ...config import TARGETS, ParaConfig
from ...generator import ACTIVATION_FUNCTIONS
from ...model import adapter_shapes, read_adapter_config
from ..transfer import to_device
from .base import RowAdapters, host_copy

# The Triton generator kernels' codes (kernels/para_generator.py); attention pooling runs in PyTorch.
POOLER_CODES = {"mean": 0, "last": 1, "max": 2}
ACTIVATION_CODES = {"silu": 0, "gelu": 1, "relu": 2}


@dataclass
class _HostAdapter:
    config: ParaConfig
    tensors: dict[str, torch.Tensor]  # as saved (for info and re-export)
    down: torch.Tensor  # [layers, r, hidden] float32, zero for layers the adapter leaves alone
    up: torch.Tensor  # [layers, q + v + up widths, r] float32, zero rows for targets it leaves alone
    scorer: torch.Tensor | None  # [layers, hidden] (attention pooling)


@dataclass
class _PrefillState:
    """Every prompt of the pass runs the generator (a prompt without a PARA adapter reads the all-zero slot,
    so its multipliers come out exactly 1): no per-layer selection of tokens or prompts."""

    rows: torch.Tensor  # [P] the prompts' sequence rows
    slots: torch.Tensor  # [P] their adapters' device slots (``capacity``: none)
    # The Triton generator kernels' per-prompt inputs, when they serve this pass (no attention pooling);
    # otherwise what the PyTorch generators read:
    kernel: dict[str, torch.Tensor] | None = None
    segment: torch.Tensor | None = None  # [T] which prompt each packed token belongs to
    pooled: torch.Tensor | None = None  # [T, 1] whether a token is pooled (None: all are; not after a preemption)
    counts: torch.Tensor | None = None  # [P, 1] how many positions each prompt pools over
    last: torch.Tensor | None = None  # [P] the packed index of each prompt's last pooled position
    poolers: dict[str, torch.Tensor | None] | None = None  # pooler -> [P, 1] prompts using it (None: every prompt)
    activations: dict[str, torch.Tensor | None] | None = None


def check_servable(config: ParaConfig, source: str) -> None:
    """Refuse, naming the settings, an adapter of a PARA-family variant the engine's kernels do not apply (the
    engine serves the paper's form: q, v and up scaled by 1 + l from the normalised input; the variants are
    trained and evaluated with ``ParaModel``)."""
    variant = config.variant()
    if set(config.targets) <= set(TARGETS):
        variant.pop("targets", None)  # a subset of q, v, up: the kernels scale the others by 1
    if variant:
        listed = ", ".join(f"{key}={value!r}" for key, value in variant.items())
        raise AdapterLoadError(f"adapter {source} is a PARA variant the engine does not serve ({listed}); the engine "
                               "serves the paper's form (targets q, v, up; no static bias; linear scale; normed input; per-channel "
                               "vectors; each layer pools its own input)")


class ParaAdapters(RowAdapters):
    kind = "para"

    def __init__(self, model_type: str, dims: dict[str, int], capacity: int, rows: int, dtype: torch.dtype,
                 device: torch.device):
        super().__init__(capacity)
        self.model_type, self.dims, self.dtype, self.device = model_type, dims, dtype, device
        self.widths = {t: dims[t] for t in TARGETS}
        layers = dims["num_layers"]
        # Per-row multipliers 1 + l of every layer, q, v and up side by side, read by row in prefill and
        # decoding (the kernels take each target's slice); row `rows` is scratch.
        self.multipliers = torch.ones(layers, rows + 1, sum(self.widths.values()), dtype=dtype, device=device)
        self.scale_buffers, offset = {}, 0
        for target, width in self.widths.items():
            self.scale_buffers[target] = self.multipliers[:, :, offset:offset + width]
            offset += width
        self.rank = 0  # the stacked tables' bottleneck width (the largest rank resident so far)
        self.down = self.up = self.scorer = None
        self.none_slot = capacity  # all zeros: prompts without a PARA adapter in a pass that has some
        self.fused = False  # the generators run through the Triton kernels (set by the engine with its ops)
        self.slot_pooler: list[str | None] = [None] * capacity
        self.slot_activation: list[str | None] = [None] * capacity

    # ------------------------------------------------------------ registry
    def read(self, directory) -> tuple[ParaConfig, dict[str, torch.Tensor]]:
        """A saved adapter's config and weights, checked against the backbone (safetensors only)."""
        config = read_adapter_config(directory)
        check_servable(config, str(directory))
        check_compatible(config, self.model_type, self.dims, str(directory))
        return config, load_weights(directory, adapter_shapes(config, self.dims))

    def register(self, name: str, directory) -> None:
        self.add(name, *self.read(directory))

    def add(self, name: str, config: ParaConfig, tensors: dict[str, torch.Tensor]) -> None:
        """Register an adapter from tensors in memory (as ``ParaModel.adapter_state_dict`` gives them)."""
        check_servable(config, repr(name))
        check_compatible(config, self.model_type, self.dims, repr(name))
        expected = adapter_shapes(config, self.dims)
        if {k: tuple(v.shape) for k, v in tensors.items()} != expected:
            raise AdapterLoadError(f"weights of adapter {name!r} do not match its config")
        for key, tensor in tensors.items():  # from memory too: the same bounds as from a file
            check_magnitude(key, tensor, repr(name))
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
        return _HostAdapter(config, {k: v.detach().cpu() for k, v in tensors.items()}, host_copy(down, self.device),
                            host_copy(up, self.device), None if scorer is None else host_copy(scorer, self.device))

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
        down = torch.zeros(layers, self.capacity + 1, rank, hidden, **f32)
        up = torch.zeros(layers, self.capacity + 1, total, rank, **f32)
        if self.down is not None:
            down[:, :, :self.rank] = self.down
            up[..., :self.rank] = self.up
        else:
            self.scorer = torch.zeros(layers, self.capacity + 1, hidden, **f32)
        self.down, self.up, self.rank = down, up, rank

    def reserve_tables(self) -> bool:
        if self.host:
            self._tables(max(entry.config.r for entry in self.host.values()))
        return self.rank > 0

    def _load(self, name: str, slot: int) -> None:
        entry = self.host[name]
        self._tables(entry.config.r)
        r = entry.config.r
        self.down[:, slot].zero_()
        self.down[:, slot, :r] = entry.down.to(self.device, non_blocking=True)
        self.up[:, slot].zero_()
        self.up[:, slot, :, :r] = entry.up.to(self.device, non_blocking=True)
        self.scorer[:, slot] = 0 if entry.scorer is None else entry.scorer.to(self.device, non_blocking=True)
        self.slot_pooler[slot], self.slot_activation[slot] = entry.config.pooler, entry.config.activation

    # ------------------------------------------------------------ rows
    def assign_rows(self, rows: list[int], names: list[str | None]) -> None:
        """Rows without a PARA adapter get ones for every layer; PARA rows are written by their prefill."""
        super().assign_rows(rows, names)
        plain = [row for row, name in zip(rows, names) if name is None]
        if plain:
            self.multipliers.index_fill_(1, to_device(plain, self.device), 1.0)

    # ------------------------------------------------------------ prefill
    def prepare_prefill(self, batch, names: list[str | None]) -> None:
        batch.extras.pop(self.kind, None)
        chosen = [name for name in names if name is not None]
        if not chosen:
            return
        resident = dict(zip(chosen, self.acquire(chosen)))
        batch.extras[self.kind] = self._prefill_state(
            batch, [resident[name] if name is not None else self.none_slot for name in names])

    def prepare_template(self, batch) -> None:
        batch.extras[self.kind] = self._prefill_state(batch, [self.none_slot] * len(batch.rows_host))

    def _prefill_state(self, batch, slots: list[int]) -> _PrefillState:
        device = self.device

        def groups(per_slot: list[str | None], default: str) -> dict[str, torch.Tensor | None]:
            values = [per_slot[slot] if slot != self.none_slot else None for slot in slots]
            kinds = sorted({v for v in values if v is not None}) or [default]
            values = [v if v is not None else kinds[0] for v in values]  # the zero slot gives 0 under any kind
            if len(kinds) == 1:
                return {kinds[0]: None}
            return {k: torch.tensor([v == k for v in values], device=device).unsqueeze(1) for k in kinds}

        pools, lengths, segment = batch.pool_lens_host, batch.lengths_host, batch.segment
        poolers = [POOLER_CODES.get(self.slot_pooler[s], 0) if s != self.none_slot else 0 for s in slots]
        activations = [ACTIVATION_CODES[self.slot_activation[s]] if s != self.none_slot else 0 for s in slots]
        last = [start + pool - 1 for start, pool in zip(batch.starts_host, pools)]
        # One copy from pinned memory for every per-prompt value (a copy from pageable memory waits for the GPU)
        slot_tensor, pool_tensor, pooler_codes, activation_codes, last_tensor = to_device(
            [slots, pools, poolers, activations, last], device).unbind(0)
        kinds = {self.slot_pooler[s] for s in slots if s != self.none_slot}
        if self.fused and kinds <= set(POOLER_CODES):
            return _PrefillState(rows=batch.rows, slots=slot_tensor, kernel={
                "starts": batch.starts, "pooled": pool_tensor, "poolers": pooler_codes,
                "activations": activation_codes, "slots": slot_tensor})
        pooled = None
        if pools != lengths:  # re-run tokens after a preemption (or a bucket's padding): pool own positions only
            pooled = (batch.positions < pool_tensor.index_select(0, segment)).unsqueeze(1)
        return _PrefillState(
            rows=batch.rows, slots=slot_tensor, segment=segment, pooled=pooled,
            counts=pool_tensor.float().unsqueeze(1), last=last_tensor,
            poolers=groups(self.slot_pooler, "mean"), activations=groups(self.slot_activation, "silu"))

    def graph_inputs(self, batch) -> list[torch.Tensor] | None:
        state: _PrefillState | None = batch.extras.get(self.kind)
        if state is None:
            return []
        if state.kernel is None:  # attention pooling runs the PyTorch code, whose shapes vary
            return None
        return [state.rows, state.slots, *state.kernel.values()]

    def graphable(self, names: list[str | None]) -> bool:
        chosen = [name for name in names if name is not None]
        return not chosen or self.fused and all(self.host[name].config.pooler in POOLER_CODES for name in chosen)

    def graph_key(self, batch) -> tuple:
        # a larger rank replaces the stacked tables, which only a pass with PARA prompts reads
        return (True, self.rank) if self.kind in batch.extras else (False,)

    def after_norm(self, layer: int, x: torch.Tensor, batch) -> None:
        state: _PrefillState | None = batch.extras.get(self.kind)
        if state is None:
            return
        if state.kernel is not None:
            from ..kernels.para_generator import generate_multipliers

            k = state.kernel
            # prompts on the all-zero slot are skipped: assign_rows gave their rows ones, the scratch row has them
            generate_multipliers(x, k["starts"], k["pooled"], k["poolers"], k["activations"], k["slots"], state.rows,
                                 self.down[layer], self.up[layer], self.multipliers[layer], skip_slot=self.none_slot)
            return
        points = x.float()  # [T, hidden]: the generators run in float32, as in ParaModel
        pooled = None
        for kind, prompts in state.poolers.items():
            value = self._pool(kind, layer, x, points, state)
            pooled = value if prompts is None else torch.where(prompts, value, value if pooled is None else pooled)
        hidden = torch.bmm(self.down[layer].index_select(0, state.slots), pooled.unsqueeze(2))
        activated = None
        for kind, prompts in state.activations.items():
            value = ACTIVATION_FUNCTIONS[kind](hidden)
            activated = value if prompts is None else torch.where(prompts.unsqueeze(2), value,
                                                                   value if activated is None else activated)
        vectors = torch.bmm(self.up[layer].index_select(0, state.slots), activated)[:, :, 0]
        self.multipliers[layer].index_copy_(0, state.rows, (1.0 + vectors).to(self.dtype))

    def _pool(self, kind: str, layer: int, x: torch.Tensor, points: torch.Tensor, state: _PrefillState) -> torch.Tensor:
        """``pooling.pool`` of every prompt over its own pooled positions, for the packed layout."""
        prompts, width = state.counts.shape[0], points.shape[1]
        segment, pooled = state.segment, state.pooled
        if kind == "mean":
            summed = points if pooled is None else torch.where(pooled, points, 0.0)
            return points.new_zeros(prompts, width).index_add_(0, segment, summed) / state.counts
        if kind == "last":
            return x.index_select(0, state.last).float()
        if kind == "max":
            values = points if pooled is None else torch.where(pooled, points, float("-inf"))
            index = segment.unsqueeze(1).expand_as(values)
            return points.new_full((prompts, width), float("-inf")).scatter_reduce_(0, index, values, "amax")
        if kind == "attention":
            scorer = self.scorer[layer].index_select(0, state.slots)  # [P, hidden]
            values = points if pooled is None else torch.where(pooled, points, 0.0)
            scores = (values * scorer.index_select(0, segment)).sum(dim=1)
            if pooled is not None:
                scores = scores.masked_fill(~pooled[:, 0], float("-inf"))
            top = scores.new_full((prompts,), float("-inf")).scatter_reduce_(0, segment, scores, "amax")
            weights = torch.exp(scores - top.index_select(0, segment))
            weights = weights / weights.new_zeros(prompts).index_add_(0, segment, weights).index_select(0, segment)
            return points.new_zeros(prompts, width).index_add_(0, segment, weights.unsqueeze(1) * values)
        raise ValueError(f"unknown pooler {kind!r}")

    # ------------------------------------------------------------ both passes
    def scales(self, layer: int, batch) -> dict[str, torch.Tensor] | None:
        if not batch.para:
            return None
        return {t: buffer[layer] for t, buffer in self.scale_buffers.items()}  # [rows, width] slices, by row

