# The two commands of README.md. Both set up .venv themselves (once; reused while pyproject.toml is unchanged).
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup study smoke test test-heavy bench clean-venv

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	# the CPU wheel of torch 2.13 first, so no range below pulls a CUDA build
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# main job: the FSRF sweep on the embedded synthetic MOSI-like data
study: $(STAMP)
	$(VENV)/bin/python -m raymsa.study fsrf_sweep $(ARGS)

smoke: $(STAMP)
	$(VENV)/bin/python -m raymsa.study fsrf_sweep --smoke $(ARGS)

# the quick tier (pyproject.toml's addopts leave out tests marked heavy); CI runs both tiers
test: $(STAMP)
	$(VENV)/bin/python -m pytest $(ARGS)

test-heavy: $(STAMP)
	$(VENV)/bin/python -m pytest -m heavy $(ARGS)

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/run_all.py

clean-venv:
	rm -rf $(VENV)
