# Entry points named in the README. `make` alone prints them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help install demo test test-fast bench-core proto clean

help:
	@echo "make demo       run the main job on the embedded SmolLM2-135M-Instruct"
	@echo "make test       run the whole test suite (downloads the embedded model once)"
	@echo "make test-fast  tests on tiny random models only"
	@echo "make bench-core parameter counts and CPU step time (benchmarks/core)"

# torch==2.13.0 is pinned in constraints.txt; on this CPU machine pip takes the local CPU build.
$(BIN)/para: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

install: $(BIN)/para

demo: install
	$(BIN)/para demo

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

bench-core: install
	$(BIN)/python benchmarks/core/param_counts.py
	$(BIN)/python benchmarks/core/cpu_step.py

# Regenerate the gRPC code from the contract (grpcio-tools pinned in constraints.txt).
proto: install
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=parapeft/engine/rpc --grpc_python_out=parapeft/engine/rpc proto/engine.proto
	sed -i 's/^import engine_pb2 as engine__pb2/from . import engine_pb2 as engine__pb2/' parapeft/engine/rpc/engine_pb2_grpc.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
