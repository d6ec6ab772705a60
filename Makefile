# Entry points named in the README. `make` alone prints them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help install install-python install-node browser postgres demo finetune-demo test test-python test-node test-fast \
        bench-core bench-gateway proto clean

help:
	@echo "make demo           main job: the serving platform on the embedded SmolLM2-135M, two tenants in one batch"
	@echo "make finetune-demo  fine-tune PARA on COPA on this machine, then a mixed-adapter batch"
	@echo "make test           the whole test suite: Python, gateway (SQLite and PostgreSQL) and dashboard (downloads the embedded model once)"
	@echo "make test-fast      Python tests on tiny random models only"
	@echo "make bench-core     parameter counts and CPU step time (benchmarks/core)"
	@echo "make bench-gateway  the gateway's own overhead per request (benchmarks/gateway)"

# torch==2.13.0 is pinned in constraints.txt; on this CPU machine pip takes the local CPU build.
$(BIN)/para: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q pip==26.3  # pinned like everything else: a new pip must not change an install silently
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

install-python: $(BIN)/para

# The TypeScript half: exact versions from the lock files; the gateway serves the dashboard's build.
gateway/node_modules/.package-lock.json: gateway/package-lock.json
	cd gateway && npm ci --no-audit --no-fund
dashboard/node_modules/.package-lock.json: dashboard/package-lock.json
	cd dashboard && npm ci --no-audit --no-fund

install-node: gateway/node_modules/.package-lock.json dashboard/node_modules/.package-lock.json
	cd dashboard && npm run build
	cd gateway && npm run build

install: install-python install-node

# Debian's Chromium for the browser tests (playwright-core drives it; nothing is downloaded by npm).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# Debian's PostgreSQL server binaries for the store suite and the replica tests (each run starts its own
# private cluster on a free port; nothing is configured system-wide and the packaged cluster is not used).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null)

demo: install
	$(BIN)/para serve --demo

finetune-demo: install-python
	$(BIN)/para demo

test: install browser postgres
	$(MAKE) test-python test-node

test-python: install-python
	$(BIN)/python -m pytest -q

test-node: install-node postgres
	cd dashboard && PARA_REQUIRE_BROWSER=1 npm test
	cd gateway && PARA_REQUIRE_BROWSER=1 npm test

test-fast: install-python
	$(BIN)/python -m pytest -q -m "not slow"

bench-core: install-python
	$(BIN)/python benchmarks/core/param_counts.py
	$(BIN)/python benchmarks/core/cpu_step.py

bench-gateway: install
	node benchmarks/gateway/overhead.mjs

# Regenerate the gRPC code from the contract (grpcio-tools pinned in constraints.txt).
proto: install-python
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=parapeft/engine/rpc --grpc_python_out=parapeft/engine/rpc proto/engine.proto
	sed -i 's/^import engine_pb2 as engine__pb2/from . import engine_pb2 as engine__pb2/' parapeft/engine/rpc/engine_pb2_grpc.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info gateway/node_modules gateway/dist dashboard/node_modules dashboard/dist
