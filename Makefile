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

# The key job secrets are encrypted with (a Fernet key: 32 random bytes, base64).
$(VAR)/secrets_key:
	mkdir -p $(VAR)
	umask 077 && $(PYTHON) -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())' > $@

# Settings read var/secret_key when SECRET_KEY is unset: make run generates it once.
# Honcho gives processes 5 s after Ctrl-C before SIGKILL: agents get shorter grace
# periods here so that they always finish cleaning up first.
DEV_GRACE = HODEI_SHUTDOWN_GRACE_SECONDS=$${HODEI_SHUTDOWN_GRACE_SECONDS:-2} \
	HODEI_KILL_GRACE_SECONDS=$${HODEI_KILL_GRACE_SECONDS:-1}

# The local agent sandboxes its commands (bubblewrap) wherever that works; on a machine
# without it, it runs them unsandboxed and says so, loudly, with the fix.
NO_SANDBOX_BANNER = printf '\n\033[1;41m WARNING \033[0m the local agent runs commands WITHOUT a sandbox:\n  %s\n  Every job can read the agent'"'"'s environment and files. Install it: sudo apt-get install bubblewrap\n\n' "$$(cat $(VAR)/sandboxcheck.txt)"

run: install $(VAR)/secret_key $(VAR)/secrets_key
	$(BIN)/python manage.py migrate --no-input -v 0
	$(BIN)/python manage.py bootstrap
	@if $(BIN)/python manage.py sandboxcheck >/dev/null 2>$(VAR)/sandboxcheck.txt; \
	then isolation=sandbox; else isolation=none; $(NO_SANDBOX_BANNER); fi; \
	$(DEV_GRACE) HODEI_ISOLATION=$${HODEI_ISOLATION:-$$isolation} \
	$(BIN)/honcho start -f Procfile

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
