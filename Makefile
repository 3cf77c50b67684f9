# make demo: create .venv, install only what the demo needs (the `demo` extra), train and
#            evaluate the demo models, print the wall time.
# make test: create/use .venv, install the extras and the system tools the tests use (the
#            tools through .ci/tools.sh, as .ci/run does), lint, type-check, run the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= cpu,train,dev,deploy,ray

.PHONY: install demo tools test lint test-slow test-container clean prometheusrule

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found " + sys.version.split()[0] + "): set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-$(subst ,,$(EXTRAS)): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed-$(subst ,,$(EXTRAS))

# onnxruntime, torch, onnx, onnxscript and scikit-learn on top of the core: not the dev,
# deploy or ray extras. One shell line, so that the wall time covers the whole target.
demo:
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory install EXTRAS=demo || exit 1; \
	installed=$$(date +%s); \
	$(BIN)/anomaly demo --out demo-output || exit 1; \
	end=$$(date +%s); \
	echo "make demo: $$((end - start)) s wall time ($$((installed - start)) s install," \
	     "$$((end - installed)) s demo)"

# Debian packages the tests run (promtool, prometheus, amtool, docker-compose, shellcheck,
# chromium): installed with apt-get when it may be used, else one line says what will skip.
tools:
	@.ci/tools.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# the last line says how many tests skipped for a missing tool and for absent data
test: tools lint
	$(BIN)/python -m pytest

# the slow tests run the benchmarks' quick modes, which need the bench extra (PyOD)
test-slow:
	$(MAKE) install EXTRAS=$(EXTRAS),bench
	$(BIN)/python -m pytest -m slow

# build the CPU image with buildah (deploy/docker/build-local.sh) and test it running; needs
# root and the tools `.ci/tools.sh --container` installs (buildah, debootstrap, podman, ...)
test-container: install
	@.ci/tools.sh --container
	$(BIN)/python -m pytest -m container tests/deploy/test_container.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache

# Regenerate the prometheus-operator PrometheusRule from deploy/prometheus/alerts.yml.
prometheusrule: install
	$(BIN)/python deploy/gen_prometheusrule.py
