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

.PHONY: setup build test test-compat demo bench gpu-check clean

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

# The op tests on torch 2.11 (the GPU machine's torch, with its triton 3.6), in a venv
# of their own. The extension is built for that torch in a copy of the working tree's
# files that git tracks or would (build/compat-src), so the main venv's in-place build
# is left alone; the copy keeps its build between runs. With FORCE_CUDA=1 (.ci/run sets
# it where nvcc is) the CUDA kernels are compiled too, against torch 2.11's headers and
# for the GPU machine's H200 only (COMPAT_CUDA_ARCH), as `make gpu-check` will build them
# there; otherwise CPU kernels only.
COMPAT_CUDA_ARCH ?= 9.0
COMPAT_CUDA := $(filter 1,$(FORCE_CUDA))
COMPAT_VENV := .venv-compat
COMPAT_PY := $(abspath $(COMPAT_VENV))/bin/python
COMPAT_STAMP := $(COMPAT_VENV)/.requirements-stamp
COMPAT_SRC := build/compat-src
COMPAT_TESTS := tests/test_ops_*.py tests/test_triton_ops.py tests/test_cpu_kernel_smoke.py \
	tests/test_cuda_emulation.py tests/test_trace_safety.py

$(COMPAT_STAMP): requirements-compat.txt
	test -x $(COMPAT_PY) || $(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_PY) -m pip install -q -r requirements-compat.txt
	touch $(COMPAT_STAMP)

test-compat: $(COMPAT_STAMP)
	mkdir -p $(COMPAT_SRC)
	git ls-files -z --cached --others --exclude-standard \
		| tar -c --null --files-from=- --ignore-failed-read -f - 2>/dev/null | tar -x -f - -C $(COMPAT_SRC)
	cd $(COMPAT_SRC) && $(if $(COMPAT_CUDA),env FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=$(COMPAT_CUDA_ARCH),env -u FORCE_CUDA) \
		$(COMPAT_PY) setup.py -q build_ext --inplace
	cd $(COMPAT_SRC) && $(if $(COMPAT_CUDA),,CUBECROP_CPU_ONLY_BUILD=1) \
		$(COMPAT_PY) -m pytest -q -rs -p no:cacheprovider $(PYTEST_ARGS) $(COMPAT_TESTS)

# On a GPU machine (no internet): builds in place with the CUDA kernels for this GPU,
# runs the GPU tests and the kernel benchmark (docs/gpu_check.md). Results go to $$OUT
# when it is set, else to benchmarks/results.
gpu-check:
	bash scripts/gpu_check.sh

clean:
	rm -rf build *.egg-info cubecrop/*.so
