"""Stands in for the Python interpreter `para serve` starts its workers with, on a machine without GPUs.

Records what the worker was given (its arguments and CUDA_VISIBLE_DEVICES) as PROBE_DIR/<pid>.json, then
runs the real engine worker on the CPU in its place (``--device cuda`` becomes ``--device cpu``), so
``para serve --device cuda`` starts and serves as it would on a GPU host.
"""

import json
import os
import sys

args = sys.argv[1:]
record = {"args": args, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
with open(os.path.join(os.environ["PROBE_DIR"], f"{os.getpid()}.json"), "w") as f:
    json.dump(record, f)
if "--device" in args:
    args[args.index("--device") + 1] = "cpu"
os.execv(sys.executable, [sys.executable, *args])
