# vitship: everything starts from `make export-all` or `make test` on a fresh clone.
SHELL  := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WEIGHTS ?= seeded

.PHONY: venv test export-all bench bench-check compat-check clean

venv: $(STAMP)

# The venv is (re)built when pyproject.toml changes. pip's own cache makes a rebuild quick.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "vitship needs Python 3.11 or newer; $(PYTHON) is " + sys.version.split()[0] + ": name another with make $(MAKECMDGOALS) PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[test]' 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
	$(BIN)/python -c "import torch, timm, torchvision, onnx, onnxruntime, openvino, nncf, coremltools, typer, executorch, litert_torch, ai_edge_litert, ai_edge_quantizer"
	touch $(STAMP)

# The real-ViT-S tests (marker slow) are left to CI, which also runs make export-all on the real model:
# `.venv/bin/python -m pytest -q -m slow` runs them here. Two workers (pytest-xdist), one test file each at a
# time, so a module's shared exports stay in one process.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n 2 --dist loadfile

# Every step runs even if an earlier one fails (a parity failure still gets its report); the exit status
# is non-zero if any step failed.
export-all: $(STAMP)
	rc=0; \
	$(BIN)/vitship export --all --weights $(WEIGHTS) || rc=1; \
	$(BIN)/vitship parity || rc=1; \
	$(BIN)/vitship bench --quick || rc=1; \
	$(BIN)/vitship report || rc=1; \
	exit $$rc

# The full sweep: every artifact on every available target at batch 1, 8 and 32 (long on a small CPU).
bench: $(STAMP)
	$(BIN)/vitship bench

# Measurement honesty: vitship's p50 vs OpenVINO benchmark_app's median for openvino-fp16 (exports it if missing).
bench-check: $(STAMP)
	$(BIN)/vitship bench-check --weights $(WEIGHTS)

# Older runtimes: every ONNX and OpenVINO artifact (exported first if missing) loaded in onnxruntime 1.16 and
# OpenVINO 2024.0, installed from PyPI into a throwaway venv (the one target that needs the network), and
# compared with the current runtimes' outputs.
compat-check: $(STAMP)
	$(BIN)/vitship export --format onnx,openvino --weights $(WEIGHTS)
	$(BIN)/vitship compat-check

clean:
	rm -rf artifacts reports
