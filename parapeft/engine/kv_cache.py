"""The paged KV cache and the per-sequence tables on the device.

Keys and values are stored per layer as ``[blocks, kv_heads, block_size, head_dim]``; a sequence's
token ``p`` lives in block ``block_tables[row, p // block_size]`` at offset ``p % block_size``. Each
running sequence owns a *row* of the per-sequence tables (block table, length, last token), which the
decoding step reads on the device, so a step sends only the list of rows it runs. One extra block and one
extra row are scratch: padding rows of a CUDA-graph bucket read and write only them.
"""

from __future__ import annotations

import torch

from .config import CPU_KV_TOKENS, EngineConfig
from .transfer import to_device


def kv_bytes_per_token(layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype) -> int:
    return 2 * layers * kv_heads * head_dim * torch.empty(0, dtype=dtype).element_size()


def cache_tokens(config: EngineConfig, device: torch.device, per_token: int) -> int:
    """How many tokens the cache holds: ``kv_tokens``, else on CUDA ``kv_memory`` of the free memory."""
    if config.kv_tokens is not None:
        return config.kv_tokens
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(config.max_len, int(free * config.kv_memory) // per_token)
    return max(config.max_len, min(config.max_seqs * config.max_len, CPU_KV_TOKENS))


class PagedKVCache:
    def __init__(self, config: EngineConfig, layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device):
        self.block_size = config.block_size
        tokens = cache_tokens(config, device, kv_bytes_per_token(layers, kv_heads, head_dim, dtype))
        self.num_blocks = max(1, tokens // config.block_size)
        self.scratch_block, self.scratch_row = self.num_blocks, config.max_seqs
        shape = (layers, self.num_blocks + 1, kv_heads, config.block_size, head_dim)
        # Uninitialised: attention reads only positions a sequence has written.
        self.keys = torch.empty(shape, dtype=dtype, device=device)
        self.values = torch.empty(shape, dtype=dtype, device=device)
        rows, width = config.max_seqs + 1, config.max_blocks_per_seq
        self.block_tables = torch.full((rows, width), self.scratch_block, dtype=torch.int32, device=device)
        self.seq_lens = torch.zeros(rows, dtype=torch.int32, device=device)  # tokens in the cache, per row
        self.last_tokens = torch.zeros(rows, dtype=torch.int64, device=device)  # the token each row feeds next
        self._pending: list[tuple[int, int, int]] = []  # (row, index, block) not yet written to block_tables

    @property
    def tokens(self) -> int:
        return self.num_blocks * self.block_size

    def note_blocks(self, row: int, added: list[tuple[int, int]]) -> None:
        self._pending += [(row, index, block) for index, block in added]

    def forget_row(self, row: int) -> None:
        """Drop the notes of a row given back before they were written: its blocks are free again, and a note of a
        later sequence on the row must be the only one for its entry (one ``index_put_`` with two values for one
        entry keeps either on a GPU). A plan made a step ahead that launched nothing leaves such notes."""
        self._pending = [entry for entry in self._pending if entry[0] != row]

    def flush(self) -> None:
        """Write the block-table entries noted since the last step (one copy from pinned memory: no wait for the GPU)."""
        if not self._pending:
            return
        rows, indexes, blocks = to_device(list(zip(*self._pending)), self.block_tables.device).unbind(0)
        self.block_tables.index_put_((rows, indexes), blocks.to(torch.int32))
        self._pending.clear()
