"""A continuous-batching engine: many requests, each with its own PARA adapter, in every decoding step.

Each ``step()`` admits waiting requests into free KV-cache slots (one prefill
pass per prompt, which also computes the prompt's PARA vectors), then runs one
decoding step for every running request together, samples one token per
request and retires the finished ones, freeing their slots at once.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from ..model import BASE_ADAPTER, ParaModel
from .adapter_store import AdapterStore
from .decoder import GraphedStep, SlotDecoder
from .sampling import SamplingParams, sample


class EngineError(ValueError):
    """A request the engine refuses (unknown adapter, empty or over-long prompt, bad sampling values)."""


@dataclass
class Request:
    prompt: list[int]
    adapter: str = BASE_ADAPTER
    sampling: SamplingParams = field(default_factory=SamplingParams)
    id: int = 0
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    slot: int | None = None
    finish_reason: str | None = None
    generator: torch.Generator | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


class Engine:
    def __init__(self, para: ParaModel, slots: int = 16, max_len: int = 1024, eos_token_ids: set[int] | None = None,
                 device_adapters: int = 64, cuda_graphs: bool | None = None, lora_rank: int = 0,
                 compile: bool = False, prefill_tokens_per_step: int = 2048, fused: bool | None = None):
        self.para = para.eval()
        self.adapters = AdapterStore(para, device_adapters)
        self.loras: dict[str, dict] = {}  # LoRA mode: name -> per-layer (A, scaled B), on the device
        # fused: the decoding step's Triton kernels (default: on a CUDA device with Triton installed)
        self.decoder = SlotDecoder(para.base_model, slots, max_len, lora_rank=lora_rank, fused=fused)
        on_gpu = self.decoder.keys.is_cuda
        if cuda_graphs and not on_gpu:
            raise EngineError("CUDA graphs need the model on a CUDA device")
        # On a GPU the decoding step is replayed from CUDA graphs (one per batch bucket); eager elsewhere.
        graphs = on_gpu if cuda_graphs is None else cuda_graphs
        if compile and not graphs:
            raise EngineError("compile applies to the CUDA-graph decoding step (a CUDA device)")
        self._decode = GraphedStep(self.decoder, slots, compile=compile) if graphs else self.decoder.step
        self.max_len = max_len
        self.slots = slots
        # Prompt tokens admitted per step (at least one prompt): a burst of arrivals is prefilled over several
        # steps, so the running requests keep getting tokens in between.
        self.prefill_tokens_per_step = prefill_tokens_per_step
        self.peak_batch = (0, 0)  # (rows, distinct adapters) of the decoding step that mixed the most adapters
        self.free_slots = list(range(slots))
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        config = para.base_model.generation_config
        eos = config.eos_token_id if config is not None else None
        self.eos = eos_token_ids if eos_token_ids is not None else set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self._ids = itertools.count()
        self.device = para.base_model.get_input_embeddings().weight.device

    # --------------------------------------------------------------- requests
    def register_lora(self, name: str, directory) -> None:
        """Add a peft LoRA adapter (q, v) served by the LoRA mode, side by side with PARA adapters."""
        from .lora import read_lora

        if not self.decoder.lora_rank:
            raise EngineError("this engine has no LoRA mode (start it with lora_rank > 0)")
        if name in self.loras or name in self.adapters:
            raise EngineError(f"adapter {name!r} is already loaded")
        weights = read_lora(directory, len(self.decoder.layers))
        dtype, device = self.decoder.keys.dtype, self.decoder.keys.device
        self.loras[name] = {key: (a.to(device, dtype), b.to(device, dtype)) for key, (a, b) in weights.items()}
        if max(a.shape[0] for a, _ in self.loras[name].values()) > self.decoder.lora_rank:
            del self.loras[name]
            raise EngineError(f"LoRA adapter {name!r} has a rank above the engine's maximum {self.decoder.lora_rank}")

    def submit(self, prompt: list[int], adapter: str = BASE_ADAPTER, sampling: SamplingParams | None = None) -> Request:
        sampling = sampling or SamplingParams()
        sampling.validate()
        if not prompt:
            raise EngineError("the prompt is empty")
        if adapter != BASE_ADAPTER and adapter not in self.adapters and adapter not in self.loras:
            known = self.adapters.names() + list(self.loras)
            raise EngineError(f"unknown adapter {adapter!r}; loaded: {', '.join(known) or 'none'}")
        if len(prompt) + sampling.max_tokens > self.max_len:
            raise EngineError(f"prompt ({len(prompt)} tokens) + max_tokens ({sampling.max_tokens}) exceeds the context of {self.max_len}")
        request = Request(list(prompt), adapter, sampling, id=next(self._ids))
        if sampling.seed is not None:
            request.generator = torch.Generator(device=self.device).manual_seed(sampling.seed)
        self.waiting.append(request)
        return request

    def cancel(self, request: Request) -> None:
        if request in self.waiting:
            self.waiting.remove(request)
        self._finish(request, "cancelled")

    # ------------------------------------------------------------------- loop
    @torch.no_grad()
    def step(self) -> list[Request]:
        """Admit, decode one token for every running request; returns the requests that got a token."""
        touched = []
        budget = self.prefill_tokens_per_step
        while self.waiting and self.free_slots and (not touched or len(self.waiting[0].prompt) <= budget):
            request = self.waiting.popleft()
            budget -= len(request.prompt)
            self._prefill(request)
            touched.append(request)
        decoding = [r for r in self.running if not r.finished and r not in touched]
        if decoding:
            slots = torch.tensor([r.slot for r in decoding], device=self.device)
            tokens = torch.tensor([r.tokens[-1] for r in decoding], device=self.device)
            where = [len(r.prompt) + len(r.tokens) - 1 for r in decoding]
            positions = torch.tensor(where, device=self.device)
            logits = self._decode(slots, tokens, positions, length=max(where) + 1)
            adapters = len({r.adapter for r in decoding} - {BASE_ADAPTER})
            self.peak_batch = max(self.peak_batch, (len(decoding), adapters), key=lambda p: (p[1], p[0]))
            for request, row in zip(decoding, logits):
                self._accept(request, row)
            touched += decoding
        return touched

    def run_until_done(self) -> None:
        while self.waiting or self.running:
            self.step()

    def _prefill(self, request: Request) -> None:
        request.slot = self.free_slots.pop(0)
        if request.adapter in self.loras:  # LoRA mode: the decoder prefills with the slot's own matrices
            self.decoder.set_lora(request.slot, self.loras[request.adapter])
            self.running.append(request)
            self._accept(request, self.decoder.prefill(request.slot, request.prompt)[0])
            return
        if request.adapter != BASE_ADAPTER:
            self.adapters.acquire(request.adapter)  # from CPU memory if it was evicted: milliseconds, between steps
        ids = torch.tensor([request.prompt], device=self.device)
        cache = DynamicCache(config=self.para.base_model.config)
        out = self.para(input_ids=ids, adapter_names=[request.adapter], past_key_values=cache, use_cache=True,
                        logits_to_keep=1)  # only the last position's logits are sampled from
        vectors = self.para.last_vectors() if request.adapter != BASE_ADAPTER else None
        self.decoder.load_slot(request.slot, out.past_key_values, len(request.prompt), vectors)
        self.running.append(request)
        self._accept(request, out.logits[0, -1].float())

    def _accept(self, request: Request, logits: torch.Tensor) -> None:
        token, logprob = sample(logits, request.sampling, request.generator)
        request.tokens.append(token)
        request.logprobs.append(logprob)
        params = request.sampling
        if token in self.eos and not params.ignore_eos:
            self._finish(request, "stop")
        elif len(request.tokens) >= params.max_tokens:
            self._finish(request, "length")

    def _finish(self, request: Request, reason: str) -> None:
        if request.finished:
            return
        request.finish_reason = reason
        if request in self.running:
            self.running.remove(request)
        if request.slot is not None:
            self.free_slots.append(request.slot)
            request.slot = None
