"""The decoding step and small packed prefill passes replayed from CUDA graphs.

Decoding: one graph per (batch bucket, PARA rows present, LoRA rows present).

The step reads everything it needs from the device (rows -> tokens, positions, block tables), so a graph
per batch size serves every context length: the paged attention kernel's loops stop at each row's length.
Rows are padded to the bucket with the scratch row, which reads and writes only the scratch block. The
graphs share one memory pool and write their logits into one buffer, as nano-vllm does. A batch without
PARA rows runs a graph without the multiplies, and one without LoRA rows a graph without the products.
"""

from __future__ import annotations

import torch

from .batch import PREFILL_TILE, DecodeBatch, PrefillBatch, PrefillBucket
from .executor import Executor

BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512)


class DecodeGraphs:
    def __init__(self, executor: Executor, max_rows: int):
        self.executor = executor
        self.buckets = [b for b in BUCKETS if b < max_rows] + [max_rows]
        device = executor.device
        self.rows = torch.full((max_rows,), executor.cache.scratch_row, dtype=torch.int64, device=device)
        self.logits = torch.empty(max_rows, executor.vocab, dtype=torch.float32, device=device)
        self.pool = None
        self.graphs: dict[tuple, torch.cuda.CUDAGraph] = {}

    def _key(self, size: int, para: bool, lora: bool) -> tuple:
        lora_tables = next((k for k in self.executor.adapters if k.kind == "lora"), None)
        return size, para, lora, lora_tables.version if lora and lora_tables is not None else 0

    def capture(self, size: int, para: bool, lora: bool) -> None:
        key = self._key(size, para, lora)
        if key in self.graphs:
            return
        batch = DecodeBatch(self.rows[:size], para=para, lora=lora)
        self.rows[:size] = self.executor.cache.scratch_row
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph (Triton compilation, allocator, lazy state)
            for _ in range(2):
                self.logits[:size] = self.executor.decode(batch)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            self.logits[:size] = self.executor.decode(batch)
        self.pool = graph.pool()
        self.graphs[key] = graph

    def capture_all(self, para: bool, lora: bool) -> None:
        for size in reversed(self.buckets):  # largest first: the smaller graphs fit in its pool
            self.capture(size, para, lora)

    def __call__(self, rows: torch.Tensor, para: bool, lora: bool) -> torch.Tensor:
        count = rows.shape[0]
        size = next(b for b in self.buckets if b >= count)
        key = self._key(size, para, lora)
        if key not in self.graphs:
            self.capture(size, para, lora)
        self.rows[count:size] = self.executor.cache.scratch_row
        self.rows[:count] = rows
        self.graphs[key].replay()
        return self.logits[:count]


# Fine steps: under load the GPU is the bottleneck and a bucket's padding is work it does for nothing (powers of
# two, up to twice the pass, cost bare 40 % more time per output token at 256 requests/s on the H200 trace).
PREFILL_BUCKETS = tuple(range(128, 1024, 128)) + tuple(range(1024, 4096 + 1, 256))
MEAN_PROMPT = 16  # a bucket of T tokens takes up to T / MEAN_PROMPT prompts; a pass of more runs eagerly


class PrefillGraphs:
    """Packed prefill passes of up to ``max_tokens`` tokens, replayed from a CUDA graph per (token bucket, the
    adapter kinds' keys: PARA and LoRA prompts present, their stacked tables).

    Passes of a few thousand tokens are bound by the host: about ten launches per layer, PARA's generators two
    more, cost more than the GPU's work. A replay is one launch. The first pass of a key is the template: it
    runs (and is captured) as it is, its tensors become the graph's inputs, and a later pass of the key, padded
    to the same bucket, copies its own tensors into them before the replay. Buckets come in steps of 128 tokens
    up to 1k and 256 up to 4k, so padding stays a small part of a pass. Passes with attention-pooled PARA
    prompts run eagerly (that pooling's PyTorch code has shapes that depend on the prompts)."""

    def __init__(self, executor: Executor, max_tokens: int, max_prompts: int):
        self.executor = executor
        self.buckets = [PrefillBucket(t, min(max_prompts, t // MEAN_PROMPT) + 1)
                        for t in PREFILL_BUCKETS if t <= max_tokens and t >= PREFILL_TILE]
        self.pool = None
        self.logits = None  # one output buffer for every prefill graph (a pass's logits are sampled before the next)
        self.replays = 0  # passes run from a graph
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, PrefillBatch, list[torch.Tensor]]] = {}

    def bucket(self, tokens: int, prompts: int) -> PrefillBucket | None:
        return next((b for b in self.buckets if b.fits(tokens, prompts)), None)

    def inputs(self, batch: PrefillBatch) -> list[torch.Tensor] | None:
        """Every tensor the pass reads that changes between passes, or None if it cannot be replayed."""
        tensors = [batch.token_ids, batch.positions, batch.token_rows, batch.segment, batch.blocks, batch.offsets,
                   batch.rows, batch.last_index, batch.starts, batch.lengths, batch.tables, batch.tiles]
        for kind in self.executor.adapters:
            extra = kind.graph_inputs(batch)
            if extra is None:
                return None
            tensors += extra
        return tensors

    def __call__(self, batch: PrefillBatch, inputs: list[torch.Tensor]) -> torch.Tensor:
        """Last-token logits of the batch's real prompts; ``inputs``: ``self.inputs(batch)``."""
        key = (batch.tokens, batch.para, *(k for kind in self.executor.adapters for k in kind.graph_key(batch)))
        entry = self.graphs.get(key)
        if entry is None:
            entry = self.graphs[key] = self._capture(batch, inputs)
        else:
            for captured, given in zip(entry[2], inputs, strict=True):
                captured.copy_(given)
        entry[0].replay()
        self.replays += 1
        return self.logits[:batch.prompts]

    def _capture(self, batch: PrefillBatch, inputs: list[torch.Tensor]):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph (Triton compilation, allocator); writes the
            for _ in range(2):         # same keys, values and multipliers the replay writes again
                self.executor.prefill(batch)
        torch.cuda.current_stream().wait_stream(side)
        if self.logits is None:
            largest = max(b.prompts for b in self.buckets)
            self.logits = torch.empty(largest, self.executor.vocab, dtype=torch.float32, device=self.executor.device)
        prompts = batch.last_index.shape[0]
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            self.logits[:prompts] = self.executor.prefill(batch)
        self.pool = graph.pool()
        return graph, batch, inputs
