# lightning-implicit — every target creates/updates the virtualenv on first use. `make help`: targets and variables.
# A `## text` line right above a target or a variable is its line in `make help`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
## interpreter that creates the virtualenv
PYTHON ?= python3
## the virtualenv's folder
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

## task config: conf/tasks/<TASK>.yaml (`.venv/bin/lightning-implicit list`)
TASK ?= addition
## model config: conf/models/<MODEL>.yaml
MODEL ?= implicit
## seed of the data and the initialisation
SEED ?= 0
## trainer config: cpu, gpu, ddp, multinode (conf/trainer/)
TRAINER ?= cpu
## devices per node: a count (4) or a GPU list (0,2)
DEVICES ?=
## number of nodes (multi-node DDP)
NODES ?=
## Optuna trials per model (sweep, tune)
TRIALS ?=
## parallel worker processes (sweep, tune, reproduce)
WORKERS ?=
## k-fold cross-validation folds (sweep, tune)
CV ?=
## Optuna study name (sweep)
STUDY ?=
## data file of a task that loads data (a CSV/parquet path, or synthetic)
DATA ?=
## market data interval: 1d or 1m (volatility)
INTERVAL ?=
## reproduction profile: quick, paper, paper-default, paper-feedback, ... (conf/reproduce/)
PROFILE ?= quick
## the sweep's full search space (not the quick one)
FULL ?=
## extra pytest arguments (test, test-fast)
PYTEST_ARGS ?=
## a logged MLflow run to re-test (evaluate)
RUN_ID ?=
## a Lightning checkpoint to re-test (evaluate)
CKPT ?=
## 0: ignore conf/tuned/<task>/<model>.yaml (train)
TUNED ?=
## comma-separated tasks (tune, reproduce)
TASKS ?=
## 1: start each new study also from the pair's tuned record, to see whether it is picked again (tune)
FROM_RECORD ?=
## 0: reproduce PROFILE=paper without the default-recipe column (--no-compare)
COMPARE ?=
## comma-separated models (budget)
MODELS ?= implicit,eikonet
## comma-separated epoch budgets (budget)
EPOCHS ?= 4,8,16,32
## comma-separated seeds (budget)
SEEDS ?=
## LightningCLI overrides, e.g. ARGS="--trainer.max_epochs 5"
ARGS ?=
## hosts the tracking server accepts (server)
ALLOWED_HOSTS ?=
## port of the MLflow UI / tracking server / Optuna dashboard (ui, server, dashboard; default 5000, 8080)
PORT ?=
## the Optuna study store (dashboard; sweeps read it from the environment too)
OPTUNA_STORAGE ?= sqlite:///mlruns/optuna.db
## your own config directories, searched before conf/ (colon-separated; see README)
CONF_PATH ?=
ifneq ($(strip $(CONF_PATH)),)
export LIGHTNING_IMPLICIT_CONF_PATH := $(CONF_PATH)
endif
## market data file: the ticker's rows (several tickers stacked)
TICKER ?=
## market data file: the zone of naive times (e.g. America/New_York)
DATA_TZ ?=
## market data: the test fraction of a chronological split
SPLIT ?=
## market data: train dates, FROM..TO
TRAIN_RANGE ?=
## market data: test dates, FROM..TO
TEST_RANGE ?=
# ---- the one table from make variables to `lightning-implicit` flags; each target names the variables it passes --
#   VAR:--flag    `--flag value` when VAR is set        VAR:+--flag   `--flag` when VAR is set (a switch)
#   VAR:!--flag   `--flag` when VAR is 0, no or false   (a FROM..TO range is passed as written: the data module splits it)
FLAG_TABLE := TASK:--task TASKS:--tasks MODEL:--model MODELS:--model SEED:--seed SEEDS:--seeds TRAINER:--trainer \
	DEVICES:--devices NODES:--nodes DATA:--data INTERVAL:--interval TRIALS:--trials WORKERS:--workers CV:--cv \
	STUDY:--study FULL:+--full FROM_RECORD:+--from-record PROFILE:--profile EPOCHS:--epochs RUN_ID:--run-id CKPT:--ckpt_path \
	TUNED:!--no-tuned COMPARE:!--no-compare TICKER:--data.init_args.ticker DATA_TZ:--data.init_args.assume_tz \
	SPLIT:--data.init_args.test_fraction TRAIN_RANGE:--data.init_args.train_range \
	TEST_RANGE:--data.init_args.test_range
# the market data file's variables (LightningCLI keys: after `--` for the commands that pass them through)
MARKET_VARS := TICKER DATA_TZ SPLIT TRAIN_RANGE TEST_RANGE
_entry = $(or $(patsubst $(1):%,%,$(filter $(1):%,$(FLAG_TABLE))),$(error $(1) is not in the Makefile's FLAG_TABLE))
_flag = $(if $(filter +%,$(2)),$(if $($(1)),$(2:+%=%)),$(if $(filter !%,$(2)),$(if $(filter 0 no false,$($(1))),\
	$(2:!%=%)),$(if $($(1)),$(2) $($(1)))))
# the flags of the variables $(1) that are set; `given`: only those set on make's command line
flags = $(strip $(foreach v,$(1),$(call _flag,$(v),$(call _entry,$(v)))))
given = $(call flags,$(foreach v,$(1),$(if $(filter command line,$(origin $(v))),$(v))))
# `-- $(1)` (passed through to LightningCLI) when $(1) is not empty
passthrough = $(if $(strip $(1)),-- $(strip $(1)))
# `lightning-implicit <command> <flags>` in the virtualenv, on one line: what make prints can be pasted
cli = $(PY) -m lightning_implicit.cli $(strip $(1))

.PHONY: help venv test test-fast train evaluate sweep tune budget reproduce bench ui server dashboard lint format \
	clean system-deps

## these lines: every target and variable, one line each (from the `##` comments of the Makefile)
help:
	@awk '/^## /{text = substr($$0, 4); next} text && /^[A-Za-z_-]+:/{split($$0, t, ":"); \
		targets = targets sprintf("  %-16s %s\n", t[1], text)} \
		text && /^[A-Z_]+ \?=/{vars = vars sprintf("  %-16s %s\n", $$1 "=", text)} {text = ""} \
		END {printf "targets (make <target> [VARIABLE=value ...]):\n%s\nvariables:\n%s", targets, vars}' $(MAKEFILE_LIST)

## the virtualenv (.venv) with the project installed
venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## the whole suite, slow tests included (what CI runs)
test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

## only the fast tests
test-fast: venv
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

## fit MODEL on TASK, run the shift sweep, log both to MLflow (SEED= TRAINER= ARGS=)
train: venv
	$(call cli,train $(call flags,TASK MODEL SEED TRAINER DEVICES NODES DATA INTERVAL TUNED \
		$(MARKET_VARS)) $(ARGS))

# (CKPT= outside mlruns/lightning/<experiment>/<run>/checkpoints/ also needs TASK= MODEL=)
## the shift sweep of a trained model again: RUN_ID= (a logged run) or CKPT= (a checkpoint)
evaluate: venv
	$(call cli,test $(call flags,RUN_ID CKPT) $(call given,TASK MODEL TRAINER) $(ARGS))

## Optuna search over conf/search/<TASK>.yaml (MODEL= TRIALS= WORKERS= CV= STUDY=)
sweep: venv
	$(call cli,sweep $(call flags,TASK) $(call given,MODEL) \
		$(call flags,TRIALS WORKERS CV STUDY DATA INTERVAL FULL) $(call passthrough,$(call flags,$(MARKET_VARS)) $(ARGS)))

## tune every (task, model) of PROFILE (default paper) by CV folds -> conf/tuned/ (TASKS= TRIALS= CV= FROM_RECORD=)
tune: venv
	$(call cli,tune $(or $(call given,PROFILE),--profile paper) $(call flags,TASKS) \
		$(call given,MODEL) $(call flags,TRIALS CV WORKERS FROM_RECORD))

## how a comparison of MODELS moves with the training EPOCHS (reports/budget/<TASK>/budget.md)
budget: venv
	$(call cli,budget $(call flags,TASK MODELS EPOCHS SEEDS) $(call passthrough,$(ARGS)))

## the paper's experiments end to end, and the report (PROFILE= TASKS= WORKERS=)
reproduce: venv
	$(call cli,reproduce $(call flags,PROFILE DATA WORKERS TASKS COMPARE) \
		$(call passthrough,$(call flags,$(MARKET_VARS))))

## the benchmarks (benchmarks/run.py): speed ratios and time to answer, with the load average
bench: venv
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m benchmarks.run

## the MLflow UI on 127.0.0.1:PORT (default 5000) over mlruns/ (or the sqlite store of MLFLOW_TRACKING_URI)
ui: venv
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui \
		--backend-store-uri '$(or $(filter sqlite:%,$(MLFLOW_TRACKING_URI)),sqlite:///mlruns/mlflow.db)' \
		--default-artifact-root ./mlruns \
		--host 127.0.0.1 --port $(or $(PORT),5000) --workers 1

## an MLflow tracking server on HOST:PORT (default 127.0.0.1:5000; ALLOWED_HOSTS=)
server: venv
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow server \
		--backend-store-uri sqlite:///mlruns/mlflow.db --artifacts-destination ./mlruns/artifacts \
		--host $${HOST:-127.0.0.1} --port $(or $(PORT),5000) --workers 1 \
		$(if $(ALLOWED_HOSTS),--allowed-hosts $(ALLOWED_HOSTS))

## the Optuna dashboard of the sweeps' studies (mlruns/optuna.db) on 127.0.0.1:PORT (default 8080)
dashboard: venv
	@$(if $(filter sqlite:///%,$(OPTUNA_STORAGE)),test -f $(patsubst sqlite:///%,%,$(OPTUNA_STORAGE)) || { echo \
		"error: no study store $(OPTUNA_STORAGE) yet: run a sweep first (make sweep TASK=addition TRIALS=4)" >&2; exit 2; })
	$(VENV)/bin/optuna-dashboard '$(OPTUNA_STORAGE)' --host 127.0.0.1 --port $(or $(PORT),8080)

## Debian packages the slow tests need (chromium, chromium-driver, postgresql, fonts); root or sudo
system-deps:
	scripts/install-system-deps.sh

## ruff check and format check
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-logo

## ruff format and fix
format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## remove the test and lint caches
clean:
	rm -rf .pytest_cache .ruff_cache .hypothesis
