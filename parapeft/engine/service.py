"""The engine behind a thread: requests come from many client threads, one loop drives ``Engine.step``.

Each request gets a queue of events (new tokens with their text, then the end);
text is detokenised incrementally and stop strings are applied here, on text.
"""

from __future__ import annotations

import queue
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import CONFIG_NAME, WEIGHTS_NAME
from ..model import BASE_ADAPTER
from ..tasks import prompt_token_ids
from .config import EngineConfig
from .engine import Engine
from .errors import BadRequest, EngineStopped
from .metrics import EngineMetrics
from .sampling import SamplingParams
from .sequence import Request


@dataclass
class Event:
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    finish_reason: str = ""  # "stop", "length", "cancelled"; "error" when the request failed ("failed" the engine)
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class _Stream:
    request: Request
    stop: list[str]
    events: "queue.Queue[Event]" = field(default_factory=queue.Queue)
    sent_tokens: int = 0
    sent_text: str = ""


class EngineService:
    def __init__(self, model, tokenizer, model_name: str, config: EngineConfig | None = None):
        """``model``: the backbone or a ``ParaModel`` (whose adapters are served too)."""
        self.engine = Engine(model, config or EngineConfig(), tokenizer=tokenizer)
        self.metrics = EngineMetrics(self.engine)
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.streams: dict[int, _Stream] = {}
        self.finished = 0
        self.tokens_generated = 0
        self.serving = True
        self.failure: Exception | None = None  # what broke the engine loop for good, if anything did
        self.thread = threading.Thread(target=self._loop, name="engine-loop", daemon=True)
        self.thread.start()

    @property
    def healthy(self) -> bool:
        """Taking requests, with the loop that steps the engine running (Health reports this)."""
        return self.serving and self.thread.is_alive()

    def capture_graphs(self) -> int:
        """Record the CUDA graphs now, before the first request, so that none waits for a capture (a capture
        synchronises the device and empties the allocator's cache): the decoding step's and the prefill pass's,
        for the adapter kinds registered so far; anything else is recorded on first use. None on a CPU."""
        with self.lock:  # the engine loop steps under this lock
            engine = self.engine
            return engine.capture_graphs(para=bool(engine.para.names()), lora=bool(engine.lora.names()))

    # --------------------------------------------------------------- requests
    def encode(self, prompt: str | None = None, chat: list[dict] | None = None, ids: list[int] | None = None) -> list[int]:
        if ids is not None:
            vocab = len(self.tokenizer)
            if any(not 0 <= i < vocab for i in ids):
                raise BadRequest(f"prompt token ids must lie in [0, {vocab})")
            return list(ids)
        if chat is not None:
            if not chat or any(m.get("role") not in ("system", "user", "assistant") for m in chat):
                raise BadRequest("chat messages need roles system, user or assistant")
            text = self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            return self.tokenizer(text, add_special_tokens=False).input_ids
        if not prompt:
            return []  # refused by the engine as empty (not turned into a lone beginning-of-sequence token)
        # raw text: with the tokenizer's own leading special token, as training gives a model without a chat template
        return prompt_token_ids(self.tokenizer, prompt, templated=False)

    def submit(self, prompt_ids: list[int], adapter: str, sampling: SamplingParams, stop: list[str]) -> _Stream:
        with self.lock:
            if not self.healthy:
                raise EngineStopped("the engine is not serving (its loop failed or it is shutting down)")
            request = self.engine.submit(prompt_ids, adapter or BASE_ADAPTER, sampling)
            stream = _Stream(request, [s for s in stop if s])
            self.streams[request.id] = stream
        self.wake.set()
        return stream

    def cancel(self, stream: _Stream) -> None:
        with self.lock:
            if not stream.request.finished:
                self.engine.cancel(stream.request)
                self._publish(stream)

    # ---------------------------------------------------------------- adapters
    def load_adapter(self, name: str, path: str | None = None, config_json: bytes | None = None,
                     weights: bytes | None = None, validate_only: bool = False) -> dict:
        """Load a PARA or LoRA adapter from a directory, or from its two files' bytes (written to a private
        temporary directory, read into memory, then removed). ``validate_only`` checks it against the backbone
        and returns its info without loading it."""
        if not path:
            if not config_json or not weights:
                raise BadRequest("give the adapter's path, or both its config JSON and its weights")
            with tempfile.TemporaryDirectory(prefix="para-adapter-") as tmp:
                (Path(tmp) / CONFIG_NAME).write_bytes(config_json)
                (Path(tmp) / WEIGHTS_NAME).write_bytes(weights)
                return self.load_adapter(name, tmp, validate_only=validate_only)
        if validate_only:
            return {"name": name, **self.engine.validate_adapter(path)}
        with self.lock:
            return self.engine.load_adapter(name, path)

    def unload_adapter(self, name: str) -> None:
        with self.lock:
            self.engine.unload_adapter(name)

    def adapters(self) -> list[dict]:
        with self.lock:
            return [self.engine.adapter_info(n) for n in self.engine.adapter_names()]

    def stats(self) -> dict:
        # Without the lock: a step can hold it for a while (a large prefill), and health checks must not wait for
        # it. Each figure is read atomically; together they may straddle one step.
        stats = self.engine.stats()
        return {"running": stats["running"], "waiting": stats["waiting"], "free_slots": stats["free_rows"],
                "requests_finished": self.finished, "tokens_generated": self.tokens_generated,
                "adapters_loaded": stats["adapters_loaded"], "peak_batch_rows": stats["peak_batch_rows"],
                "peak_batch_adapters": stats["peak_batch_adapters"], "kv_blocks_total": stats["kv_blocks_total"],
                "kv_blocks_free": stats["kv_blocks_free"], "preemptions": stats["preemptions"],
                "peak_kinds": stats["peak_kinds"], "peak_kinds_rows": stats["peak_kinds_rows"]}

    # -------------------------------------------------------------------- loop
    def _loop(self) -> None:
        """Steps back to back. Each iteration takes the results of the step in flight, launches the next one,
        and only then detokenises and streams the results it took: the host's text work overlaps the GPU's
        next step. With ``overlap_steps`` the next step is launched before the results are taken, so the
        engine's own bookkeeping overlaps it too."""
        pending = None
        while self.serving:
            if pending is None:
                self.wake.wait(timeout=0.1)
            with self.lock:
                ahead, taken, taking = None, False, pending
                try:
                    ahead = self.engine.launch_ahead(pending)
                    taken = True  # finish drops its step even when it fails
                    touched = self.engine.finish(pending)
                    if pending is not None:
                        self.metrics.step(time.perf_counter() - pending.launched, pending.prefilled > 0)
                    pending, ahead = ahead, None
                    if pending is None and (self.engine.waiting or self.engine.running):
                        pending = self.engine.launch()
                    for request in touched:  # inside: a failure here (a stop string's cancel) is handled alike
                        stream = self.streams.get(request.id)
                        if stream is not None:
                            self._publish(stream)
                except Exception as err:  # a broken step must not leave clients waiting forever
                    for step in (ahead, pending):  # every step still in flight (finish dropped the one it took)
                        if step is not None and not (taken and step is taking):
                            self.engine.drop(step)
                    pending = None
                    consistent = True
                    for stream in list(self.streams.values()):
                        try:
                            self.engine.cancel(stream.request)
                        except Exception:  # the engine's bookkeeping is broken: every stream still gets its end
                            consistent = False
                        stream.events.put(Event(finish_reason="failed", text=str(err)))
                    self.streams.clear()
                    if not consistent:
                        # Rows, blocks or adapters may be lost for good: stop taking requests (Health says so, and
                        # Generate answers UNAVAILABLE) so that `para engine` exits and its supervisor starts afresh.
                        self.serving = False
                        self.failure = err
                    continue
                if pending is None and not (self.engine.waiting or self.engine.running):
                    self.wake.clear()

    def _publish(self, stream: _Stream) -> None:
        """Send what is new since the last event; apply stop strings; close the stream when finished."""
        request = stream.request
        new_ids = request.tokens[stream.sent_tokens :]
        text = self.tokenizer.decode(request.tokens, skip_special_tokens=True)
        finish = request.finish_reason or ""
        cuts = [i for i in (text.find(stop) for stop in stream.stop) if i != -1]
        if cuts:
            text, finish = text[: min(cuts)], "stop"
            if not request.finished:
                self.engine.cancel(request)
        elif not finish:
            if text.endswith("\ufffd"):  # an incomplete UTF-8 character: wait for the next token
                return
            # Hold back what could be the start of a stop string, so no part of one is ever sent.
            hold = max((len(stop) for stop in stream.stop), default=1) - 1
            text = text[: len(text) - hold] if hold else text
            if len(text) < len(stream.sent_text):
                text = stream.sent_text
        if finish == "error":  # the request failed alone (its error is the stream's end); tokens sent so far stay
            event = Event(finish_reason="error", text=request.error or "the request failed",
                          prompt_tokens=len(request.prompt), completion_tokens=len(request.tokens))
            self.finished += 1
            self.streams.pop(request.id, None)
            self.metrics.tokens(request, len(new_ids))
            self.metrics.ended(request, "error")
            stream.events.put(event)
            return
        event = Event(new_ids, text[len(stream.sent_text) :], request.logprobs[stream.sent_tokens :],
                      request.top_logprobs[stream.sent_tokens :], finish)
        stream.sent_tokens, stream.sent_text = len(request.tokens), text
        self.tokens_generated += len(new_ids)
        self.metrics.tokens(request, len(new_ids))
        if finish:
            event.prompt_tokens, event.completion_tokens = len(request.prompt), len(request.tokens)
            self.metrics.ended(request, finish)
            self.finished += 1
            self.streams.pop(request.id, None)
        stream.events.put(event)

    def close(self) -> None:
        self.serving = False
        self.wake.set()
        self.thread.join(timeout=5)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
