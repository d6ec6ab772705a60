"""The per-row adapter interface the executor calls, and the adapter-name grammar shared with the gateway."""

from __future__ import annotations

import re
from collections import OrderedDict

import torch

from ...model import BASE_ADAPTER
from ..errors import AdapterExists, BadRequest, UnknownAdapter

# A name segment is [a-z0-9][a-z0-9_-]{0,63}; an adapter id is SEGMENT or TENANT/SEGMENT, then an optional
# @VERSION. The gateway's validators and proto/engine.proto state the same grammar.
ADAPTER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}(/[a-z0-9][a-z0-9_-]{0,63})?(@[0-9]{1,9})?")


def host_copy(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor that loads onto ``device`` fast: page-locked when the device is a GPU, so a reload after an
    eviction is an asynchronous copy at full PCIe speed instead of a staged, blocking one."""
    tensor = tensor.detach().cpu().contiguous()
    return tensor.pin_memory() if device.type == "cuda" else tensor


def check_adapter_name(name: str) -> None:
    if name == BASE_ADAPTER or not isinstance(name, str) or not ADAPTER_NAME.fullmatch(name):
        raise BadRequest(f"invalid adapter name {name!r}: names are [a-z0-9][a-z0-9_-]{{0,63}}, optionally "
                         "TENANT/NAME, optionally followed by @VERSION")


class RowAdapters:
    """One kind of adapter. Registered adapters live in CPU memory; up to ``capacity`` are resident on the
    device, stacked per slot, least recently used evicted first. Each sequence row of a batch has at most one
    adapter of one kind. The executor calls the hooks below at fixed points of every layer; a kind does
    nothing at the hooks it does not use."""

    kind = ""
    resident_while_decoding = False  # whether a decoding row reads its adapter's weights (LoRA) or not (PARA)

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.host: dict[str, object] = {}  # name -> what the kind keeps in CPU memory
        self.resident: OrderedDict[str, int] = OrderedDict()  # name -> device slot, least recently used first
        self.users: dict[str, int] = {}  # name -> running rows that use it
        # name -> requests submitted with it and not yet ended, waiting or running: a preempted sequence goes back
        # to the queue without a row and is prefilled again from the adapter, so rows alone do not say who needs it
        self.holders: dict[str, int] = {}
        # Unloaded while requests still hold them: hidden from new requests, kept until the last one ends
        # (a preempted sequence is prefilled again; a LoRA sequence needs its matrices at every step).
        self.retiring: set[str] = set()
        self.loads = self.evictions = 0

    # ------------------------------------------------------------ registry
    def __contains__(self, name: str) -> bool:
        return name in self.host and name not in self.retiring

    def names(self) -> list[str]:
        # over a copy: health and metrics read it from other threads while adapters are loaded and unloaded
        return [name for name in list(self.host) if name not in self.retiring]

    def _add(self, name: str, entry: object) -> None:
        check_adapter_name(name)
        if name in self.host:
            state = "still finishing requests after an unload" if name in self.retiring else "already loaded"
            raise AdapterExists(f"adapter {name!r} is {state}")
        self.host[name] = entry

    def unregister(self, name: str) -> None:
        """Remove an adapter; requests that hold it finish with it first."""
        if name not in self:
            raise UnknownAdapter(f"unknown adapter {name!r}")
        if self.holders.get(name):
            self.retiring.add(name)
        else:
            self._drop(name)

    def hold(self, name: str) -> None:
        """A request was submitted with this adapter: it stays registered until ``let_go``."""
        self.holders[name] = self.holders.get(name, 0) + 1

    def let_go(self, name: str) -> None:
        """A request that held this adapter ended; the last one out removes an adapter unloaded meanwhile."""
        self.holders[name] -= 1
        if not self.holders[name]:
            del self.holders[name]
            if name in self.retiring:
                self._drop(name)

    def _drop(self, name: str) -> None:
        self.resident.pop(name, None)
        self.users.pop(name, None)
        self.retiring.discard(name)
        del self.host[name]

    # ------------------------------------------------------------ residency
    def can_make_resident(self, names: set[str]) -> bool:
        """Whether every adapter in ``names`` can be resident at once (with the pinned ones)."""
        return len({n for n in names if n in self.host} | self._pinned()) <= self.capacity

    def _pinned(self) -> set[str]:
        """Adapters that must stay resident: those of decoding rows, for a kind whose rows read them."""
        return {n for n, count in self.users.items() if count} if self.resident_while_decoding else set()

    def acquire(self, names: list[str]) -> list[int]:
        """Device slots of ``names`` (loaded from CPU memory as needed), evicting only adapters not in
        ``names`` and not pinned by decoding rows."""
        keep = set(names) | self._pinned()
        slots = []
        for name in names:
            if name in self.resident:
                self.resident.move_to_end(name)
            else:
                used = set(self.resident.values())
                free = next((s for s in range(self.capacity) if s not in used), None)
                if free is None:
                    victim = next((n for n in self.resident if n not in keep), None)
                    if victim is None:
                        raise RuntimeError("more adapters needed at once than the device holds")
                    free = self.resident.pop(victim)
                    self.evictions += 1
                self._load(name, free)
                self.resident[name] = free
                self.loads += 1
            slots.append(self.resident[name])
        return slots

    def _load(self, name: str, slot: int) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------ rows
    def assign_rows(self, rows: list[int], names: list[str | None]) -> None:
        """Rows admitted with these adapters of this kind (``None``: none of this kind)."""
        for name in names:
            if name is not None:
                self.users[name] = self.users.get(name, 0) + 1

    def release_row(self, row: int, name: str | None) -> None:
        """A row's sequence ended or was preempted (its request may still hold the adapter: ``let_go``)."""
        if name is None:
            return
        self.users[name] -= 1

    # ------------------------------------------------------------ executor hooks
    def prepare_prefill(self, batch, names: list[str | None]) -> None:
        """Before a prefill pass: per-prompt adapter names of this kind (``None``: none of this kind)."""

    def graph_inputs(self, batch) -> list[torch.Tensor] | None:
        """The tensors of this kind's prefill state that the pass reads, for a CUDA graph to take as inputs;
        None: the pass cannot be replayed from a graph (its shapes depend on the prompts)."""
        return [] if self.kind not in batch.extras else None

    def graphable(self, names: list[str | None]) -> bool:
        """Whether a prefill pass with these per-prompt adapters of this kind can replay from a CUDA graph."""
        return all(name is None for name in names)

    def reserve_tables(self) -> bool:
        """Make the device tables wide enough for every registered adapter (so that graphs recorded now read
        the tables later passes use); whether this kind can then give a template state."""
        return False

    def prepare_template(self, batch) -> None:
        """A prefill state with every prompt on this kind's all-zero slot: what a prefill graph is recorded
        from (``reserve_tables`` said it can)."""
        raise NotImplementedError

    def graph_key(self, batch) -> tuple:
        """What, besides the bucket, tells apart the graphs this kind's state needs."""
        return (self.kind in batch.extras,)

    def after_norm(self, layer: int, x: torch.Tensor, batch) -> None:
        """Called with a layer's normalised attention input (PARA's generators read it)."""

    def scales(self, layer: int, batch) -> dict[str, torch.Tensor] | None:
        """Per-row multipliers of q, v and up for this layer ([rows, width] buffers indexed by row), or None."""
        return None

    def add_delta(self, layer: int, target: str, x: torch.Tensor, out: torch.Tensor, batch) -> None:
        """Add this kind's contribution to a projection's output in place (LoRA: ``x·Aᵀ·Bᵀ``)."""
