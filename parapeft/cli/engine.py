"""``para engine``: serve the backbone and PARA adapters over gRPC (proto/engine.proto)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

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
    p.add_argument("--slots", type=int, default=16, help="concurrent sequences (KV-cache slots)")
    p.add_argument("--max-len", type=int, default=2048, help="tokens per sequence, prompt included")
    p.add_argument("--device-adapters", type=int, default=64,
                   help="adapters kept attached on the device; more stay in CPU memory (LRU)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--prefill-tokens", type=int, default=2048,
                   help="prompt tokens admitted per step (at least one prompt), so bursts do not stall decoding")
    p.add_argument("--exit-with-parent", action="store_true",
                   help="stop when the process that started this worker is gone (set by `para serve`)")
    p.add_argument("--no-fused-kernels", dest="fused", action="store_const", const=False, default=None,
                   help="on a GPU, decode with the PyTorch step instead of the Triton kernels (which are used "
                        "by default when Triton is installed)")
    p.add_argument("--compile", action="store_true",
                   help="on a GPU, compile the decoding step with torch.compile before capturing CUDA graphs "
                        "(fewer, fused kernels; each new batch/context bucket compiles once)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..backbones import load_base_model
    from ..config import ParaConfig
    from ..engine.server import serve
    from ..engine.service import EngineService, default_device
    from ..model import ParaModel

    device = args.device or default_device()
    model, tokenizer = load_base_model(args.model, device=device)
    named = []
    for item in args.adapter:
        name, sep, directory = item.partition("=")
        if not sep or not name or not directory:
            raise ValueError(f"--adapter takes NAME=DIR, got {item!r}")
        named.append((name, directory))
    if named:
        para = ParaModel.from_pretrained(model, named[0][1], adapter_name=named[0][0])
        for name, directory in named[1:]:
            para.load_adapter(directory, name)
    else:  # adapters come later over gRPC: wrap with a throw-away adapter, then remove it
        para = ParaModel(model, ParaConfig(r=1), adapter_name="initial").eval()
        para.delete_adapter("initial")
    service = EngineService(para, tokenizer, args.model, slots=args.slots, max_len=args.max_len,
                            device_adapters=args.device_adapters, compile=args.compile,
                            prefill_tokens_per_step=args.prefill_tokens, fused=args.fused)
    server, port = serve(service, args.port, args.host)
    print(f"engine serving {args.model} on {args.host}:{port} ({device}, {args.slots} slots, adapters: "
          f"{', '.join(para.peft_config) or 'none yet'})", flush=True)
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    if args.exit_with_parent:
        parent = os.getppid()
        _ask_kernel_for_parent_death_signal()
        if os.getppid() != parent:  # the parent died before the signal was asked for
            stopped.set()
        threading.Thread(target=_watch_parent, args=(parent, stopped), daemon=True).start()
    stopped.wait()
    server.stop(grace=2).wait()
    service.close()
    _say("engine stopped")
    return 0


def _watch_parent(parent: int, stopped: threading.Event) -> None:
    """Set ``stopped`` once the parent has died (this process is then re-parented), even by SIGKILL.

    The flag is set before anything is written: with piped stdio the parent's end of the pipe is gone, so a
    write to stderr raises, and a watcher that wrote first would die without stopping the worker.
    """
    while not stopped.wait(1.0):
        if os.getppid() != parent:
            stopped.set()
            _say("engine: the process that started it is gone; stopping")
            return


def _ask_kernel_for_parent_death_signal() -> None:
    """On Linux, have the kernel send SIGTERM when the parent dies (the watcher thread is the portable fallback)."""
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
