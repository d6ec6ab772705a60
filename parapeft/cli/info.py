"""``para info DIR``: what an adapter directory holds, without loading a backbone."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors import safe_open

from ..config import CONFIG_NAME, WEIGHTS_NAME
from ..model import read_adapter_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "info",
        help="show an adapter's config, parameter count and size",
        description="Show a saved PARA adapter's configuration, trainable-parameter count and file size.",
    )
    parser.add_argument("adapter_dir", metavar="DIR", help="directory with adapter_config.json and adapter_model.safetensors")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(run=run)


def describe(directory: Path) -> dict:
    config = read_adapter_config(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"no {WEIGHTS_NAME} in {directory}")
    parameters, dtypes = 0, set()
    with safe_open(str(weights), framework="pt") as handle:  # reads the header and tensors only; no pickle
        for key in handle.keys():
            tensor_slice = handle.get_slice(key)
            count = 1
            for size in tensor_slice.get_shape():
                count *= size
            parameters += count
            dtypes.add(tensor_slice.get_dtype())
    return {
        "path": str(directory),
        "config": config.to_dict(),
        "variant": {k: v for k, v in config.variant().items() if k != "targets"},  # settings beyond the paper's form
        "parameters": parameters,
        "dtypes": sorted(dtypes),
        "size_bytes": weights.stat().st_size + (directory / CONFIG_NAME).stat().st_size,
    }


def run(args: argparse.Namespace) -> int:
    summary = describe(Path(args.adapter_dir))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    config = summary["config"]
    rows = [
        ("adapter", summary["path"]),
        ("base model", config["base_model_name_or_path"] or "(not recorded)"),
        ("architecture", config["model_type"] or "(not recorded)"),
        ("r", config["r"]),
        ("pooler", config["pooler"]),
        ("activation", config["activation"]),
        ("dropout", config["dropout"]),
        ("targets", ", ".join(config["targets"])),
        ("form", ", ".join(f"{k}={v}" for k, v in summary["variant"].items()) or "the paper's"),
        ("layers", "all" if config["layers_to_transform"] is None else ", ".join(map(str, config["layers_to_transform"]))),
        ("parameters", f"{summary['parameters']:,d}"),
        ("dtypes", ", ".join(summary["dtypes"])),
        ("size", f"{summary['size_bytes'] / 1024:.1f} KiB"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
