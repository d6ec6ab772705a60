"""Sampling on the device for a whole batch at once, with one transfer to the host per step.

Every request owns a row of the engine's per-sequence tables; its sampling values live in device tensors
indexed by that row, written once at admission. A step hands the sampler its logits and the rows they
belong to; the sampler applies penalties and ``logit_bias``, temperature, top-k and top-p, and draws every
row's token in one pass. It returns tokens, their log-probabilities, the requested alternatives and a
finite flag per row, packed into one host tensor.

Random numbers come from a counter-based hash of (the request's seed, how many tokens it has generated,
the token id), not from a shared generator stream: a seeded request draws the same numbers whatever else
is in the batch, and a token is drawn by the exponential race (``argmax p / E`` with ``E`` exponential),
which samples exactly from ``p``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .transfer import to_device
from .sampling import SamplingParams

_M32 = 0xFFFFFFFF
# Odd multipliers below 2^31, so products of 32-bit values stay inside int64 on every device.
_MULTIPLIERS = (0x7FEB352D, 0x2C1B3C6D, 0x297A2D39)
_FLOAT_FIELDS = ("temperature", "top_p", "presence", "frequency", "repetition")
_INT_FIELDS = ("top_k", "seed", "generated")


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xor-shift-multiply rounds) of int64 tensors holding values below 2^32."""
    for multiplier in _MULTIPLIERS:
        x = ((x ^ (x >> 16)) * multiplier) & _M32
    return x ^ (x >> 15)


def uniforms(seeds: torch.Tensor, steps: torch.Tensor, vocab: int) -> torch.Tensor:
    """[rows, vocab] numbers in (0, 1), a pure function of (seed, step, token id) per element."""
    key = _mix(_mix((seeds & _M32) ^ _mix((seeds >> 32) & _M32)) ^ (steps & _M32))
    tokens = torch.arange(vocab, device=seeds.device, dtype=torch.int64)
    bits = _mix(key.unsqueeze(1) ^ ((tokens * 0x9E3779B1) & _M32).unsqueeze(0))
    return ((bits >> 8).to(torch.float32) + 0.5) / 16777216.0


@dataclass
class BatchNeeds:
    """Which optional stages this batch runs (decided on the host from its requests)."""

    sampling: bool = False  # some row has temperature > 0
    truncation: bool = False  # some sampled row has top-k or top-p
    penalties: bool = False
    bias: bool = False
    top_logprobs: int = 0

    @classmethod
    def of(cls, params: list[SamplingParams]) -> "BatchNeeds":
        sampled = [p for p in params if p.temperature > 0]
        return cls(sampling=bool(sampled), truncation=any(p.top_k or p.top_p < 1 for p in sampled),
                   penalties=any(p.penalised for p in params), bias=any(p.logit_bias for p in params),
                   top_logprobs=max((p.top_logprobs for p in params), default=0))


class Sampler:
    """Per-row sampling state on the device and the batched draw. Row ``rows`` (the last) is scratch."""

    def __init__(self, rows: int, vocab: int, device: torch.device):
        self.vocab, self.device = vocab, device
        # The per-row scalars, as two tables (one per dtype) so that admitting any number of rows writes them in
        # two copies; each field is a view of its table's row.
        self._floats = torch.zeros(len(_FLOAT_FIELDS), rows + 1, dtype=torch.float32, device=device)
        self._ints = torch.zeros(len(_INT_FIELDS), rows + 1, dtype=torch.int64, device=device)
        self.temperature, self.top_p, self.presence, self.frequency, self.repetition = self._floats.unbind(0)
        self.top_k, self.seed, self.generated = self._ints.unbind(0)  # generated: the random stream's counter
        self.top_p.fill_(1.0)
        self.repetition.fill_(1.0)
        self._rows = rows + 1
        # Dense per-row tables, made on first use: most workloads never pay for them.
        self._counts: torch.Tensor | None = None  # [rows, vocab] output-token counts (penalties)
        self._prompt_seen: torch.Tensor | None = None  # [rows, vocab] prompt tokens (repetition penalty)
        self._bias: torch.Tensor | None = None  # [rows, vocab] logit_bias

    # ------------------------------------------------------------------ rows
    def assign(self, entries: list[tuple[int, SamplingParams, int, list[int], list[int]]]) -> None:
        """Give rows their requests' values at admission: (row, params, seed, prompt, generated tokens) per row
        (``generated`` is non-empty after a preemption). The scalars of every row reach the device in two copies
        from pinned memory, whatever the count; only penalties and ``logit_bias`` add work per row."""
        if not entries:
            return
        rows = [entry[0] for entry in entries]
        floats = [[p.temperature, p.top_p, p.presence_penalty, p.frequency_penalty, p.repetition_penalty]
                  for _, p, _, _, _ in entries]
        # a seed in [0, 2^64) as the int64 of the same bits: every seed keeps its own stream
        ints = [[row, p.top_k, seed - 2 ** 64 if seed >= 2 ** 63 else seed, len(generated)]
                for row, p, seed, _, generated in entries]
        ints = to_device(ints, self.device).t()
        index = ints[0]
        self._floats.index_copy_(1, index, to_device(floats, self.device, torch.float32).t())
        self._ints.index_copy_(1, index, ints[1:])
        # A row's tables are cleared at admission (another request may have used the row), so a request without
        # penalties or bias never sees its predecessor's in a batch where another row has them.
        if self._counts is not None or any(p.penalised for _, p, _, _, _ in entries):
            counts, seen = self._penalty_tables()
            counts.index_fill_(0, index, 0)
            seen.index_fill_(0, index, False)
        if self._bias is not None or any(p.logit_bias for _, p, _, _, _ in entries):
            self._bias_table().index_fill_(0, index, 0.0)
        for row, params, _, prompt, generated in entries:
            if params.penalised:
                counts, seen = self._penalty_tables()
                if generated:
                    counts[row] = torch.bincount(torch.tensor(generated, dtype=torch.int64), minlength=self.vocab).to(
                        counts.device, counts.dtype)
                if prompt and params.repetition_penalty != 1.0:
                    seen[row, to_device(prompt, self.device)] = True
            if params.logit_bias:
                ids = to_device(list(params.logit_bias), self.device)
                self._bias_table()[row, ids] = to_device(list(params.logit_bias.values()), self.device, torch.float32)

    def _penalty_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._counts is None:
            self._counts = torch.zeros(self._rows, self.vocab, dtype=torch.int32, device=self.device)
            self._prompt_seen = torch.zeros(self._rows, self.vocab, dtype=torch.bool, device=self.device)
        return self._counts, self._prompt_seen

    def _bias_table(self) -> torch.Tensor:
        if self._bias is None:
            self._bias = torch.zeros(self._rows, self.vocab, dtype=torch.float32, device=self.device)
        return self._bias

    # ----------------------------------------------------------------- batch
    def process(self, logits: torch.Tensor, rows: torch.Tensor, needs: BatchNeeds) -> torch.Tensor:
        """The scores tokens are drawn from: penalties, bias, temperature, top-k and top-p applied.

        Greedy rows (temperature 0) keep temperature 1 here; ``sample`` takes their argmax.
        """
        scores = logits
        if needs.penalties:
            counts, seen = self._penalty_tables()
            counts, seen = counts[rows], seen[rows] | (counts[rows] > 0)
            repetition = self.repetition[rows].unsqueeze(1)
            # transformers' RepetitionPenaltyLogitsProcessor on the prompt and output tokens seen so far
            scores = torch.where(seen, torch.where(scores < 0, scores * repetition, scores / repetition), scores)
            scores = (scores - self.frequency[rows].unsqueeze(1) * counts
                      - self.presence[rows].unsqueeze(1) * (counts > 0))
        if needs.bias:
            scores = scores + self._bias_table()[rows]
        if not needs.sampling:
            return scores
        temperature = self.temperature[rows]
        scores = scores / torch.where(temperature > 0, temperature, 1.0).unsqueeze(1)
        if needs.truncation:
            ordered, order = torch.sort(scores, dim=-1, descending=True)
            top_k = self.top_k[rows]
            rank = torch.arange(self.vocab, device=scores.device).unsqueeze(0)
            drop = rank >= torch.where(top_k > 0, top_k, self.vocab).unsqueeze(1)
            ordered = ordered.masked_fill(drop, float("-inf"))
            probs = torch.softmax(ordered, dim=-1)
            # top-p keeps the smallest set of most likely tokens whose mass reaches p (always the first)
            top_p = self.top_p[rows].unsqueeze(1)
            drop = ((probs.cumsum(-1) - probs) >= top_p) & (top_p < 1)  # p = 1 keeps all, whatever the rounding
            ordered = ordered.masked_fill(drop, float("-inf"))
            scores = torch.empty_like(scores).scatter_(1, order, ordered)
        return scores

    def sample(self, logits: torch.Tensor, rows: torch.Tensor, needs: BatchNeeds,
               constrain: Callable[[torch.Tensor], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw one token per row. ``constrain`` masks float32 logits in place (structured output's
        grammars), after the log-probabilities are taken and before anything else. Returns the tokens and [rows, 3 + 2k] float64, both on the logits' device:
        token, its log-probability (unmodified distribution), finite flag, then k alternatives' ids and
        log-probabilities (the engine moves this one tensor to the host). Rows whose logits are not finite
        get token 0 and flag 0."""
        logits = logits.float()
        finite = torch.isfinite(logits).all(dim=-1)
        logits = torch.where(finite.unsqueeze(1), logits, 0.0)
        logprobs = torch.log_softmax(logits, dim=-1)
        if constrain is not None:
            constrain(logits)
        scores = self.process(logits, rows, needs)
        tokens = scores.argmax(dim=-1)
        if needs.sampling:
            race = torch.softmax(scores, dim=-1) / -torch.log(uniforms(self.seed[rows], self.generated[rows], self.vocab))
            tokens = torch.where(self.temperature[rows] > 0, race.argmax(dim=-1), tokens)
        self.generated[rows] += 1
        if needs.penalties:
            counts, _ = self._penalty_tables()
            counts.index_put_((rows, tokens), torch.ones_like(tokens, dtype=counts.dtype), accumulate=True)
        columns = [tokens.double(), logprobs.gather(1, tokens.unsqueeze(1))[:, 0].double(), finite.double()]
        packed = torch.stack(columns, dim=1)
        if needs.top_logprobs:
            top = logprobs.topk(needs.top_logprobs, dim=-1)
            packed = torch.cat([packed, top.indices.double(), top.values.double()], dim=1)
        return tokens, packed
