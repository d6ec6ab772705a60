"""The ``para`` command: one entry point, one sub-command per file."""

from __future__ import annotations

import argparse
import sys

from . import demo, engine, evaluate, generate, info, platform, train

COMMANDS = {
    "demo": demo, "train": train, "eval": evaluate, "generate": generate, "info": info, "engine": engine,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="para",
        description="PARA (Prompt-Aware Representation Adjustment): fine-tune and serve prompt-conditioned adapters "
        "on a frozen LLM. The default backbone is the embedded SmolLM2-135M-Instruct ('smollm2-135m').",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        module.add_parser(sub)
    platform.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in platform.COMMANDS:
        return platform.delegate(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, FileExistsError, ValueError, KeyError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"para {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
