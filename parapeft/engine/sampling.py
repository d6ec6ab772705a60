"""What a request asks of the sampler, checked before it reaches a step."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import BadRequest
from .grammar import ResponseFormat

MAX_TOP_LOGPROBS = 20


@dataclass
class SamplingParams:
    max_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = no limit
    seed: int | None = None  # None: the engine draws one (its own seed makes whole runs reproducible)
    ignore_eos: bool = False
    presence_penalty: float = 0.0  # OpenAI: minus this for every token already generated
    frequency_penalty: float = 0.0  # OpenAI: minus this times the token's count in the output
    repetition_penalty: float = 1.0  # transformers/vLLM: prompt and output tokens' logits divided (or multiplied)
    logit_bias: dict[int, float] = field(default_factory=dict)  # token id -> added to its logit
    top_logprobs: int = 0  # the most likely alternatives returned with each token (at most 20)
    response_format: ResponseFormat | None = None  # structured output: tokens masked by a grammar

    @property
    def penalised(self) -> bool:
        return bool(self.presence_penalty or self.frequency_penalty or self.repetition_penalty != 1.0)

    def validate(self, vocab_size: int | None = None) -> None:
        def number(name: str, value, low: float, high: float, low_open: bool = False) -> None:
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise BadRequest(f"{name} must be a finite number, got {value!r}")
            if value < low or value > high or (low_open and value == low):
                raise BadRequest(f"{name} must be in {'(' if low_open else '['}{low}, {high}], got {value}")

        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise BadRequest(f"max_tokens must be at least 1, got {self.max_tokens}")
        number("temperature", self.temperature, 0.0, 100.0)
        number("top_p", self.top_p, 0.0, 1.0, low_open=True)
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise BadRequest(f"top_k must be >= 0, got {self.top_k}")
        if self.seed is not None and (not isinstance(self.seed, int) or not 0 <= self.seed < 2 ** 64):
            raise BadRequest(f"seed must be an integer in [0, 2^64), got {self.seed!r}")
        number("presence_penalty", self.presence_penalty, -2.0, 2.0)
        number("frequency_penalty", self.frequency_penalty, -2.0, 2.0)
        number("repetition_penalty", self.repetition_penalty, 0.0, 10.0, low_open=True)
        if not isinstance(self.top_logprobs, int) or not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS:
            raise BadRequest(f"top_logprobs must be in [0, {MAX_TOP_LOGPROBS}], got {self.top_logprobs}")
        for token, bias in self.logit_bias.items():
            if not isinstance(token, int) or token < 0 or (vocab_size is not None and token >= vocab_size):
                raise BadRequest(f"logit_bias token ids must lie in [0, {vocab_size}), got {token!r}", "logit_bias")
            number(f"logit_bias[{token}]", bias, -100.0, 100.0)
        if self.response_format is not None:
            self.response_format.validate()
