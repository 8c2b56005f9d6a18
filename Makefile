# One command to set up and run the example, one to set up and pass the tests.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
EXAMPLE = examples/ai_training

.PHONY: demo test bench clean

$(BIN)/flows: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

demo: $(BIN)/flows
	cd $(EXAMPLE) && ../../$(BIN)/flows plan flow.py model_training --data_path_a data/a.csv --data_path_b data/b.csv
	cd $(EXAMPLE) && ../../$(BIN)/flows apply flow.py model_training --data_path_a data/a.csv --data_path_b data/b.csv --auto-approve
	cd $(EXAMPLE) && ../../$(BIN)/flows plan flow.py model_training --data_path_a data/a.csv --data_path_b data/b.csv --detailed-exitcode

test: $(BIN)/flows
	$(BIN)/python -m pytest -q

bench: $(BIN)/flows
	$(BIN)/python bench/compare.py

clean:
	rm -rf $(VENV) bench/.venv .pytest_cache
