# gepetto developer commands. Every target sets up what it needs on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export WANDB_MODE := offline
export HF_HUB_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: setup setup-llm gepa-tests test test-fast lint format hooks demo quickstart bench docs clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The real local LLM: Qwen2.5-Coder GGUF models (pinned, sha256-checked) and a portable
# llama-server built from pinned source once per machine (cached in ~/.cache/gepetto),
# probed with a real one-token completion.
setup-llm: setup
	VENV=$(VENV) scripts/setup-local-llm

# Lint, type-check and run every test, the slow ones (real LLM, real processes, PostgreSQL)
# included; the services they need are started for the run and no test may skip.
# gepa 0.1.4's own test files (from its sdist on PyPI, sha256-pinned), run against gepetto.
gepa-tests: setup
	PY=$(PY) scripts/fetch-gepa-tests >/dev/null

# The tests without the local LLM run on two processes (pytest-xdist, 4.5-6.5 minutes here);
# those with it run one at a time (the model servers already use both cores; about 22
# minutes). Both parts run even when the first fails, and each prints its slowest tests
# (where CI's time goes).
test: setup setup-llm gepa-tests lint
	scripts/with-test-services sh -c '$(PY) -m pytest -m "not llm" -n 2 --durations=15; no_llm=$$?; \
		$(PY) -m pytest -m llm --durations=25; exit $$(( no_llm || $$? ))'

# The quick loop: no slow tests.
test-fast: setup
	$(PY) -m pytest -m "not slow" -q

lint: setup
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/ruff format --check src tests bench examples
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Git hooks: ruff, mypy and the import layers on every commit.
hooks: setup
	$(VENV)/bin/pre-commit install

format: setup
	$(VENV)/bin/ruff format src tests bench examples
	$(VENV)/bin/ruff check --fix src tests bench examples

# A real optimization on real local models (ticket routing, Qwen2.5-Coder 0.5B + 1.5B).
demo: setup setup-llm
	$(PY) examples/ticket_routing.py

# The quick start with scripted stand-ins for the LM (no model needed, a few seconds).
quickstart: setup
	$(PY) examples/quickstart_scripted.py

# The documentation site, built offline into site/ (open site/index.html).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: setup
	$(PY) bench/overhead.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache site
