# The two set-up commands: `make demo` and `make test`. Both create .venv when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo demo-train lint bench clean

# k-diffusion is a numeric reference for the solver tests only; its package __init__ needs torchvision,
# so it is installed without dependencies and its sampling.py is loaded directly by the tests.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install --quiet -c constraints.txt --no-deps k-diffusion==0.1.1.post1
	touch $(STAMP)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -x

# the timestep-type study (fine-tuning sweep, a few minutes); demo-train: train + sample + evaluate (~10 min)
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m noiselevels.demo study

demo-train: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m noiselevels.demo train

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) runs/demo
