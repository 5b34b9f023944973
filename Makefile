# Two commands do all set-up on a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench ui clean slurm-deps slurm-up slurm-down browser-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/kibs-mc experiment=compare_governance

# One pytest worker per core, each taking whole test files (a file's module fixtures, e.g. the
# one-node Slurm or an attached Ray cluster, are set up once). TEST_WORKERS=0: one process.
TEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy kibs_mc

bench: $(STAMP)
	$(BIN)/python scripts/bench.py

# One light MLflow server (one worker, no job runner) for ./mlflow.db; prints the address of
# the kibs-mc experiment's runs once it answers. Ctrl-C stops it.
ui: $(STAMP)
	@$(BIN)/python -m kibs_mc.tracking.ui --uri sqlite:///mlflow.db

# The Debian packages of the one-node Slurm that tests/test_slurm.py starts (as root; .ci/run
# calls this). Without them those tests are skipped, with this command as the reason.
slurm-deps:
	@scripts/slurm/local-slurm.sh check || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; }

# Debian's headless Chromium, which tests/test_decision_page.py renders the decision page in
# (as root; .ci/run calls this). Without it that test is skipped, with this command as the reason.
browser-deps:
	@command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell >/dev/null; }

# A private one-node Slurm for trying scripts/slurm/ by hand: eval "$$(make -s slurm-up)"
slurm-up: slurm-deps
	@scripts/slurm/local-slurm.sh up

slurm-down:
	@scripts/slurm/local-slurm.sh down

clean:
	rm -rf outputs multirun mlruns mlartifacts mlflow.db
