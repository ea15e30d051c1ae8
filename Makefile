# Two commands for a fresh machine: `make demo` and `make test`.
# TORCH pins the CPU build this project is tested with; override it for a CUDA build,
# e.g. `make demo TORCH=torch`.
PYTHON ?= python3
TORCH ?= torch==2.13.0
PIP := $(PYTHON) -m pip

.PHONY: install install-test demo test bench

install:
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e .

install-test:
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[test]"

# The main job. Until the bundled model exists this renders the procedural world
# (clips + JSONL manifest with ground truth) instead of generating from a prompt.
demo: install
	kinetoscope world sample --scenario collision --n 4 --size 256x144 --frames 33 --fps 10 --seed 0 --out demo/world
	@echo "Wrote demo/world/manifest.jsonl and its clips."

test: install-test
	$(PYTHON) -m pytest -q -n 2 --dist loadfile

bench: install
	$(PIP) install -q -e ".[bench]"
	$(PYTHON) benchmarks/run_all.py
