"""What one pass of the executor runs: a packed prefill of several prompts, or one decoding token per row.

A prefill packs its prompts' tokens into one sequence of ``T`` tokens (no padding); per-token tensors say
which prompt (``segment``) and row each token belongs to, its position and where its key and value go in the
paged cache. Prompts are packed longest first, so the attention groups (prompts right-padded together for
one causal SDPA call) are contiguous and waste little.

A pass replayed from a CUDA graph has the shapes of its bucket (``PrefillBucket``): padding tokens after the
real ones (position 0 of the scratch row, so their keys and values land in the scratch block) and padding
prompts after the real ones (no tokens, the scratch row, one pooled position read from token 0). They
belong to no attention tile, so their outputs are never read: only the real prompts' logits are returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .kv_cache import PagedKVCache
from .ops import AttentionGroup
from .transfer import to_device

MAX_PADDING = 1.5  # an attention group's padded size is at most this times its real tokens (or one prompt)
PREFILL_TILE = 64  # query positions per program of the Triton prefill attention kernel (its BLOCK_M)


@dataclass(frozen=True)
class PrefillBucket:
    """The fixed shapes of a graphed prefill pass: tokens, prompts (one of them always padding) and attention
    tiles (every prompt adds at most one partial tile)."""

    tokens: int
    prompts: int

    @property
    def tiles(self) -> int:
        return self.tokens // PREFILL_TILE + self.prompts

    def fits(self, tokens: int, prompts: int) -> bool:
        return tokens <= self.tokens and prompts < self.prompts


@dataclass
class PrefillBatch:
    rows_host: list[int]  # real prompts first, then a bucket's padding prompts
    lengths_host: list[int]
    starts_host: list[int]
    pool_lens_host: list[int]  # positions each prompt's PARA vectors pool over (its prompt, not re-run tokens)
    token_ids: torch.Tensor  # [T]
    positions: torch.Tensor  # [T]
    token_rows: torch.Tensor  # [T] each token's sequence row (PARA scales are read by it)
    segment: torch.Tensor  # [T] each token's prompt (padding tokens: the last padding prompt)
    blocks: torch.Tensor  # [T] cache block of each token
    offsets: torch.Tensor  # [T] offset inside the block
    rows: torch.Tensor  # [P]
    last_index: torch.Tensor  # [P] packed index of each prompt's last token
    starts: torch.Tensor  # [P] packed index of each prompt's first token
    lengths: torch.Tensor  # [P]
    tables: torch.Tensor  # [P, max blocks] the prompts' block tables
    tiles: torch.Tensor  # [n, 2] (prompt, first position) of each query tile of the Triton attention kernel
    groups: list[AttentionGroup]  # prompts padded together for the PyTorch attention
    prompts: int = 0  # real prompts (the first ``prompts`` of the per-prompt tensors); the rest pad a bucket
    bucket: PrefillBucket | None = None  # the shapes it is padded to (the adapters pad their tiles to them too)
    para: bool = False  # some prompt has a PARA adapter
    lora: bool = False
    decode: bool = False
    extras: dict = field(default_factory=dict)  # per adapter kind, what its hooks need for this pass

    @property
    def tokens(self) -> int:
        return int(self.token_ids.shape[0])


@dataclass
class DecodeBatch:
    rows: torch.Tensor  # [B] sequence rows (a CUDA-graph bucket pads with the scratch row)
    para: bool
    lora: bool
    decode: bool = True
    extras: dict = field(default_factory=dict)


def attention_groups(lengths: list[int], starts: list[int], device: torch.device) -> list[AttentionGroup]:
    """Consecutive prompts (packed longest first) grouped so padding stays under ``MAX_PADDING``."""
    groups, first = [], 0
    while first < len(lengths):
        longest, last, real = lengths[first], first + 1, lengths[first]
        while last < len(lengths) and (last - first + 1) * longest <= MAX_PADDING * (real + lengths[last]):
            real += lengths[last]
            last += 1
        offsets = torch.arange(longest)
        pad_index = torch.tensor(starts[first:last]).unsqueeze(1) + offsets.unsqueeze(0)
        pad_index = torch.minimum(pad_index, torch.tensor(starts[last - 1] + lengths[last - 1] - 1))
        out_index = torch.cat([p * longest + torch.arange(n) for p, n in enumerate(lengths[first:last])])
        groups.append(AttentionGroup(starts[first], starts[last - 1] + lengths[last - 1], pad_index.to(device),
                                     out_index.to(device)))
        first = last
    return groups


def prefill_tiles(lengths: list[int], size: int = PREFILL_TILE) -> list[tuple[int, int]]:
    """(prompt, first position) of every tile of ``size`` query positions."""
    return [(prompt, first) for prompt, length in enumerate(lengths) for first in range(0, length, size)]


def build_prefill(sequences: list[tuple[int, list[int], int]], cache: PagedKVCache, device: torch.device,
                  fused: bool = False, bucket: PrefillBucket | None = None) -> PrefillBatch:
    """``sequences``: (row, token ids, pooled length) per prompt, longest first. Block tables must be flushed.
    ``fused``: the Triton attention kernel runs the pass (tiles), else PyTorch's SDPA (padded groups).
    ``bucket``: pad to its shapes (a graphed pass; ``bucket.fits`` must hold).

    The per-token and per-prompt values are laid out on the host and reach the device in three copies."""
    real = len(sequences)
    rows_host = [row for row, _, _ in sequences]
    lengths = [len(tokens) for _, tokens, _ in sequences]
    starts = [sum(lengths[:i]) for i in range(real)]
    pools = [pool for _, _, pool in sequences]
    last = [start + length - 1 for start, length in zip(starts, lengths)]
    total = sum(lengths)
    length_host = torch.tensor(lengths)
    segment = torch.repeat_interleave(torch.arange(real), length_host, output_size=total)
    columns = [torch.tensor([t for _, tokens, _ in sequences for t in tokens], dtype=torch.int64),
               torch.arange(total) - torch.tensor(starts, dtype=torch.int64).index_select(0, segment),
               torch.tensor(rows_host, dtype=torch.int64).index_select(0, segment), segment]
    tiles = prefill_tiles(lengths)
    if bucket is not None:
        padding, extra = bucket.tokens - total, bucket.prompts - real
        scratch = cache.scratch_row
        rows_host, lengths = rows_host + [scratch] * extra, lengths + [0] * extra
        starts, pools, last = starts + [0] * extra, pools + [1] * extra, last + [0] * extra
        columns = [torch.cat([c, torch.full((padding,), fill, dtype=torch.int64)])
                   for c, fill in zip(columns, (0, 0, scratch, bucket.prompts - 1))]
        tiles += [(bucket.prompts - 1, 0)] * (bucket.tiles - len(tiles))
    per_token = to_device(torch.stack(columns), device)
    ids, positions, token_rows, segment = per_token.unbind(0)
    per_prompt = to_device([rows_host, lengths, starts, last], device)
    rows, length_tensor, start_tensor, last_index = per_prompt.unbind(0)
    blocks = cache.block_tables[token_rows, positions // cache.block_size].long()
    return PrefillBatch(
        rows_host=rows_host, lengths_host=lengths, starts_host=starts, pool_lens_host=pools, token_ids=ids,
        positions=positions, token_rows=token_rows, segment=segment, blocks=blocks,
        offsets=positions % cache.block_size, rows=rows, last_index=last_index, starts=start_tensor,
        lengths=length_tensor, tables=cache.block_tables.index_select(0, rows),
        tiles=to_device(tiles, device, torch.int32).view(-1, 2), prompts=real, bucket=bucket,
        groups=attention_groups(lengths[:real], starts[:real], device) if not fused else [])
