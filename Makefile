# Hodei: `make run` sets everything up and starts the platform; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
VAR := var

.PHONY: run test install lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(VAR)/secret_key:
	mkdir -p $(VAR)
	umask 077 && $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))' > $@

# Settings require SECRET_KEY; unless the environment gives one, make run keeps a
# generated key in var/secret_key.
WITH_KEY = SECRET_KEY="$${SECRET_KEY:-$$(cat $(VAR)/secret_key)}"

# Honcho gives processes 5 s after Ctrl-C before SIGKILL: agents get shorter grace
# periods here so that they always finish cleaning up first.
DEV_GRACE = HODEI_SHUTDOWN_GRACE_SECONDS=$${HODEI_SHUTDOWN_GRACE_SECONDS:-2} \
	HODEI_KILL_GRACE_SECONDS=$${HODEI_KILL_GRACE_SECONDS:-1}

run: install $(VAR)/secret_key
	$(WITH_KEY) $(BIN)/python manage.py migrate --no-input -v 0
	$(WITH_KEY) $(BIN)/python manage.py bootstrap
	$(WITH_KEY) $(DEV_GRACE) $(BIN)/honcho start -f Procfile

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Tests run against $DATABASE_URL when set (CI points it at PostgreSQL), else SQLite.
test: install lint
	HODEI_DEV=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
