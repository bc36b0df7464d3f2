# Two commands do all set-up on a fresh machine:
#   make demo   create .venv, install, run a real Cora search (~5 min on 2 cores), write reports/cora/index.html
#               (make demo TASK=sst2 BUDGET=1cpu-h: the SST-2 AxFormer + TokenDrop search, ~30 min;
#                make demo TASK=fashion-mnist BUDGET=0.1cpu-h: the ICPC search, installs Debian's Fashion-MNIST)
#   make test   create .venv, install with test extras and the Debian packages the tests use, run the test suite
VENV       ?= .venv
PYTHON     ?= python3
# CPU-only machines pin the CPU build of torch; with an NVIDIA driver present pip picks torch freely.
CONSTRAINT ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,-c constraints-cpu.txt)
# Data: ../shared/data when this checkout sits beside it, else the tool's cache (downloads when online).
export AUTOTRADEOFF_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export RAY_USAGE_STATS_ENABLED ?= 0
export RAY_AUTH_MODE ?= disabled

TASK   ?= cora
BUDGET ?= 0.15cpu-h
PYTEST_ARGS ?=

.PHONY: demo test lint clean system-packages postgres

# Debian packages for the tests and the image task, installed only when missing (needs root or sudo):
# PostgreSQL (storage for many machines), Fashion-MNIST (/usr/share/datasets/fashion-mnist) and headless
# Chromium with its driver (the report is tested in a real browser).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
system-packages:
	@missing="$$(ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || echo postgresql) \
	  $$(test -d /usr/share/datasets/fashion-mnist || echo dataset-fashion-mnist) \
	  $$(command -v chromium >/dev/null || echo chromium) $$(command -v chromedriver >/dev/null || echo chromium-driver)"; \
	if [ -n "$$(echo $$missing)" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q $(CONSTRAINT) -e '.[test,postgres,bench]'
	touch $@

# A PostgreSQL server on 127.0.0.1:5432 for studies shared by several searches or machines (Debian's
# cluster "main"): starts it, creates role and database "autotradeoff"/"studies", prints the URL.
AS_POSTGRES := $(if $(filter 0,$(shell id -u)),runuser -u postgres --,sudo -u postgres)
PG_URL := postgresql+psycopg2://autotradeoff:autotradeoff@127.0.0.1:5432/studies
postgres: system-packages
	@$(SUDO) pg_ctlcluster $$(ls /usr/lib/postgresql | sort -n | tail -1) main start 2>/dev/null || true
	@$(AS_POSTGRES) psql -qtAc "SELECT 1 FROM pg_roles WHERE rolname='autotradeoff'" | grep -q 1 || \
	  $(AS_POSTGRES) psql -qc "CREATE ROLE autotradeoff LOGIN PASSWORD 'autotradeoff'"
	@$(AS_POSTGRES) psql -qtAc "SELECT 1 FROM pg_database WHERE datname='studies'" | grep -q 1 || \
	  $(AS_POSTGRES) createdb -O autotradeoff studies
	@echo "PostgreSQL is up on 127.0.0.1:5432; use --storage $(PG_URL)"

demo: $(VENV)/.installed $(if $(filter fashion-mnist,$(TASK)),system-packages)
	$(VENV)/bin/autotradeoff search --task $(TASK) --budget $(BUDGET)

test: $(VENV)/.installed system-packages
	$(VENV)/bin/python -m pytest -q --durations=25 $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check autotradeoff tests benchmarks
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) studies/*.db studies/ray $(filter-out reports/benchmarks,$(wildcard reports/*))
