"""``para serve | chat | bench | admin``: the serving platform, whose command line is the gateway's (TypeScript).

These commands hand their arguments unchanged to ``node gateway/dist/platform/bin.js``, so ``para serve --help``
shows the gateway's own help. The gateway starts engine workers with this same Python interpreter
(``PARA_PYTHON``), so one ``para`` command drives both halves.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_CLI = ROOT / "gateway" / "dist" / "platform" / "bin.js"
COMMANDS = {
    "serve": "start engine worker(s) and the gateway (OpenAI-compatible API, tenants, dashboard)",
    "chat": "chat with an adapter through a running gateway",
    "bench": "drive a running gateway with a multi-tenant load; throughput and latency percentiles",
    "admin": "manage tenants, keys and adapters of a running gateway",
}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    for name, summary in COMMANDS.items():  # listed in `para --help`; their arguments are parsed by the gateway
        sub.add_parser(name, help=summary, add_help=False)


def delegate(command: str, args: list[str]) -> int:
    """Replace this process with the gateway's command line (signals and exit status pass straight through)."""
    node = shutil.which("node")
    if node is None:
        print(f"para {command}: error: the serving platform needs Node.js 20 or newer on PATH", file=sys.stderr)
        return 2
    if not GATEWAY_CLI.is_file():
        print(f"para {command}: error: the gateway is not built ({GATEWAY_CLI} is missing); run `make install` "
              "in the repository", file=sys.stderr)
        return 2
    env = {**os.environ, "PARA_PYTHON": sys.executable, "PARA_ROOT": str(ROOT)}
    os.execve(node, [node, str(GATEWAY_CLI), command, *args], env)
    return 0  # not reached
