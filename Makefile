# The two commands a user needs: `make run` (the gateway on http://127.0.0.1:7071,
# with the ACS emulator embedded) and `make test` (the whole suite). Both set
# themselves up: a virtual environment in .venv and the npm tools in node_modules.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_READY := $(VENV)/.ready
NODE_READY := node_modules/.ready
# checkov pins many packages of its own, so it lives in a virtual environment apart.
INFRA_VENV := .venv-infra
INFRA_READY := $(INFRA_VENV)/.ready

.PHONY: run test emulator bench mutation clean

$(PY_READY): requirements.txt requirements-dev.txt cli/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Azurite (the Storage emulator) comes from npm, pinned in package-lock.json.
$(NODE_READY): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(INFRA_READY): requirements-infra.txt
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-infra.txt
	touch $@

run: $(PY_READY) $(NODE_READY)
	$(BIN)/python -m devtools.localhost

# For `func start` users: the endpoint and (dummy, dev-only) key local.settings.sample.json expects.
EMULATOR_KEY := ZGV2LW9ubHktZW11bGF0b3Ita2V5LW5vdC1hLXNlY3JldA==
emulator: $(PY_READY)
	$(BIN)/python -m devtools.acs_emulator --port 8089 --access-key $(EMULATOR_KEY)

test: $(PY_READY) $(NODE_READY) $(INFRA_READY)
	$(BIN)/python -m pytest

# Results go to the untracked bench/out/; `make bench RECORD=1` rewrites the committed bench/RESULTS.md.
bench: $(PY_READY) $(NODE_READY)
	$(BIN)/python -m bench $(if $(RECORD),--record)

clean:
	rm -rf $(VENV) $(INFRA_VENV) node_modules .pytest_cache .hypothesis .mutation

# Mutation testing of the core modules (not part of `make test`; CPU-heavy, ~minutes per module).
# `make mutation MODULES=optouts/domain/phone.py` mutates only the modules named. Report: .mutation/report.md
MUTATION_READY := $(VENV)/.mutation-ready
$(MUTATION_READY): $(PY_READY) requirements-mutation.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-mutation.txt
	touch $@

mutation: $(MUTATION_READY) $(NODE_READY)
	$(BIN)/python -m devtools.mutation $(if $(JOBS),--jobs $(JOBS)) $(MODULES)
