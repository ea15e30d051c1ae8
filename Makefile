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

# The main job: a prompt becomes a 2 s 128x128 video with the bundled model (models/world), on the CPU.
demo: install
	mkdir -p demo
	kinetoscope generate "a red ball moves right" --out demo/red-ball.mp4
	kinetoscope generate "a blue star moves up" --out demo/blue-star.mp4

test: install-test
	$(PYTHON) -m pytest -q -n 2 --dist loadfile

bench: install
	$(PIP) install -q -e ".[bench]"
	$(PYTHON) benchmarks/run_all.py
