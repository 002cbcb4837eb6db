# lightning-implicit — every target creates/updates the virtualenv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

TASK ?= addition
MODEL ?= implicit
SEED ?= 0
TRAINER ?= cpu
DEVICES ?=
NODES ?=
TRIALS ?=
WORKERS ?=
CV ?=
STUDY ?=
DATA ?=
INTERVAL ?=
PROFILE ?= quick
FULL ?=
PYTEST_ARGS ?=
RUN_ID ?=
CKPT ?=
TUNED ?=
TASKS ?=
MODELS ?= implicit,eikonet
EPOCHS ?= 4,8,16,32
SEEDS ?=
ARGS ?=
ALLOWED_HOSTS ?=
# Your own tasks, models and profiles: directories searched before conf/ (colon-separated; see README).
CONF_PATH ?=
ifneq ($(strip $(CONF_PATH)),)
export LIGHTNING_IMPLICIT_CONF_PATH := $(CONF_PATH)
endif
# Market data files (TASK=volatility): the ticker's rows, the zone of naive times, the split (see README).
TICKER ?=
DATA_TZ ?=
SPLIT ?=
TRAIN_RANGE ?=
TEST_RANGE ?=
comma := ,
range_json = '["$(subst ..,"$(comma)",$(1))"]'
DATA_ARGS = $(if $(TICKER),--data.init_args.ticker $(TICKER)) $(if $(DATA_TZ),--data.init_args.assume_tz $(DATA_TZ)) \
	$(if $(SPLIT),--data.init_args.test_fraction $(SPLIT)) \
	$(if $(TRAIN_RANGE),--data.init_args.train_range $(call range_json,$(TRAIN_RANGE))) \
	$(if $(TEST_RANGE),--data.init_args.test_range $(call range_json,$(TEST_RANGE)))

.PHONY: venv test test-fast train evaluate sweep tune budget reproduce bench ui server lint format clean system-deps

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## The whole suite, slow tests included (this is what CI runs).
test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

## Only the fast tests.
test-fast: venv
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

train: venv
	$(PY) -m lightning_implicit.cli train --task $(TASK) --model $(MODEL) --seed $(SEED) --trainer $(TRAINER) \
		$(if $(DEVICES),--devices $(DEVICES)) $(if $(NODES),--nodes $(NODES)) \
		$(if $(DATA),--data $(DATA)) $(if $(INTERVAL),--interval $(INTERVAL)) $(if $(filter 0 no false,$(TUNED)),--no-tuned) $(strip $(DATA_ARGS)) $(ARGS)

## The shift sweep of a trained model again: RUN_ID= (a logged MLflow run) or CKPT= (a Lightning checkpoint;
## with TASK= MODEL= when it is not under mlruns/lightning/<experiment>/<run>/checkpoints/); ARGS= overrides.
evaluate: venv
	$(PY) -m lightning_implicit.cli test $(if $(RUN_ID),--run-id $(RUN_ID)) $(if $(CKPT),--ckpt_path $(CKPT)) \
		$(if $(filter command line,$(origin TASK)),--task $(TASK)) $(if $(filter command line,$(origin MODEL)),--model $(MODEL)) \
		$(if $(filter command line,$(origin TRAINER)),--trainer $(TRAINER)) $(ARGS)

sweep: venv
	$(PY) -m lightning_implicit.cli sweep --task $(TASK) $(if $(filter command line,$(origin MODEL)),--model $(MODEL)) \
		$(if $(TRIALS),--trials $(TRIALS)) $(if $(WORKERS),--workers $(WORKERS)) $(if $(CV),--cv $(CV)) \
		$(if $(STUDY),--study $(STUDY)) $(if $(DATA),--data $(DATA)) $(if $(INTERVAL),--interval $(INTERVAL)) \
		$(if $(FULL),--full) $(if $(strip $(DATA_ARGS) $(ARGS)),-- $(strip $(DATA_ARGS) $(ARGS)))

## Tune every (task, model) of PROFILE (default paper) by CV folds on in-distribution data -> conf/tuned/.
tune: venv
	$(PY) -m lightning_implicit.cli tune --profile $(if $(filter command line,$(origin PROFILE)),$(PROFILE),paper) \
		$(if $(TASKS),--task $(TASKS)) $(if $(filter command line,$(origin MODEL)),--model $(MODEL)) \
		$(if $(TRIALS),--trials $(TRIALS)) $(if $(CV),--cv $(CV)) $(if $(WORKERS),--workers $(WORKERS))

## How a comparison moves with the training epochs (reports/budget/<TASK>/budget.md).
budget: venv
	$(PY) -m lightning_implicit.cli budget --task $(TASK) --model $(MODELS) --epochs $(EPOCHS) \
		$(if $(SEEDS),--seeds $(SEEDS)) $(if $(ARGS),-- $(ARGS))

reproduce: venv
	$(PY) -m lightning_implicit.cli reproduce --profile $(PROFILE) $(if $(DATA),--data $(DATA)) $(if $(WORKERS),--workers $(WORKERS)) \
		$(if $(TASKS),--tasks $(TASKS)) $(if $(strip $(DATA_ARGS)),-- $(strip $(DATA_ARGS)))

bench: venv
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m benchmarks.run

ui: venv
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui \
		--backend-store-uri sqlite:///mlruns/mlflow.db --default-artifact-root ./mlruns \
		--host 127.0.0.1 --port $${PORT:-5000} --workers 1

server: venv
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow server \
		--backend-store-uri sqlite:///mlruns/mlflow.db --artifacts-destination ./mlruns/artifacts \
		--host $${HOST:-127.0.0.1} --port $${PORT:-5000} --workers 1 \
		$(if $(ALLOWED_HOSTS),--allowed-hosts $(ALLOWED_HOSTS))

## Debian packages the slow tests need (chromium, chromium-driver, postgresql, fonts); root or sudo.
system-deps:
	scripts/install-system-deps.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf .pytest_cache .ruff_cache .hypothesis
