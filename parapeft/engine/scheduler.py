"""Which requests run in the next step: every running sequence decodes one token, waiting ones are admitted.

A step has a token budget (``max_step_tokens``) shared by decoding rows (one token each) and prompt tokens
prefilled in it. Requests are admitted first come, first served, while the budget, a free row, the free KV
blocks and the device adapter slots allow; the head of the queue is never skipped, so nothing starves, and
a prompt longer than what is left still runs when it is the step's only prefill. With ``prefill_wait_ms``
new prompts may wait a few milliseconds while others decode, so that several share one prefill pass (a pass
has a fixed cost in launches that a few prompts do not fill). A running sequence grows
one block at a time; when no block is free the most recently admitted sequence is preempted: its blocks are
freed and it goes back to the front of the queue, to be prefilled again (its prompt and the tokens it has
generated; its PARA vectors again from its prompt alone).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from .block_manager import BlockManager
from .config import EngineConfig
from .kv_cache import PagedKVCache
from .sequence import Request


@dataclass
class Plan:
    prefill: list[Request] = field(default_factory=list)
    decode: list[Request] = field(default_factory=list)
    preempted: list[Request] = field(default_factory=list)


class Scheduler:
    def __init__(self, config: EngineConfig, blocks: BlockManager, cache: PagedKVCache, adapter_check, on_release):
        self.config, self.blocks, self.cache = config, blocks, cache
        # adapter_check(requests) -> whether their adapters (with the ones already pinned) fit on the device
        self.adapter_check = adapter_check
        self.on_release = on_release  # on_release(request): the adapters let go of the request's row
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []  # in admission order
        self.free_rows = list(range(config.max_seqs))
        self.preemptions = 0

    def schedule(self, ahead: bool = False) -> Plan | None:
        """The next step's plan. ``ahead``: a step is still in flight (its tokens not yet taken): rows whose
        length it reaches sit this one out, and a plan that would preempt is not made (None)."""
        plan = Plan()
        size = self.blocks.block_size
        for request in list(self.running):
            if request.row is None:  # preempted for an older sequence in this loop
                continue
            if ahead and len(request.tokens) + request.in_flight >= request.sampling.max_tokens:
                continue  # the step in flight gives its last token
            needed = request.cached_tokens + request.in_flight + 1  # room for the token this step writes
            if needed > len(request.blocks) * size:  # crosses into a new block (once every block_size steps)
                if ahead and not self.blocks.can_hold(needed, len(request.blocks)):
                    return None  # blocks grown so far stay with their rows: they need them next step anyway
                while not self.blocks.can_hold(needed, len(request.blocks)):
                    victim = self.running[-1]
                    self._preempt(victim)
                    plan.preempted.append(victim)
                    if victim is request:
                        break
                if request.row is None:
                    continue
                self.cache.note_blocks(request.row, self.blocks.grow(request.blocks, needed))
            plan.decode.append(request)
        budget = self.config.max_step_tokens - len(plan.decode)
        if plan.decode and self.waiting and self._let_prompts_gather():
            return plan
        while self.waiting and self.free_rows:
            request = self.waiting[0]
            length = len(request.prefill_tokens())
            if plan.prefill and length > budget:
                break
            if not self.blocks.can_hold(length + 1):
                break
            if not self.adapter_check(plan.prefill + [request]):
                break
            self.waiting.popleft()
            request.row = self.free_rows.pop()
            self.cache.note_blocks(request.row, self.blocks.grow(request.blocks, length))
            self.running.append(request)
            plan.prefill.append(request)
            budget -= length
        return plan

    def _let_prompts_gather(self) -> bool:
        """Whether to leave the waiting prompts for a later step (``prefill_wait_ms``): the oldest has waited
        less than that and fewer than ``prefill_batch_tokens`` prompt tokens wait."""
        wait = self.config.prefill_wait_ms / 1000
        if not wait or time.monotonic() - self.waiting[0].arrived >= wait:
            return False
        return sum(len(r.prompt) for r in self.waiting) < self.config.prefill_batch_tokens

    def _preempt(self, request: Request) -> None:
        self.running.remove(request)
        self.release(request)
        request.recompute = True
        self.waiting.appendleft(request)
        self.preemptions += 1

    def release(self, request: Request) -> None:
        """Give back a sequence's blocks and row (it finished, was cancelled or preempted)."""
        self.blocks.release(request.blocks)
        if request.row is not None:
            self.cache.forget_row(request.row)
            self.on_release(request)
            self.free_rows.append(request.row)
            request.row = None

    def remove(self, request: Request) -> None:
        if request in self.waiting:
            self.waiting.remove(request)
        if request in self.running:
            self.running.remove(request)
            self.release(request)
