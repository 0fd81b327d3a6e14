VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test test-fast example lint typecheck

setup:
	bash .ci/setup

# Install everything, then lint, type-check and run the test suite (what CI runs).
test: setup
	$(BIN)/ruff check facestream stream gallery trainer configs tests bench
	bash .ci/typecheck
	$(BIN)/python -m pytest -q

# The developers' lane (under 2 minutes on 2 cores): the unit and in-process tests, without those marked slow:
# the end-to-end ones (browsers, subprocess clusters, Gradio, MLflow training runs, the wheel in a fresh venv) and
# the heavy in-process ones (3 s or more each, or behind such a fixture). CI runs `make test`: all of them.
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

# Install everything, then run the main job on the bundled example.
example: setup
	bash examples/run_example.sh

lint:
	$(BIN)/ruff check facestream stream gallery trainer configs tests bench

typecheck:
	bash .ci/typecheck
