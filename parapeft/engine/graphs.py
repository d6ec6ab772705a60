"""The decoding step replayed from CUDA graphs, one per (batch bucket, PARA rows present, LoRA rows present).

The step reads everything it needs from the device (rows -> tokens, positions, block tables), so a graph
per batch size serves every context length: the paged attention kernel's loops stop at each row's length.
Rows are padded to the bucket with the scratch row, which reads and writes only the scratch block. The
graphs share one memory pool and write their logits into one buffer, as nano-vllm does. A batch without
PARA rows runs a graph without the multiplies, and one without LoRA rows a graph without the products.
"""

from __future__ import annotations

import torch

from .batch import DecodeBatch
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
