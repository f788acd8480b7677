# The README's commands. Everything runs inside .venv; nothing is installed by hand.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.gazeclip-installed
PYTEST_ARGS ?=
# `make demo DEMO_ARGS=--train` also trains the smoke models (done anyway when no reference model is packaged)
DEMO_ARGS ?=

.PHONY: install weights demo test lock clean-venv

# constraints.txt pins every package to the version the tests passed with (reproducible CI);
# pyproject.toml keeps compatible ranges. `make lock` rewrites it from a working .venv.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

weights: install
	$(PY) -m gazeclip weights pull
	$(PY) -m gazeclip weights verify

demo: weights
	$(PY) -m gazeclip demo $(DEMO_ARGS)

test: weights
	GAZECLIP_REQUIRE_WEIGHTS=1 $(PY) -m pytest $(PYTEST_ARGS)

lock: install
	$(PY) .ci/lock.py

clean-venv:
	rm -rf $(VENV)
