"""``para engine``: serve the backbone and PARA adapters over gRPC (proto/engine.proto)."""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import time

from .generate import DEFAULT_MODEL


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "engine",
        help="run an engine worker (gRPC) serving many adapters from one backbone",
        description="Serve the backbone with continuous batching; every decoding step mixes the adapters of all "
        "running requests. Adapters can be given at start (--adapter NAME=DIR) or loaded over gRPC.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help="named model, HF id or local path")
    p.add_argument("--port", type=int, default=50051, help="0 picks a free port (printed)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME=DIR", help="adapter to load at start")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--metrics-port", type=int, default=0,
                   help="Prometheus metrics at http://HOST:PORT/metrics (default 0: a free port, printed and "
                        "reported in Health; -1: no metrics endpoint)")
    add_engine_arguments(p)
    p.add_argument("--exit-with-parent", action="store_true",
                   help="stop when the process that started this worker is gone (set by `para serve`)")
    p.set_defaults(run=run)


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per EngineConfig field, with its help and default."""
    from ..engine.config import EngineConfig

    defaults, helps = EngineConfig(), EngineConfig.help_texts()
    p.add_argument("--max-seqs", "--slots", dest="max_seqs", type=int, default=defaults.max_seqs, help=helps["max_seqs"])
    p.add_argument("--max-len", type=int, default=defaults.max_len, help=helps["max_len"])
    p.add_argument("--block-size", type=int, default=defaults.block_size, help=helps["block_size"])
    p.add_argument("--kv-memory", type=float, default=defaults.kv_memory, help=helps["kv_memory"])
    p.add_argument("--kv-tokens", type=int, default=None, help=helps["kv_tokens"])
    p.add_argument("--max-step-tokens", "--prefill-tokens", dest="max_step_tokens", type=int,
                   default=defaults.max_step_tokens, help=helps["max_step_tokens"])
    p.add_argument("--prefill-wait-ms", type=float, default=defaults.prefill_wait_ms, help=helps["prefill_wait_ms"])
    p.add_argument("--prefill-batch-tokens", type=int, default=defaults.prefill_batch_tokens,
                   help=helps["prefill_batch_tokens"])
    p.add_argument("--device-adapters", type=int, default=defaults.device_adapters, help=helps["device_adapters"])
    p.add_argument("--lora-rank", type=int, default=defaults.lora_rank, help=helps["lora_rank"])
    p.add_argument("--no-fused-kernels", dest="fused_kernels", action="store_const", const=False, default=None,
                   help="on a GPU, use the PyTorch operations instead of the Triton kernels")
    p.add_argument("--skinny-matmul-rows", type=int, default=defaults.skinny_matmul_rows,
                   help=helps["skinny_matmul_rows"])
    p.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_const", const=False, default=None,
                   help="on a GPU, run the decoding step and prefill passes eagerly instead of replaying CUDA graphs")
    p.add_argument("--prefill-graph-tokens", type=int, default=defaults.prefill_graph_tokens,
                   help=helps["prefill_graph_tokens"])
    p.add_argument("--overlap-steps", action="store_true", help=helps["overlap_steps"])
    p.add_argument("--seed", type=int, default=defaults.seed, help=helps["seed"])


def engine_config(args: argparse.Namespace):
    from ..engine.config import EngineConfig

    return EngineConfig(max_len=args.max_len, max_seqs=args.max_seqs, block_size=args.block_size,
                        kv_memory=args.kv_memory, kv_tokens=args.kv_tokens, max_step_tokens=args.max_step_tokens,
                        prefill_wait_ms=args.prefill_wait_ms, prefill_batch_tokens=args.prefill_batch_tokens,
                        device_adapters=args.device_adapters, lora_rank=args.lora_rank,
                        fused_kernels=args.fused_kernels, skinny_matmul_rows=args.skinny_matmul_rows,
                        cuda_graphs=args.cuda_graphs,
                        prefill_graph_tokens=args.prefill_graph_tokens, overlap_steps=args.overlap_steps,
                        seed=args.seed)


def run(args: argparse.Namespace) -> int:
    parent = os.getppid()  # before the model loads: a parent that dies while it loads is still noticed
    from ..backbones import load_base_model
    from ..engine.server import serve
    from ..engine.service import EngineService, default_device

    config = engine_config(args)
    named = []
    for item in args.adapter:
        name, sep, directory = item.partition("=")
        if not sep or not name or not directory:
            raise ValueError(f"--adapter takes NAME=DIR, got {item!r}")
        named.append((name, directory))
    device = args.device or default_device()
    model, tokenizer = load_base_model(args.model, device=device)
    service = EngineService(model, tokenizer, args.model, config)
    for name, directory in named:
        service.load_adapter(name, directory)
    graphs = service.capture_graphs()
    # What is loaded now lives as long as the process: frozen out of the collector's reach, so that a full
    # collection (which pauses every request in flight) does not walk it again. With torch and transformers
    # loaded that walk is about 380k objects, 0.24-0.28 s on a two-core CPU.
    gc.collect()
    gc.freeze()
    if args.metrics_port >= 0:
        service.metrics.serve(args.metrics_port, args.host)
    server, port = serve(service, args.port, args.host)
    engine = service.engine
    metrics = f", metrics on port {service.metrics.port}" if service.metrics.port else ""
    print(f"engine serving {args.model} on {args.host}:{port} ({device}, {config.max_seqs} sequences, KV cache "
          f"{engine.cache.tokens} tokens, {graphs} CUDA graphs, adapters: "
          f"{', '.join(engine.adapter_names()) or 'none yet'}{metrics})", flush=True)
    # Set by SIGINT/SIGTERM. A plain flag, polled below: a handler that took a lock (Event.set) could deadlock, since
    # it runs in the main thread, which may hold that very lock at that moment (seen once: a worker whose parent
    # died sat forever with every thread waiting on a futex).
    requested = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: requested.append(True))
    if args.exit_with_parent:
        _ask_kernel_for_parent_death_signal()
    failure = None
    while True:
        if requested:
            break
        if args.exit_with_parent and os.getppid() != parent:  # re-parented: the process that started it died
            # Decided before anything is written: with piped stdio the parent's end of the pipe is gone.
            _say("engine: the process that started it is gone; stopping")
            break
        if not service.healthy:  # the engine loop failed (or died): a fresh worker is needed
            failure = service.failure or RuntimeError("the engine loop stopped")
            break
        time.sleep(0.2)
    server.stop(grace=2).wait()
    service.close()
    _say(f"engine stopped: its loop failed ({failure!r})" if failure is not None else "engine stopped")
    # Leave at once: the interpreter's teardown (thread pools joined at exit, CUDA and Triton state) can take
    # seconds on a loaded machine, and a worker whose parent died must not linger.
    os._exit(1 if failure is not None else 0)


def _ask_kernel_for_parent_death_signal() -> None:
    """On Linux, have the kernel send SIGTERM when the parent dies (polling the parent's id is the portable fallback)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _say(message: str) -> None:
    """Write to stderr, which may be a pipe whose reader is gone."""
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
