"""Structured output: a request's ``response_format`` becomes a grammar that masks its tokens every step.

The grammar library is xgrammar: it compiles a JSON schema (or its built-in JSON grammar) against the
tokenizer's vocabulary once, caches the compilation by schema text, and gives each request a matcher
whose state advances with every token it accepts. Each step fills one bitmask row per constrained
request on the host while the GPU runs the step's passes, and the sampler applies the masks to the
logits before penalties, temperature and truncation, so constrained and free rows share one batch.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass

import torch

from .errors import BadRequest

FORMATS = ("json_object", "json_schema")
THREADED_FILL_S = 0.6e-3  # above this predicted one-thread time, a step's masks are filled on threads
RESAMPLE_EVERY = 16  # every 16th fill runs on one thread, to keep the per-row cost current
PARAM = "response_format"  # the request field its errors name
ANY_OBJECT = '{"type": "object"}'  # what OpenAI's json_object promises: some JSON object


@dataclass(frozen=True)
class ResponseFormat:
    """``json_object``: any JSON object. ``json_schema``: JSON that validates against ``schema`` (JSON text)."""

    type: str
    schema: str = ""

    def validate(self) -> None:
        if self.type not in FORMATS:
            raise BadRequest(f"response_format type must be one of {', '.join(FORMATS)}, got {self.type!r}", PARAM)
        if self.type == "json_schema":
            try:
                parsed = json.loads(self.schema)
            except ValueError as err:
                raise BadRequest(f"response_format json_schema is not valid JSON: {err}", PARAM) from err
            if not isinstance(parsed, dict):
                raise BadRequest("response_format json_schema must be a JSON object", PARAM)
        elif self.schema:
            raise BadRequest("response_format json_object takes no schema", PARAM)


def _reason(err: Exception) -> str:
    """The library's message without its timestamp and source location ("[12:00:00] file.cc:12: ...")."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return re.sub(r"^\[[0-9:]+\] \S+:[0-9]+: ", "", first)


class Grammars:
    """Compiled grammars for one tokenizer, and the per-step bitmask of a batch's constrained rows."""

    def __init__(self, tokenizer, vocab_size: int, rows: int, device: torch.device, threads: int | None = None):
        import xgrammar  # imported here: engines that never see a response_format do not load it

        self._xgr = xgrammar
        threads = threads or max(1, min(8, (os.cpu_count() or 2) - 1))
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        # The compiler caches every compilation by its input, so a schema is compiled once per worker.
        self.compiler = xgrammar.GrammarCompiler(info, max_threads=threads, cache_enabled=True)
        # Fills many rows' masks on several threads. Measured on an H200 host: one row takes 3 us (inside JSON
        # structure) to 17 us (inside a free string) on one thread, and a threaded fill ~0.5 ms whatever the
        # rows, so the threads are used only when the rows' average cost says one thread would take longer.
        self._filler = xgrammar.BatchGrammarMatcher(max_threads=threads)
        self._row_cost = 0.0  # seconds per row of a one-thread fill, a running average
        self._fills = 0
        self.vocab = vocab_size
        # Two host buffers for a step's masks, used in turns (with overlap_steps one step's copy may still be
        # queued while the next step fills), pinned on a GPU so the copy to the device does not wait for the
        # step's passes queued before it.
        self._hosts = [xgrammar.allocate_token_bitmask(rows, vocab_size) for _ in range(2)]
        if device.type == "cuda":
            self._hosts = [host.pin_memory() for host in self._hosts]

    def matcher(self, response_format: ResponseFormat):
        """A fresh matcher for one request; a schema the library cannot compile is the request's error."""
        try:
            # Compact JSON: with free whitespace a small model can loop on newlines until max_tokens.
            schema = response_format.schema if response_format.type == "json_schema" else ANY_OBJECT
            grammar = self.compiler.compile_json_schema(schema, any_whitespace=False)
        except (RuntimeError, ValueError, TypeError) as err:
            raise BadRequest(f"response_format json_schema cannot be compiled: {_reason(err)}", PARAM) from err
        return self._xgr.GrammarMatcher(grammar)

    def bitmask(self, matchers: list, device: torch.device) -> "Constraint | None":
        """The masks of a batch whose row i is constrained by ``matchers[i]`` (None: a free row): what each
        constrained row accepts next. None when no row is constrained."""
        rows = [i for i, m in enumerate(matchers) if m is not None]
        if not rows:
            return None
        self._fills += 1
        mask = self._hosts[self._fills % 2][: len(matchers)]  # the step before last has finished: results read
        if len(rows) * self._row_cost > THREADED_FILL_S and self._fills % RESAMPLE_EVERY:
            self._filler.batch_fill_next_token_bitmask([matchers[i] for i in rows], mask, indices=rows)
        else:
            started = time.perf_counter()
            for i in rows:
                matchers[i].fill_next_token_bitmask(mask, i)
            self._row_cost += 0.25 * ((time.perf_counter() - started) / len(rows) - self._row_cost)
        return Constraint(mask.to(device, non_blocking=True), rows)

    def apply(self, logits: torch.Tensor, constraint: "Constraint") -> None:
        """Disallowed tokens' logits become -inf, in place ([rows, vocab] float32), in constrained rows only."""
        self._xgr.apply_token_bitmask_inplace(logits, constraint.mask, vocab_size=self.vocab,
                                              indices=constraint.rows)


@dataclass
class Constraint:
    mask: torch.Tensor  # [batch rows, ceil(vocab / 32)] int32 bitmask on the logits' device
    rows: list[int]  # the constrained rows (the others are not touched)
