# One command to set up and run the example, one to set up and pass the tests.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
EXAMPLE = examples/ai_training
# The real flytekit, for the parity test only, in a virtualenv of its own: its s3fs pins botocore to a range
# the project's boto3 does not share, and flow files must never load it (tests/test_parity_flytekit.py).
FLYTEKIT_VENV ?= .venv-flytekit
FLYTEKIT_SPEC ?= flytekit>=1.16,<2
# The resident job launcher's fork in C (providers/nsspawn.c, loaded with ctypes): a local job starts without a
# copy of the launcher's Python process. Without a C compiler the launcher forks itself in Python (slower).
NSSPAWN = providers/_nsspawn.so

.PHONY: demo test test-slow soak coverage bench clean deps

$(BIN)/flows: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@# byte-compiled now, as a wheel's install does: where PYTHONDONTWRITEBYTECODE is set, every command would
	@# compile every module it imports again (tens of ms before anything happens)
	$(BIN)/python -m compileall -q reconcile providers state vocab
	@touch $@

$(NSSPAWN): providers/nsspawn.c
	@if command -v $(CC) >/dev/null 2>&1; then $(CC) -O2 -Wall -shared -fPIC -o $@ $<; \
	else echo "No C compiler ($(CC)): local jobs are forked by the launcher in Python (slower, same behaviour)"; fi

demo: deps $(BIN)/flows $(NSSPAWN)
	cd $(EXAMPLE) && ../../$(BIN)/flows plan flow.py model_training --data_path_a data/a.csv --data_path_b data/b.csv
	cd $(EXAMPLE) && ../../$(BIN)/flows apply flow.py model_training --data_path_a data/a.csv --data_path_b data/b.csv --auto-approve
	cd $(EXAMPLE) && ../../$(BIN)/flows plan flow.py model_training --data_path_a data/a.csv --data_path_b data/b.csv --detailed-exitcode

$(FLYTEKIT_VENV)/.installed:
	$(PYTHON) -m venv $(FLYTEKIT_VENV)
	$(FLYTEKIT_VENV)/bin/python -m pip install -q '$(FLYTEKIT_SPEC)'
	@touch $@

test: deps $(BIN)/flows $(NSSPAWN) $(FLYTEKIT_VENV)/.installed
	$(BIN)/lint-imports  # imports point down only (contracts in pyproject.toml)
	$(BIN)/mypy          # the product code type-checks ([tool.mypy] in pyproject.toml)
	$(BIN)/python -m pytest -q -n 4  # most tests wait on real subprocesses and servers

# The slow set (soak runs, harnesses, the malformed-input matrix, scenario replays, browser pages: the list is in
# tests/conftest.py), left out of `make test` to keep it within a few minutes; CI runs both.
test-slow: deps $(BIN)/flows $(NSSPAWN)
	$(BIN)/python -m pytest -q -n 4 -m "slow and not soak"

# The kill/pause harness's soak runs: 25 random trials per provider and kind (FLOWS_HARNESS_TRIALS, _SEED, _ONLY).
soak: deps $(BIN)/flows $(NSSPAWN)
	$(BIN)/python -m pytest -q -n 4 -m soak

# The same suite with line coverage of reconcile/ providers/ state/ vocab/, in the test process and in the
# flows/job subprocesses it starts ([tool.coverage.*] in pyproject.toml); ends with the TOTAL line.
coverage: deps $(BIN)/flows $(NSSPAWN)
	$(BIN)/python -m pytest -q -n 4 --cov --cov-report=term

# Graphviz `dot` draws `flows graph --format svg|html`. Installed from Debian when it is missing and we are root;
# never fails the build: the other formats work without it, and the command says how to install it.
deps:
	@command -v dot >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Graphviz (dot) for flows graph --format svg|html"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q graphviz >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q graphviz >/dev/null 2>&1; } || \
	      echo "Could not install graphviz: svg/html graphs will say how to install it."; \
	  else \
	    echo "Graphviz 'dot' is missing (apt-get install graphviz): svg/html graphs need it."; \
	  fi; }; true

bench: $(BIN)/flows $(NSSPAWN)
	$(BIN)/python bench/compare.py

clean:
	rm -rf $(VENV) $(FLYTEKIT_VENV) bench/.venv .pytest_cache $(NSSPAWN)
