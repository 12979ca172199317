# Two commands do all the set-up on a fresh machine:
#   make demo   -> creates .venv if missing, installs the project, runs `python main.py task=demo suite=demo` on the
#                  embedded photos (corruption table, gallery, report.html)
#   make test   -> the same install, then the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) main.py task=demo suite=demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/corruption_speed.py
	$(PY) benchmarks/fidelity.py

clean:
	rm -rf outputs multirun .pytest_cache
