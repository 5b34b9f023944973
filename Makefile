# Two commands do all set-up on a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# .installed-run: what `make run` needs (kibs-mc and its robustness extra: experiment=decide);
# .installed: that plus the calibration, the sweep and the test and lint tools.
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: run posteriors test test-quick lint bench ui clean slurm-deps slurm-up slurm-down browser-deps

# First use: one line per step with its expected time (measured with pip's cache warm: about
# 65 s of CPU; 5.5 min wall at load 3-12, 9 min at load 20 on 2 cores; a first download adds
# its own time).
$(RUN_STAMP): pyproject.toml
	@echo "make: first use: installing kibs-mc into $(VENV) (about 1.7 GB; 5-10 min; once)"
	@echo "make: [1/2] creating $(VENV), updating pip (about 20 s)"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "make: [2/2] installing kibs-mc and about 150 packages (NumPy, Numba, Polars, Ray, MLflow, ...; 5-9 min)"
	@$(BIN)/python -m pip install --quiet -e '.[robustness]'
	@touch $(RUN_STAMP)
	@echo "make: installed; the first run also compiles the model's kernels (once, about 50 s)"

$(STAMP): $(RUN_STAMP)
	@echo "make: installing the test and lint tools into $(VENV) (about 30 packages, 1-2 min; once)"
	@$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# The answer across what is not known (conf/experiment/decide.yaml; docs/robustness.md).
run: $(RUN_STAMP)
	$(BIN)/kibs-mc experiment=decide

# The calibrated posteriors that ship in conf/posterior/ (one calibration per cluster preset the
# experiments use by default; docs/calibration.md): run it after the model or the targets change
# (tests/test_posteriors.py says when). The sampler settings are experiment=calibrate's own
# (conf/experiment/calibrate.yaml); POSTERIOR_BUDGET adds the executor (or overrides the sampler).
POSTERIOR_BUDGET ?= executor=ray executor.num_cpus=2
posteriors: $(STAMP)
	$(BIN)/python scripts/ship_posterior.py small default -- $(POSTERIOR_BUDGET)

# One pytest worker per core, each taking whole test files (a file's module fixtures, e.g. the
# one-node Slurm or an attached Ray cluster, are set up once). TEST_WORKERS=0: one process.
TEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The everyday set: every test not marked `slow` (pyproject.toml's markers: no Slurm jobs, no Ray
# clusters, no runs killed and resumed, no end-to-end experiments of many runs). `make test`
# runs them all, as CI does.
test-quick: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy kibs_mc

bench: $(STAMP)
	$(BIN)/python scripts/bench.py

# One light MLflow server (one worker, no job runner) for ./mlflow.db; prints the address of
# the kibs-mc experiment's runs once it answers. Ctrl-C stops it.
ui: $(RUN_STAMP)
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
