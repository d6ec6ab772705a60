"""A continuous-batching engine: many requests, each with its own adapter (PARA, LoRA or none), every step.

Each ``step()`` asks the scheduler what to run, prefills the admitted prompts together in one packed pass
(computing each PARA prompt's vectors from its own prompt), decodes one token for every running sequence
(replayed from a CUDA graph on a GPU), samples every row's token on the device in one batch, and moves the
results to the host once.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..adapter_io import AdapterLoadError
from ..architectures import arch_spec, layer_dims
from ..config import CONFIG_NAME, ParaConfig
from ..model import BASE_ADAPTER, ParaModel
from .adapters import LoraAdapters, ParaAdapters, RowAdapters, check_adapter_name
from .adapters.lora import read_lora
from .batch import DecodeBatch, PrefillBatch, PrefillBucket, build_prefill
from .block_manager import BlockManager
from .config import EngineConfig
from .errors import AdapterExists, AdapterInUse, BadRequest, ConfigError, UnknownAdapter
from .executor import Executor, plain
from .grammar import Grammars
from .graphs import DecodeGraphs, PrefillGraphs
from .kv_cache import PagedKVCache
from .sampler import BatchNeeds, Sampler
from .sampling import SamplingParams
from .scheduler import Scheduler
from .sequence import Request
from .transfer import to_device

@dataclass
class PendingStep:
    """A launched step whose results are on their way to the host."""

    requests: list[Request]
    needs: BatchNeeds
    results: torch.Tensor  # [rows, 3 + 2k] float64 on the device, being computed
    prefilled: int = 0  # prompt tokens its prefill pass ran
    launched: float = field(default_factory=time.perf_counter)
    # With overlap_steps, the results' copy to pinned host memory, queued right after the step's work, and
    # the event that marks it done: a blocking copy taken later would wait for the next step's work too.
    host: torch.Tensor | None = None
    copied: torch.cuda.Event | None = None


NON_FINITE = "the model's output for this request is not finite (NaN or infinite logits), so no token can be drawn"


def _projection_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    from ..architectures import decoder_layers
    from .adapters.lora import MODULES

    layer = decoder_layers(model)[0]
    shapes = {}
    for target, path in MODULES.items():
        module = plain(layer.get_submodule(path))
        shapes[target] = (module.in_features, module.out_features)
    return shapes


class Engine:
    def __init__(self, model: nn.Module, config: EngineConfig | None = None, eos_token_ids: set[int] | None = None,
                 tokenizer=None, **options):
        """``model``: a HF causal LM, or a ``ParaModel`` whose adapters the engine then serves too.
        ``tokenizer``: the model's, needed only for structured output (``SamplingParams.response_format``).
        ``options`` are ``EngineConfig`` fields, for when no ``config`` is given."""
        if config is not None and options:
            raise ConfigError(f"pass either a config or options, not both ({', '.join(options)})")
        self.config = config = config or EngineConfig(**options)
        source = model if isinstance(model, ParaModel) else None
        backbone = source.base_model if source is not None else model
        backbone.eval()
        if source is not None:
            model_type, dims = source.model_type, source.dims
        else:
            model_type, spec = arch_spec(backbone)
            dims = layer_dims(backbone, spec)
        weight = backbone.get_input_embeddings().weight
        dtype, self.device = weight.dtype, weight.device
        if config.cuda_graphs and self.device.type != "cuda":
            raise ConfigError("CUDA graphs need the model on a CUDA device")
        self.para = ParaAdapters(model_type, dims, config.device_adapters, config.max_seqs, dtype, self.device)
        self.lora = LoraAdapters(_projection_shapes(backbone), dims["num_layers"], config.lora_rank,
                                 config.device_adapters, config.max_seqs, dtype, self.device)
        self.kinds: list[RowAdapters] = [self.para, self.lora]
        self.executor = Executor(backbone, config, lambda *shape: PagedKVCache(config, *shape), self.kinds)
        self.para.fused = self.lora.fused = self.executor.ops.name == "triton"
        self.cache = self.executor.cache
        self.vocab = self.executor.vocab
        self.blocks = BlockManager(self.cache.num_blocks, config.block_size)
        self.scheduler = Scheduler(config, self.blocks, self.cache, self._adapters_fit, self._release_adapters)
        self.sampler = Sampler(config.max_seqs, self.vocab, self.device)
        graphs = self.device.type == "cuda" if config.cuda_graphs is None else config.cuda_graphs
        self.graphs = DecodeGraphs(self.executor, config.max_seqs) if graphs else None
        self.prefill_graphs = None
        if graphs and self.executor.ops.name == "triton" and config.prefill_graph_tokens:
            self.prefill_graphs = PrefillGraphs(self.executor, config.prefill_graph_tokens, config.max_seqs)
        generation = backbone.generation_config
        eos = generation.eos_token_id if generation is not None else None
        self.eos = eos_token_ids if eos_token_ids is not None else set(
            eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self._seeds = random.Random(config.seed)
        self.tokenizer = tokenizer
        self._grammars: Grammars | None = None  # compiled on the first request with a response_format
        self.peak_batch = (0, 0)  # (rows, distinct adapters) of the decoding step that mixed the most adapters
        self.peak_kinds = (0, 0)  # (kinds of row: bare, PARA, LoRA; rows) of the step that mixed the most kinds
        self.steps = 0
        self.in_flight = 0  # launched steps not yet finished (at most 2, with launch_ahead)
        self.steps_ahead = 0  # steps launched before the previous one's results were taken
        if source is not None:
            for name in source.peft_config:
                self.para.add(name, source.peft_config[name], source.adapter_state_dict(name))

    # ------------------------------------------------------------------ state
    @property
    def max_len(self) -> int:
        return self.config.max_len

    @property
    def waiting(self):
        return self.scheduler.waiting

    @property
    def running(self) -> list[Request]:
        return self.scheduler.running

    @property
    def free_rows(self) -> list[int]:
        return self.scheduler.free_rows

    def stats(self) -> dict:
        return {"running": len(self.running), "waiting": len(self.waiting), "free_rows": len(self.free_rows),
                "kv_blocks_total": self.blocks.num_blocks, "kv_blocks_free": self.blocks.free,
                "preemptions": self.scheduler.preemptions, "adapters_loaded": len(self.adapter_names()),
                "peak_batch_rows": self.peak_batch[0], "peak_batch_adapters": self.peak_batch[1],
                "peak_kinds": self.peak_kinds[0], "peak_kinds_rows": self.peak_kinds[1], "steps_ahead": self.steps_ahead}

    # --------------------------------------------------------------- adapters
    def kind_of(self, name: str) -> RowAdapters | None:
        return next((kind for kind in self.kinds if name in kind), None)

    def adapter_names(self) -> list[str]:
        return [name for kind in self.kinds for name in kind.names()]

    def adapter_info(self, name: str) -> dict:
        kind = self.kind_of(name)
        if kind is None:
            raise UnknownAdapter(f"unknown adapter {name!r}")
        return kind.info(name)

    def _kind_in(self, directory) -> RowAdapters:
        try:
            peft_type = str(json.loads((Path(directory) / CONFIG_NAME).read_text()).get("peft_type", "")).upper()
        except (OSError, ValueError, AttributeError) as err:
            raise AdapterLoadError(f"cannot read {CONFIG_NAME} in {directory}: {err}") from err
        kinds = {"PARA": self.para, "LORA": self.lora}
        if peft_type not in kinds:
            raise AdapterLoadError(f"{directory}: peft_type {peft_type!r} is not served (PARA or LORA)")
        return kinds[peft_type]

    def load_adapter(self, name: str, directory) -> dict:
        """Register a saved PARA or peft LoRA adapter (its kind read from ``adapter_config.json``)."""
        check_adapter_name(name)
        if self.kind_of(name) is not None:
            raise AdapterExists(f"adapter {name!r} is already loaded")
        kind = self._kind_in(directory)
        kind.register(name, directory)
        return kind.info(name)

    def add_adapter(self, name: str, config: ParaConfig, tensors: dict[str, torch.Tensor]) -> dict:
        """Register a PARA adapter from tensors in memory."""
        if self.kind_of(name) is not None:
            raise AdapterExists(f"adapter {name!r} is already loaded")
        self.para.add(name, config, tensors)
        return self.para.info(name)

    def validate_adapter(self, directory) -> dict:
        """Check a saved adapter against the backbone without loading it."""
        kind = self._kind_in(directory)
        if kind is self.para:
            config, tensors = self.para.read(directory)
            return {"kind": "para", "parameters": sum(t.numel() for t in tensors.values()),
                    "base_model": config.base_model_name_or_path or ""}
        entry = read_lora(directory, self.lora.shapes, self.lora.layers)
        if entry.rank > self.lora.max_rank:
            raise AdapterLoadError(f"LoRA rank {entry.rank} is above the engine's maximum {self.lora.max_rank}")
        return {"kind": "lora", "parameters": entry.parameters, "base_model": entry.base_model}

    def unload_adapter(self, name: str) -> None:
        kind = self.kind_of(name)
        if kind is None:
            raise UnknownAdapter(f"unknown adapter {name!r}")
        waiting = sum(r.adapter == name for r in self.waiting)
        if waiting:
            raise AdapterInUse(f"adapter {name!r} has {waiting} waiting requests")
        kind.unregister(name)

    def _adapters_fit(self, requests: list[Request]) -> bool:
        para = {r.adapter for r in requests if r.kind == "para"}
        lora = {r.adapter for r in requests if r.kind == "lora"}
        return len(para) <= self.para.capacity and self.lora.can_make_resident(lora)

    def _release_adapters(self, request: Request) -> None:
        for kind in self.kinds:
            kind.release_row(request.row, request.adapter if request.kind == kind.kind else None)

    # --------------------------------------------------------------- requests
    def submit(self, prompt: list[int], adapter: str = BASE_ADAPTER, sampling: SamplingParams | None = None) -> Request:
        sampling = sampling or SamplingParams()
        sampling.validate(self.vocab)
        if not prompt:
            raise BadRequest("the prompt is empty")
        if any(not isinstance(t, int) or not 0 <= t < self.vocab for t in prompt):
            raise BadRequest(f"prompt token ids must be integers in [0, {self.vocab})")
        adapter = adapter or BASE_ADAPTER
        if adapter != BASE_ADAPTER and self.kind_of(adapter) is None:
            known = self.adapter_names()
            raise UnknownAdapter(f"unknown adapter {adapter!r}; loaded: {', '.join(known) or 'none'}")
        total = len(prompt) + sampling.max_tokens
        if total > self.max_len:
            raise BadRequest(f"prompt ({len(prompt)} tokens) + max_tokens ({sampling.max_tokens}) exceeds the "
                             f"context of {self.max_len}")
        if total > self.cache.tokens:
            raise BadRequest(f"prompt + max_tokens ({total}) exceeds the KV cache ({self.cache.tokens} tokens)")
        request = Request(list(prompt), adapter, sampling)
        if sampling.response_format is not None:
            request.matcher = self.grammars.matcher(sampling.response_format)
        kind = self.kind_of(adapter) if adapter != BASE_ADAPTER else None
        request.kind = kind.kind if kind is not None else None
        request.seed = sampling.seed if sampling.seed is not None else self._seeds.getrandbits(63)
        if kind is not None:
            kind.hold(adapter)  # until the request ends (_finish), even through an unload and a preemption
        self.scheduler.waiting.append(request)
        return request

    @property
    def grammars(self) -> Grammars:
        if self._grammars is None:
            if self.tokenizer is None:
                raise BadRequest("structured output (response_format) needs an engine built with its tokenizer",
                                 "response_format")
            self._grammars = Grammars(self.tokenizer, self.vocab, self.config.max_seqs, self.device)
        return self._grammars

    def cancel(self, request: Request) -> None:
        self._finish(request, "cancelled")

    def run_until_done(self) -> None:
        while self.waiting or self.running:
            self.step()

    def capture_graphs(self, para: bool = True, lora: bool = False) -> int:
        """Record the CUDA graphs now (else each on first use): the decoding step's for every batch bucket, and
        the prefill pass's for every token bucket, with PARA and LoRA prompts too where asked and an adapter
        of the kind is registered. Returns how many graphs there are."""
        if self.graphs is None:
            return 0
        # the tables first: graphs hold their addresses, and widening them later would outdate the graphs
        kinds = [kind for kind, wanted in ((self.para, para), (self.lora, lora)) if wanted and kind.reserve_tables()]
        self.graphs.capture_all(para, lora)
        count = len(self.graphs.graphs)
        if self.prefill_graphs is not None:
            mixes = [[kind for kind, chosen in zip(kinds, pick) if chosen]
                     for pick in itertools.product((False, True), repeat=len(kinds))]
            for bucket in reversed(self.prefill_graphs.buckets):  # largest first: the others fit in its pool
                for mix in mixes:
                    batch = self._template_batch(bucket, mix)
                    self.prefill_graphs(batch, self.prefill_graphs.inputs(batch))
            self.cache.seq_lens[self.cache.scratch_row] = 0
            count += len(self.prefill_graphs.graphs)
        return count

    # ------------------------------------------------------------------- loop
    @torch.no_grad()
    def step(self) -> list[Request]:
        """Admit, prefill, decode one token for every running request; returns the requests that got a token
        or finished."""
        return self.finish(self.launch())

    @torch.no_grad()
    def launch(self) -> PendingStep | None:
        """The first half of a step: schedule it and queue all of its GPU work (passes, sampling), without
        waiting for it. ``finish`` takes the results; in between the host is free (the service detokenises and
        streams the previous step's tokens then). Nothing else may be launched before ``finish``, but for one
        ``launch_ahead``."""
        if self.in_flight:
            raise RuntimeError("a step is still in flight: finish it first (or launch_ahead)")
        return self._launch(self.scheduler.schedule())

    @torch.no_grad()
    def launch_ahead(self, pending: PendingStep | None) -> PendingStep | None:
        """Launch the next step while ``pending``'s results are still on their way (``overlap_steps``), so that
        the host's work on ``pending`` (``finish``) overlaps the GPU's next step. Every row of ``pending``
        decodes again unless ``pending`` gives its last token by length; a row that ``pending`` ends otherwise
        (end of sequence, an error, a cancellation) decodes once more for nothing, and that result is dropped.
        Its inputs are on the device already: each row's last token, position and block table.

        None, with nothing launched, when the next step needs ``pending``'s tokens on the host first: a row
        under a grammar (its mask), a re-prefilled sequence (its next token is already known), or a step that
        would preempt. Then ``finish(pending)`` and ``launch()``."""
        if pending is None or not self.config.overlap_steps or self.in_flight != 1:
            return None
        if any(r.matcher is not None or r.recompute for r in pending.requests if not r.finished):
            return None
        plan = self.scheduler.schedule(ahead=True)
        if plan is None:
            return None
        launched = self._launch(plan)
        if launched is not None:
            self.steps_ahead += 1
        return launched

    def _launch(self, plan) -> PendingStep | None:
        self.cache.flush()
        parts = []
        # The decoding pass first: it needs little from the host (the rows), so the GPU runs it while the host
        # builds the prefill pass (packing, adapter loads, per-prompt tables), which would otherwise leave it
        # idle. The two passes touch different rows, so their order changes no result.
        if plan.decode:
            parts.append((plan.decode, *self._decode(plan.decode)))
        if plan.prefill:
            ordered = sorted(plan.prefill, key=lambda r: -len(r.prefill_tokens()))
            parts.append((ordered, *self._prefill(ordered)))
        if not parts:
            return None
        requests = [r for part in parts for r in part[0]]
        logits = torch.cat([part[1] for part in parts]) if len(parts) > 1 else parts[0][1]
        rows = torch.cat([part[2] for part in parts]) if len(parts) > 1 else parts[0][2]
        needs = BatchNeeds.of([r.sampling for r in requests])
        # Filled on the host while the GPU runs the passes queued above.
        constraint = self._grammars.bitmask([r.matcher for r in requests], self.device) if self._grammars else None
        constrain = (lambda scores: self._grammars.apply(scores, constraint)) if constraint is not None else None
        tokens, packed = self.sampler.sample(logits, rows, needs, constrain)
        self.cache.last_tokens.index_copy_(0, rows, tokens)
        prefilled = sum(len(r.prefill_tokens()) for r in plan.prefill)
        step = PendingStep(requests, needs, packed, prefilled)
        if self.config.overlap_steps and self.device.type == "cuda":
            step.host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
            step.host.copy_(packed, non_blocking=True)
            step.copied = torch.cuda.Event()
            step.copied.record(torch.cuda.current_stream(self.device))
        for request in requests:
            request.in_flight += 1
        self.in_flight += 1
        return step

    def finish(self, pending: PendingStep | None) -> list[Request]:
        """The second half of a step: wait for its results and apply them (tokens, stops, finished requests)."""
        if pending is None:
            return []
        try:
            if pending.copied is not None:  # overlap_steps: the copy queued at launch, not one behind the next step
                pending.copied.synchronize()
                results = pending.host.tolist()
            else:
                # One blocking copy of the whole step's results. (A non-blocking copy to a pinned buffer with an
                # event wait measured worse on the H200 trace at 256/s, one step at a time: 7-14 ms per output
                # token against 3.3-3.7.)
                results = pending.results.cpu().tolist()
        finally:
            self.drop(pending)
        touched = [r for r, values in zip(pending.requests, results) if self._accept(r, values, pending.needs)]
        self.steps += 1
        return touched

    def drop(self, pending: PendingStep) -> None:
        """Forget a launched step without taking its results (``finish`` calls it; after a failure, the caller
        calls it for a step it will not finish)."""
        self.in_flight -= 1
        for request in pending.requests:
            request.in_flight -= 1

    def _prefill(self, ordered: list[Request]):
        bucket = None
        if self.prefill_graphs is not None and all(
                kind.graphable([r.adapter if r.kind == kind.kind else None for r in ordered]) for kind in self.kinds):
            bucket = self.prefill_graphs.bucket(sum(len(r.prefill_tokens()) for r in ordered), len(ordered))
        batch = self._prefill_batch(ordered, bucket)
        inputs = self.prefill_graphs.inputs(batch) if bucket is not None else None
        logits = self.prefill_graphs(batch, inputs) if inputs is not None else self.executor.prefill(batch)
        return logits[:batch.prompts], batch.rows[:batch.prompts]

    def _prefill_batch(self, ordered: list[Request], bucket: PrefillBucket | None) -> PrefillBatch:
        """The pass's batch (padded to ``bucket``), with every adapter kind's state prepared and rows assigned."""
        batch = build_prefill([(r.row, r.prefill_tokens(), len(r.prompt)) for r in ordered], self.cache, self.device,
                              fused=self.executor.ops.name == "triton", bucket=bucket)
        padding = [None] * (len(batch.rows_host) - len(ordered))
        for kind in self.kinds:
            names = [r.adapter if r.kind == kind.kind else None for r in ordered]
            kind.prepare_prefill(batch, names + padding)
            kind.assign_rows(batch.rows_host[:len(ordered)], names)
        batch.para = any(r.kind == "para" for r in ordered)
        batch.lora = any(r.kind == "lora" for r in ordered)
        self.sampler.assign([(r.row, r.sampling, r.seed, r.prompt, r.tokens) for r in ordered])
        return batch

    def _template_batch(self, bucket: PrefillBucket, kinds: list[RowAdapters]) -> PrefillBatch:
        """A pass to record a prefill graph from: one token on the scratch row, so it writes only the scratch row
        and block, with a state of each of ``kinds`` whose prompts all read its all-zero slot."""
        batch = build_prefill([(self.cache.scratch_row, [0], 1)], self.cache, self.device,
                              fused=self.executor.ops.name == "triton", bucket=bucket)
        for kind in kinds:
            kind.prepare_template(batch)
        batch.para, batch.lora = self.para in kinds, self.lora in kinds
        return batch

    def _decode(self, decoding: list[Request]):
        rows = to_device([r.row for r in decoding], self.device)  # the step's prefill pass may be queued already
        para = any(r.kind == "para" for r in decoding)
        lora = any(r.kind == "lora" for r in decoding)
        distinct = len({r.adapter for r in decoding} - {BASE_ADAPTER})
        self.peak_batch = max(self.peak_batch, (len(decoding), distinct), key=lambda p: (p[1], p[0]))
        self.peak_kinds = max(self.peak_kinds, (len({r.kind for r in decoding}), len(decoding)))
        if self.graphs is not None:
            return self.graphs(rows, para, lora), rows
        width = max(self.blocks.blocks_for(r.cached_tokens + r.in_flight + 1) for r in decoding)  # (a step ahead)
        return self.executor.decode(DecodeBatch(rows, para, lora), max_blocks=width), rows

    def _accept(self, request: Request, values: list[float], needs: BatchNeeds) -> bool:
        if request.finished:
            return False
        if not values[2]:
            request.error = NON_FINITE
            self._finish(request, "error")
            return True
        if request.recompute:  # the prefill rebuilt its cache; its next token is already known
            request.recompute = False
            self.sampler.assign([(request.row, request.sampling, request.seed, request.prompt, request.tokens)])
            self.cache.last_tokens[request.row] = request.tokens[-1]
            return False
        token = int(values[0])
        request.tokens.append(token)
        request.logprobs.append(values[1])
        if request.sampling.top_logprobs:
            k, width = request.sampling.top_logprobs, needs.top_logprobs
            request.top_logprobs.append([(int(values[3 + j]), values[3 + width + j]) for j in range(k)])
        params = request.sampling
        if request.matcher is not None and not request.matcher.accept_token(token):
            request.error = f"token {token} breaks the request's response_format grammar"
            self._finish(request, "error")
        elif request.matcher is not None and request.matcher.is_terminated():
            self._finish(request, "stop")  # the grammar is complete (the end-of-sequence token it allows was drawn)
        elif token in self.eos and not params.ignore_eos:
            self._finish(request, "stop")
        elif len(request.tokens) >= params.max_tokens:
            self._finish(request, "length")
        return True

    def _finish(self, request: Request, reason: str) -> None:
        if request.finished:
            return
        request.finish_reason = reason
        self.scheduler.remove(request)
        kind = next((kind for kind in self.kinds if kind.kind == request.kind), None)
        if kind is not None:
            kind.let_go(request.adapter)
