"""LoRA in the engine (Punica / S-LoRA style): adapters stacked per device slot, products gathered per row.

A HF peft LoRA adapter (safetensors only) may target any of q, k, v, o, gate, up and down projections of
the supported architectures. For each target the resident adapters' ``A`` and ``B·scaling`` are stacked
per slot, zero-padded to the largest rank resident; the last slot is all zeros and is what rows without a
LoRA adapter read, so one gathered product per projection serves a batch of mixed rows. Unlike PARA, whose
decoding needs only the vectors in the sequence's row, a LoRA adapter must stay resident while any of its
sequences decodes: it is pinned from admission to the end.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ...adapter_io import AdapterLoadError, check_magnitude
from ..transfer import to_device
from .base import RowAdapters, host_copy

MODULES = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
           "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}
_KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(q|k|v|o|gate|up|down)_proj\.lora_([AB])\.weight$")
# peft config keys that change what the weights mean and that the engine does not implement
_REFUSED = {"use_dora": False, "fan_in_fan_out": False, "bias": "none", "rank_pattern": {}, "alpha_pattern": {},
            "modules_to_save": None, "use_qalora": False, "lora_bias": False}


@dataclass
class _HostLora:
    rank: int
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]]  # target -> (A [layers, r, in], B·scaling [layers, out, r])
    parameters: int
    base_model: str


def read_lora(directory: str | Path, shapes: dict[str, tuple[int, int]], layers: int) -> _HostLora:
    """A peft LoRA adapter, checked against the backbone's projection shapes {target: (in, out)}."""
    directory = Path(directory)
    try:
        config = json.loads((directory / "adapter_config.json").read_text())
    except (OSError, ValueError) as err:
        raise AdapterLoadError(f"cannot read the LoRA config in {directory}: {err}") from err
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise AdapterLoadError(f"{directory} is not a LoRA adapter (peft_type {config.get('peft_type')!r})")
    for key, plain in _REFUSED.items():
        value = config.get(key)
        if value is not None and value != plain and not (plain in (None, {}) and not value):
            raise AdapterLoadError(f"{directory}: the engine serves plain LoRA; {key}={value!r} is not supported")
    rank, alpha = config.get("r", 8), config.get("lora_alpha", config.get("r", 8))
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise AdapterLoadError(f"{directory}: r must be a positive integer, got {rank!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise AdapterLoadError(f"{directory}: lora_alpha must be a finite number, got {alpha!r}")
    scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    try:
        tensors = load_file(str(directory / "adapter_model.safetensors"))
    except (OSError, SafetensorError) as err:
        raise AdapterLoadError(f"{directory}/adapter_model.safetensors is not a readable safetensors file: {err}") from err
    parts: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = _KEY.search(key)
        if not match:
            raise AdapterLoadError(f"{directory}: the engine serves LoRA on {', '.join(MODULES.values())}; found {key}")
        layer, target, part = int(match.group(1)), match.group(2), match.group(3)
        if layer >= layers:
            raise AdapterLoadError(f"{directory}: layer {layer} does not exist in a {layers}-layer backbone")
        if not tensor.is_floating_point():
            raise AdapterLoadError(f"{directory}: tensor {key} has dtype {tensor.dtype}, expected a float type")
        check_magnitude(key, tensor, str(directory))
        parts.setdefault((layer, target), {})[part] = tensor.float()
    if not parts:
        raise AdapterLoadError(f"{directory}: no LoRA weights found")
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for (layer, target), pair in sorted(parts.items()):
        if set(pair) != {"A", "B"}:
            raise AdapterLoadError(f"{directory}: layer {layer} {target}_proj needs both lora_A and lora_B")
        width_in, width_out = shapes[target]
        a, b = pair["A"], pair["B"]
        if a.shape != (rank, width_in) or b.shape != (width_out, rank):
            raise AdapterLoadError(f"{directory}: layer {layer} {target}_proj has A {tuple(a.shape)} and B "
                                   f"{tuple(b.shape)}; rank {rank} on this backbone needs ({rank}, {width_in}) "
                                   f"and ({width_out}, {rank})")
        if target not in weights:
            weights[target] = (torch.zeros(layers, rank, width_in), torch.zeros(layers, width_out, rank))
        weights[target][0][layer] = a
        weights[target][1][layer] = b * scaling
    count = sum(t.numel() for t in tensors.values())
    return _HostLora(rank, weights, count, str(config.get("base_model_name_or_path") or ""))


@dataclass
class _PrefillState:
    segments: list[tuple[int, int, int]]  # (first token, end token, slot) of each LoRA prompt
    tiles: torch.Tensor | None = None  # the Triton kernels' tiles of the same tokens


class LoraAdapters(RowAdapters):
    kind = "lora"
    resident_while_decoding = True

    def __init__(self, shapes: dict[str, tuple[int, int]], layers: int, max_rank: int, capacity: int, rows: int,
                 dtype: torch.dtype, device: torch.device):
        super().__init__(capacity)
        self.shapes, self.layers, self.max_rank = shapes, layers, max_rank
        self.dtype, self.device = dtype, device
        self.rank = 0
        self.a: dict[str, torch.Tensor] = {}  # target -> [layers, capacity + 1, rank, in]
        self.b: dict[str, torch.Tensor] = {}  # target -> [layers, capacity + 1, out, rank]
        self.none_slot = capacity
        self.row_slot = torch.full((rows + 1,), capacity, dtype=torch.int64, device=device)
        self.version = 0  # bumped when the tables are reallocated (captured CUDA graphs hold their addresses)
        self.fused = False  # the products run through the Triton kernels (set by the engine with its ops)

    def register(self, name: str, directory) -> None:
        if not self.max_rank:
            raise AdapterLoadError("this engine serves no LoRA adapters (lora_rank=0)")
        entry = read_lora(directory, self.shapes, self.layers)
        if entry.rank > self.max_rank:
            raise AdapterLoadError(f"LoRA adapter {name!r} has rank {entry.rank}, above the engine's maximum "
                                   f"{self.max_rank}")
        entry.weights = {t: (host_copy(a.to(self.dtype), self.device), host_copy(b.to(self.dtype), self.device))
                         for t, (a, b) in entry.weights.items()}
        self._add(name, entry)

    def info(self, name: str) -> dict:
        entry = self.host[name]
        return {"name": name, "kind": self.kind, "parameters": entry.parameters, "base_model": entry.base_model}

    # ------------------------------------------------------------ residency
    def _tables(self, rank: int, targets) -> None:
        missing = [t for t in targets if t not in self.a]
        if rank <= self.rank and not missing:
            return
        rank = max(rank, self.rank)
        for target in set(self.a) | set(targets):
            width_in, width_out = self.shapes[target]
            a = torch.zeros(self.layers, self.capacity + 1, rank, width_in, dtype=self.dtype, device=self.device)
            b = torch.zeros(self.layers, self.capacity + 1, width_out, rank, dtype=self.dtype, device=self.device)
            if target in self.a:
                a[:, :, :self.rank] = self.a[target]
                b[..., :self.rank] = self.b[target]
            self.a[target], self.b[target] = a, b
        self.rank = rank
        self.version += 1

    def _load(self, name: str, slot: int) -> None:
        entry = self.host[name]
        self._tables(entry.rank, entry.weights)
        for target in self.a:
            self.a[target][:, slot].zero_()
            self.b[target][:, slot].zero_()
            if target in entry.weights:
                a, b = entry.weights[target]
                self.a[target][:, slot, :entry.rank] = a.to(self.device, non_blocking=True)
                self.b[target][:, slot, :, :entry.rank] = b.to(self.device, non_blocking=True)

    # ------------------------------------------------------------ rows
    def assign_rows(self, rows: list[int], names: list[str | None]) -> None:
        super().assign_rows(rows, names)  # counted: resident while they decode
        slots = [self.none_slot if name is None else self.resident[name] for name in names]
        rows_slots = to_device([rows, slots], self.device)  # one copy from pinned memory: no wait for the GPU
        self.row_slot.index_copy_(0, rows_slots[0], rows_slots[1])

    # ------------------------------------------------------------ executor hooks
    def prepare_prefill(self, batch, names: list[str | None]) -> None:
        batch.extras.pop(self.kind, None)
        chosen = [i for i, name in enumerate(names) if name is not None]
        if not chosen:
            return
        slots = self.acquire([names[i] for i in chosen])
        segments = [(batch.starts_host[i], batch.starts_host[i] + batch.lengths_host[i], slot)
                    for i, slot in zip(chosen, slots)]
        batch.extras[self.kind] = self._prefill_state(batch, segments)

    def _prefill_state(self, batch, segments: list[tuple[int, int, int]]) -> _PrefillState:
        tiles = None
        if self.fused:
            from ..kernels.lora_sgmv import BLOCK_T, lora_tiles

            tiles = lora_tiles(segments)
            if batch.bucket is not None:  # a graphed pass: as many tiles as the bucket can need, the rest empty
                tiles += [(0, 0, self.none_slot)] * (batch.bucket.tokens // BLOCK_T + batch.bucket.prompts - len(tiles))
            tiles = to_device(tiles, self.device, torch.int32).view(-1, 3)
        return _PrefillState(segments, tiles)

    def reserve_tables(self) -> bool:
        if self.host:
            self._tables(max(e.rank for e in self.host.values()), {t for e in self.host.values() for t in e.weights})
        return self.fused and bool(self.a)

    def prepare_template(self, batch) -> None:
        batch.extras[self.kind] = self._prefill_state(batch, [])

    def graph_inputs(self, batch) -> list[torch.Tensor] | None:
        state: _PrefillState | None = batch.extras.get(self.kind)
        if state is None:
            return []
        return None if state.tiles is None else [state.tiles]

    def graphable(self, names: list[str | None]) -> bool:
        return self.fused or all(name is None for name in names)

    def graph_key(self, batch) -> tuple:
        # new tables (a larger rank, another target) move, and only a pass with LoRA prompts reads them
        return (True, self.version) if self.kind in batch.extras else (False,)

    def add_delta(self, layer: int, target: str, x: torch.Tensor, out: torch.Tensor, batch) -> None:
        if target not in self.a:
            return
        a, b = self.a[target][layer], self.b[target][layer]
        if self.fused:
            from ..kernels.lora_sgmv import lora_add

            tiles = self._decode_tiles(batch) if batch.decode else getattr(batch.extras.get(self.kind), "tiles", None)
            if tiles is not None:
                lora_add(x, a, b, tiles, out)
            return
        if batch.decode:
            if not batch.lora:
                return
            slots = self.row_slot.index_select(0, batch.rows)
            low = torch.bmm(a.index_select(0, slots), x.unsqueeze(2))  # [B, rank, 1]
            out += torch.bmm(b.index_select(0, slots), low)[:, :, 0]
            return
        state: _PrefillState | None = batch.extras.get(self.kind)
        for start, end, slot in state.segments if state else ():
            out[start:end] += (x[start:end] @ a[slot].T) @ b[slot].T

    def _decode_tiles(self, batch) -> torch.Tensor | None:
        """One tile per decoding row (its adapter's slot, or the zero slot), made once per step on the device."""
        if not batch.lora:
            return None
        if self.kind not in batch.extras:
            rows = batch.rows
            batch.extras[self.kind] = torch.stack([torch.arange(rows.shape[0], device=rows.device),
                                                   torch.ones_like(rows), self.row_slot.index_select(0, rows)],
                                                  dim=1).to(torch.int32)
        return batch.extras[self.kind]
