# DyFiP: `make demo` and `make test` set everything up on a fresh machine, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BOARD_VENV := .venv-board
PY := $(VENV)/bin/python
BPY := $(BOARD_VENV)/bin/python
PIP_QUIET := --quiet --disable-pip-version-check
SEED ?= 0
BOARD ?=
SET ?=
# the main jobs' board and config settings: make bench BOARD=KV260 SET="mask_target_cycles=8192"
RUN_FLAGS = $(if $(BOARD),--board $(BOARD)) $(foreach s,$(SET),--set $(s))
DEMO_DIR ?= build/demo
BENCH_DIR ?= build/bench
BUNDLE ?= $(DEMO_DIR)
PYTEST_ARGS ?=
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: all env board-env demo demo-seeds bench bench-seeds test test-host test-board hil estimate bitstream \
        deploy lint-rtl clean fashion-mnist

all: demo

# ---- environments ------------------------------------------------------------------
$(VENV)/.stamp: requirements/host.txt requirements/host-nodeps.txt pyproject.toml
	@echo ">> host environment in $(VENV) (torch CPU, Brevitas, finn-plus, Captum, cocotb)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_QUIET) -r requirements/host.txt 2> >(grep -v "^WARNING: Location" >&2)
	$(PY) -m pip install $(PIP_QUIET) --no-deps -r requirements/host-nodeps.txt 2> >(grep -v "^WARNING: Location" >&2)
	$(PY) -m pip install $(PIP_QUIET) --no-deps --no-build-isolation -e . 2> >(grep -v "^WARNING: Location" >&2)
	touch $@

$(BOARD_VENV)/.stamp: requirements/board.txt pyproject.toml
	@echo ">> board environment in $(BOARD_VENV) (numpy<2, pynq, no torch/FINN)"
	test -x $(BPY) || $(PYTHON) -m venv $(BOARD_VENV)
	$(BPY) -m pip install $(PIP_QUIET) -r requirements/board.txt 2> >(grep -v "^WARNING: Location" >&2)
	$(BPY) -m pip install $(PIP_QUIET) --no-deps --no-build-isolation -e . 2> >(grep -v "^WARNING: Location" >&2)
	touch $@

env: $(VENV)/.stamp
board-env: $(BOARD_VENV)/.stamp

# ---- the main jobs ------------------------------------------------------------------
demo: env
	$(VENV)/bin/dyfip run --dataset digits --seed $(SEED) --out $(DEMO_DIR) $(RUN_FLAGS)

SEEDS ?= 0 1 2
# $(call aggregate_seeds,PREFIX): mean +- s.e. and per-seed table of build/PREFIX-seedN
aggregate_seeds = $(VENV)/bin/dyfip aggregate $(foreach s,$(SEEDS),build/$(1)-seed$(s)/report.json) \
	--out build/$(1)-seeds.json

demo-seeds: env
	for s in $(SEEDS); do $(VENV)/bin/dyfip run --dataset digits --seed $$s --out build/demo-seed$$s \
	  --no-sweep $(RUN_FLAGS) || exit 1; done
	$(call aggregate_seeds,demo)

fashion-mnist:
	@if [ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] || [ -n "$(DATA_DIR)" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else echo "Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist' or pass DATA_DIR=<folder with the IDX files>"; exit 1; fi

bench: env fashion-mnist
	$(VENV)/bin/dyfip run --dataset fashion-mnist --seed $(SEED) --out $(BENCH_DIR) $(RUN_FLAGS) \
	  $(if $(DATA_DIR),--data-dir $(DATA_DIR))

bench-seeds: env fashion-mnist
	for s in $(SEEDS); do $(MAKE) --no-print-directory bench SEED=$$s BENCH_DIR=build/bench-seed$$s || exit 1; done
	$(call aggregate_seeds,bench)

# ---- tests --------------------------------------------------------------------------
# One quick bundle (the whole flow on digits at smoke-test sizes, accelerator included),
# built with the host CLI and shared by the host and board tests.
TEST_BUNDLE ?= build/test-bundle
$(TEST_BUNDLE)/.stamp: $(VENV)/.stamp $(shell find sw hw -name '*.py' -o -name '*.json')
	rm -rf $(TEST_BUNDLE)
	TQDM_DISABLE=1 $(VENV)/bin/dyfip run --quick --out $(TEST_BUNDLE) $(if $(BOARD),--board $(BOARD))
	touch $@

test: test-host test-board

test-host: env board-env $(TEST_BUNDLE)/.stamp
	DYFIP_TEST_BUNDLE=$(abspath $(TEST_BUNDLE)) $(PY) -m pytest tests -m "not board_env" $(PYTEST_ARGS)

test-board: env board-env $(TEST_BUNDLE)/.stamp
	DYFIP_TEST_BUNDLE=$(abspath $(TEST_BUNDLE)) $(BPY) -m pytest tests -m "board_env" $(PYTEST_ARGS)

hil: env board-env $(TEST_BUNDLE)/.stamp
	DYFIP_TEST_BUNDLE=$(abspath $(or $(HIL_BUNDLE),$(TEST_BUNDLE))) $(BPY) -m pytest tests -m "hil" $(PYTEST_ARGS)

# ---- accelerator ----------------------------------------------------------------------
estimate: env
	$(VENV)/bin/dyfip build --bundle $(BUNDLE) $(if $(BOARD),--board $(BOARD)) --estimate

bitstream: env
	$(VENV)/bin/dyfip build --bundle $(BUNDLE) $(if $(BOARD),--board $(BOARD)) --bitstream $(if $(IGNORE_FIT),--ignore-fit)

lint-rtl: env
	$(PY) -m dyfip_hw.rtl_lint

BOARD_DIR ?= /home/xilinx/jupyter_notebooks/dyfip
deploy:
	@test -n "$(BOARD_HOST)" || { echo "usage: make deploy BOARD_HOST=xilinx@<board-ip> [BUNDLE=$(BUNDLE)]"; exit 1; }
	rsync -a --exclude '*.pt' --exclude hw_build --exclude '*.onnx' $(BUNDLE)/ $(BOARD_HOST):$(BOARD_DIR)/bundle/
	rsync -a --relative sw/dyfip hw/dyfip_hw pyproject.toml README.md tests/conftest.py \
		tests/board_conftest.py tests/test_hil.py $(BOARD_HOST):$(BOARD_DIR)/
	rsync -a notebooks/ $(BOARD_HOST):$(BOARD_DIR)/
	@echo "on the board: cd $(BOARD_DIR) && sudo -H pip3 install --no-deps --no-build-isolation -e . (see notebooks/README.md)"

clean:
	rm -rf build sim_build
