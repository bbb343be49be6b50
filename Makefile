# Setup, training and tests in two commands from a fresh clone (Python >= 3.10, no sudo):
#
#   make train     # train the built-in 我爱你 model, TensorBoard logs under outputs/
#   make test      # the whole test suite
#
# Each creates .venv on first use and installs what is missing; a second run skips straight to
# the work. More:
#
#   make train ARGS="model=distracted trainer.max_minutes=2"   # any train.py overrides
#   make test ARGS="-k attention -x"                            # any pytest options
#   make tensorboard [LOGDIR=outputs] [PORT=6006]               # then open http://localhost:PORT
#   make explore CKPT="a/best.pt b/best.pt" [PORT=7860]         # attention explorer, in the browser
#   make lint                                                   # ruff, as CI runs it
#
# torch: pip takes torch==$(TORCH_VERSION) from its configured index (PyPI; a local CPU wheel
# where the machine's pip is set up with one). To choose a build, name its index when .venv is
# first made (or after `rm -rf .venv`), e.g. CUDA 12.8 or the small CPU-only build:
#
#   make train TORCH_INDEX=https://download.pytorch.org/whl/cu128
#   make train TORCH_INDEX=https://download.pytorch.org/whl/cpu

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
ARGS ?=
LOGDIR ?= outputs
PORT ?= 6006
# make explore PORT=... sets the explorer's port; without it, 7860 (PORT's default is TensorBoard's)
EXPLORE_PORT ?= $(if $(filter command line,$(origin PORT)),$(PORT),7860)
CKPT ?=

BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: setup train test tensorboard explore lint

train: $(INSTALLED)
	$(BIN)/python train.py $(ARGS)

test: $(INSTALLED)
	$(BIN)/python -m pytest -q $(ARGS)

tensorboard: $(INSTALLED)
	$(BIN)/tensorboard --logdir $(LOGDIR) --port $(PORT)

explore: $(INSTALLED)
	@test -n "$(CKPT)" || { echo 'make explore: name checkpoints, e.g. CKPT="outputs/<run>/checkpoints/best.pt"' >&2; exit 2; }
	$(BIN)/python scripts/explore.py $(CKPT) --port $(EXPLORE_PORT)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

setup: $(INSTALLED)

# Redone when pyproject.toml changes (pip then installs only what is new).
$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
		{ echo "make: $(PYTHON) is older than 3.10; run with PYTHON=python3.10 (or newer)" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@
