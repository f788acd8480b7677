# The README's commands. Everything runs inside .venv; nothing is installed by hand.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.gazeclip-installed
PYTEST_ARGS ?=

.PHONY: install weights demo test clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

weights: install
	$(PY) -m gazeclip weights pull
	$(PY) -m gazeclip weights verify

demo: weights
	$(PY) -m gazeclip demo

test: weights
	GAZECLIP_REQUIRE_WEIGHTS=1 $(PY) -m pytest $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
