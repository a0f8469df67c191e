# The two README commands, and the setup they share. Everything runs from the repo-local .venv.
PYTHON ?= python3
VENV := .venv
REPORT ?= report

.PHONY: setup test demo clean

setup:
	$(PYTHON) scripts/bootstrap.py --venv $(VENV)

test: setup
	$(VENV)/bin/pytest

demo: setup
	$(VENV)/bin/microexp demo --report $(REPORT)

clean:
	rm -rf build $(VENV)
