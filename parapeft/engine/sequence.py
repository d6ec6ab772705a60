"""A request as the engine sees it: what was asked, what has been generated, where its state lives."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from ..model import BASE_ADAPTER
from .sampling import SamplingParams

_ids = itertools.count()


@dataclass(eq=False)
class Request:
    """One generation request. ``tokens``/``logprobs`` grow as the engine steps; ``finish_reason`` ends it:
    ``stop`` (end of sequence), ``length`` (max_tokens), ``cancelled`` or ``error`` (``error`` says why)."""

    prompt: list[int]
    adapter: str = BASE_ADAPTER
    sampling: SamplingParams = field(default_factory=SamplingParams)
    id: int = field(default_factory=lambda: next(_ids))
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)  # per token, when asked for
    finish_reason: str | None = None
    error: str | None = None
    seed: int = 0  # the request's random stream (its own seed, or one the engine drew)
    kind: str | None = None  # its adapter's kind ("para", "lora"; None: the bare backbone), fixed at submission
    arrived: float = field(default_factory=time.monotonic)  # when it was submitted (prefill_wait_ms counts from it)
    # Engine state: the row of the engine's per-sequence tables and the KV blocks it holds.
    row: int | None = None
    blocks: list[int] = field(default_factory=list)
    matcher: object | None = None  # its grammar's state when it asked for a response_format (grammar.py)
    recompute: bool = False  # preempted: its prompt and tokens are prefilled again, its vectors from the prompt
    in_flight: int = 0  # tokens of launched steps not yet taken on the host (up to 2 with overlap_steps)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def cached_tokens(self) -> int:
        """Tokens whose keys and values are in the cache while it decodes: all but the last generated one."""
        return len(self.prompt) + len(self.tokens) - 1

    def prefill_tokens(self) -> list[int]:
        """What a prefill runs: the prompt, plus (after a preemption) every generated token but the last."""
        return self.prompt + self.tokens[:-1] if self.recompute else self.prompt
