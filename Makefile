# The two commands of the contract: `make test` and `make demo`. Each sets itself up
# on a fresh machine: a .venv with the pinned requirements, then the extension
# built in place (pip install -e .). FORCE_CUDA=1 also builds the CUDA kernels.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-stamp
# torch's build does not find the toolkit by itself here.
CUDA_HOME ?= $(firstword $(wildcard /usr/local/cuda /usr/local/cuda-13.0))
export CUDA_HOME
PYTEST_ARGS ?=

.PHONY: setup build test demo bench gpu-check clean

setup: build

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

build: $(STAMP)
	$(PY) -m pip install -q -e . --no-build-isolation --no-deps

test: build
	$(PY) -m pytest -q -rs $(PYTEST_ARGS) tests

bench: build
	$(PY) benchmarks/bench_ops.py --out benchmarks/results/bench_ops_cpu.json

# The main job: trains a tiny AdaFocusV3 and a random-policy control on the embedded
# synthetic task, evaluates early exit, prints the table (adafocus/demo.py).
demo: build
	$(PY) -m adafocus demo --output-dir outputs/demo

# On a GPU machine (no internet): build in place with the CUDA kernels, run the GPU
# tests and the kernel benchmark; results land in benchmarks/results/gpu_check_*.
gpu-check:
	bash scripts/gpu_check.sh

clean:
	rm -rf build *.egg-info cubecrop/*.so
