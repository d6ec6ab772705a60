"""The paged KV cache's bookkeeping: which blocks are free, which belong to which sequence (host side only).

Blocks are handed out one at a time as a sequence grows and all come back when it ends or is preempted.
A request is admitted only when its prompt (plus the first generated token) fits in the free blocks.
"""

from __future__ import annotations

from collections import deque


class OutOfBlocks(Exception):
    """No free block: the scheduler preempts a sequence and tries again."""


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int):
        if num_blocks < 1:
            raise ValueError("the KV cache needs at least one block")
        self.num_blocks, self.block_size = num_blocks, block_size
        self._free: deque[int] = deque(range(num_blocks))
        self._owned = 0  # blocks held by sequences, for the leak check

    @property
    def free(self) -> int:
        return len(self._free)

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    def can_hold(self, tokens: int, already: int = 0) -> bool:
        """Whether a sequence holding ``already`` blocks can grow to ``tokens`` tokens with the free blocks."""
        return self.blocks_for(tokens) - already <= len(self._free)

    def grow(self, blocks: list[int], tokens: int) -> list[tuple[int, int]]:
        """Append blocks to ``blocks`` until it holds ``tokens`` tokens; returns the new (index, block) pairs."""
        needed = self.blocks_for(tokens) - len(blocks)
        if needed > len(self._free):
            raise OutOfBlocks(f"{needed} blocks needed, {len(self._free)} free")
        added = []
        for _ in range(max(0, needed)):
            block = self._free.popleft()
            added.append((len(blocks), block))
            blocks.append(block)
        self._owned += len(added)
        return added

    def release(self, blocks: list[int]) -> None:
        self._free.extend(blocks)
        self._owned -= len(blocks)
        blocks.clear()

    def all_free(self) -> bool:
        """No block is held and none was lost: the invariant after every sequence has ended."""
        return self._owned == 0 and len(set(self._free)) == self.num_blocks
