# Two commands for a newcomer: `make demo` (set up, run the main job) and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build of torch on machines that ship it; the project itself asks only torch>=2.2.
TORCH  ?= torch==2.13.0

.PHONY: demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)" || $(PY) -m pip install -q "torch>=2.2"
	$(PY) -m pip install -q -e ".[dev,ray]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/initlab demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(VENV)/.installed
	$(PY) benchmarks/init_speed.py
	$(PY) benchmarks/sweep_speed.py --quick

clean:
	rm -rf $(VENV) initlab-runs .pytest_cache
