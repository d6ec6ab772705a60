"""Prometheus metrics of one engine worker (prometheus_client), named after vLLM's where one exists.

Counters and histograms are updated by the service as requests end and steps finish; the engine's state
(queue depth, running rows, KV blocks, preemptions, adapter loads and evictions) is read when Prometheus
scrapes, so the decoding loop never pays for figures nobody asked for.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..model import BASE_ADAPTER

PREFIX = "para_engine_"
# Steps take ~1 ms (a small decode) to seconds (a long prefill on a CPU).
STEP_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.0, 5.0, 10.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def adapter_label(name: str) -> str:
    return "base" if name in ("", BASE_ADAPTER) else name


class _EngineState(Collector):
    """Gauges and counters the engine keeps itself, read at scrape time."""

    def __init__(self, engine):
        self.engine = engine

    def collect(self):
        engine = self.engine
        stats = engine.stats()
        gauges = {
            "num_requests_running": ("Requests decoding or prefilling now", stats["running"]),
            "num_requests_waiting": ("Requests queued for admission", stats["waiting"]),
            "kv_blocks_total": ("KV cache blocks", stats["kv_blocks_total"]),
            "kv_blocks_used": ("KV cache blocks held by sequences", stats["kv_blocks_total"] - stats["kv_blocks_free"]),
            "kv_cache_usage_perc": ("Fraction of KV cache blocks in use (0-1)",
                                    1 - stats["kv_blocks_free"] / max(1, stats["kv_blocks_total"])),
            "adapters_loaded": ("Adapters registered on this worker", stats["adapters_loaded"]),
        }
        for name, (documentation, value) in gauges.items():
            yield GaugeMetricFamily(PREFIX + name, documentation, value=value)
        yield CounterMetricFamily(PREFIX + "num_preemptions", "Sequences preempted to free KV blocks",
                                  value=stats["preemptions"])
        yield CounterMetricFamily(PREFIX + "steps_ahead", "Steps launched before the last one's results were taken "
                                  "(overlap_steps)", value=stats["steps_ahead"])
        loads = CounterMetricFamily(PREFIX + "adapter_loads", "Adapters copied to device slots", labels=["kind"])
        evictions = CounterMetricFamily(PREFIX + "adapter_evictions", "Adapters evicted from device slots",
                                        labels=["kind"])
        resident = GaugeMetricFamily(PREFIX + "adapters_resident", "Adapters in device slots now", labels=["kind"])
        for kind in engine.kinds:
            loads.add_metric([kind.kind], kind.loads)
            evictions.add_metric([kind.kind], kind.evictions)
            resident.add_metric([kind.kind], len(kind.resident))
        yield from (loads, evictions, resident)


class EngineMetrics:
    def __init__(self, engine, registry: CollectorRegistry | None = None):
        self.registry = registry = registry or CollectorRegistry()
        adapter = ["adapter"]
        self.requests = Counter(PREFIX + "request_success", "Requests ended, by adapter and finish reason",
                                ["adapter", "finished_reason"], registry=registry)
        self.prompt_tokens = Counter(PREFIX + "prompt_tokens", "Prompt tokens of ended requests", adapter,
                                     registry=registry)
        self.generation_tokens = Counter(PREFIX + "generation_tokens", "Tokens generated", adapter, registry=registry)
        self.step_seconds = Histogram(PREFIX + "step_duration_seconds", "One engine step, launch to results on the host",
                                      buckets=STEP_BUCKETS, registry=registry)
        self.prefill_seconds = Histogram(PREFIX + "prefill_step_duration_seconds",
                                         "Steps that prefilled prompts, launch to results", buckets=STEP_BUCKETS,
                                         registry=registry)
        self.ttft = Histogram(PREFIX + "time_to_first_token_seconds", "Submission to the first token",
                              buckets=LATENCY_BUCKETS, registry=registry)
        self.e2e = Histogram(PREFIX + "e2e_request_latency_seconds", "Submission to the request's end",
                             buckets=LATENCY_BUCKETS, registry=registry)
        registry.register(_EngineState(engine))
        self.port = 0

    def step(self, seconds: float, prefilled: bool) -> None:
        self.step_seconds.observe(seconds)
        if prefilled:
            self.prefill_seconds.observe(seconds)

    def tokens(self, request, new_tokens: int) -> None:
        """``new_tokens`` of ``request`` were published; the first of them ends its time to first token."""
        if not new_tokens:
            return
        if len(request.tokens) == new_tokens:
            self.ttft.observe(time.monotonic() - request.arrived)
        self.generation_tokens.labels(adapter_label(request.adapter)).inc(new_tokens)

    def ended(self, request, reason: str) -> None:
        label = adapter_label(request.adapter)
        self.requests.labels(label, reason).inc()
        self.prompt_tokens.labels(label).inc(len(request.prompt))
        self.e2e.observe(time.monotonic() - request.arrived)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` over HTTP on a thread; returns the bound port (0 picks a free one)."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        self.port = server.server_port
        return self.port
