# `make demo` and `make test` create .venv when missing, install the package into it
# (again only when pyproject.toml or setup.cfg change), then run.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: demo test benchmark clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml setup.cfg | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,jax,hub]"
	touch $(INSTALLED)

# TensorFlow's C++ start-up messages (no CUDA here, CPU flags) are noise in the demo.
demo: $(INSTALLED)
	TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/keras-compress demo --out demo_out --overwrite

# Lint and type checks, the whole suite on the TensorFlow backend, then the Keras 3 behaviour
# tests again on JAX.
test: $(INSTALLED)
	$(VENV)/bin/ruff check keras_compress tests examples benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest
	KERAS_BACKEND=jax $(PY) -m pytest tests/pruning tests/distillation tests/quantization tests/export tests/runtime tests/compression \
		tests/analysis

benchmark: $(INSTALLED)
	$(PY) benchmarks/pruning.py
	$(PY) benchmarks/distillation.py
	$(PY) benchmarks/export.py
	$(PY) benchmarks/search.py
	$(PY) benchmarks/keras3.py
	$(PY) benchmarks/clustering.py
	$(PY) benchmarks/quantize_aware.py
	$(PY) benchmarks/realsize.py
	$(PY) benchmarks/compress.py
	$(PY) benchmarks/transformers.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
