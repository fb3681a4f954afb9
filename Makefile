# The two commands of the README: `make run` and `make test`. Both are idempotent.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test lint typecheck test-embedded test-scaleout bench clean lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when the project definition or the pinned versions change.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# The newest releases pyproject.toml allows, resolved in a scratch venv, as the new pins.
# On the Python the image and CI run (3.11): a newer one could pin releases 3.11 lacks.
LOCK_PYTHON ?= python3.11
lock:
	rm -rf .lock-venv && $(LOCK_PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet '.[dev]'
	.lock-venv/bin/pip freeze --exclude-editable > .lock-venv/frozen
	grep -v '^vpsapi' .lock-venv/frozen > .lock-venv/pins
	{ sed -n '/^#/p' constraints.txt; cat .lock-venv/pins; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .lock-venv

# HOST and PORT as make or environment variables win; else the settings' (.env included).
# Logs on a terminal are readable lines unless LOG_FORMAT (.env included) says otherwise.
run: $(VENV)/.installed
	$(BIN)/vpsapi serve $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

test-embedded: $(VENV)/.installed-dev
	$(BIN)/pytest -q

# Same suite on PostgreSQL + Redis (skipped with a message when they are absent,
# failed when CI=true).
test-scaleout: $(VENV)/.installed-dev
	VPSAPI_TEST_BACKEND=scaleout $(BIN)/pytest -q

# Both runs at once: the suite mostly waits on real processes (servers, nginx, brokers),
# so two runs share the two cores well; the scale-out output follows the embedded one.
# The suites start a few hundred `vpsapi` processes: compiled once here, each start skips
# compiling the package (PYTHONDONTWRITEBYTECODE, set on some machines, would otherwise
# make every process compile it again; 0.6 s each on a slow machine).
test: lint typecheck $(VENV)/.installed-dev
	@$(BIN)/python -m compileall -q src
	@VPSAPI_TEST_BACKEND=scaleout $(BIN)/pytest -q -p no:cacheprovider --durations=15 \
	    --basetemp=$${TMPDIR:-/tmp}/vpsapi-test-scaleout > .test-scaleout.log 2>&1 & \
	scaleout=$$!; \
	echo "== embedded (scale-out runs alongside, output below)"; \
	$(BIN)/pytest -q -p no:cacheprovider --durations=15 --basetemp=$${TMPDIR:-/tmp}/vpsapi-test-embedded; \
	embedded=$$?; wait $$scaleout; scaleout=$$?; \
	echo "== scale-out (VPSAPI_TEST_BACKEND=scaleout)"; cat .test-scaleout.log; \
	exit $$(( embedded || scaleout ))

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/http_load.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
