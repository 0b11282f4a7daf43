#!/usr/bin/env bash
# GPU checks (well under 10 minutes on one GPU): vLLM against transformers, bf16 LoRA training, one paper notebook.
# Never part of `make test`; run it wherever a GPU is available.
set -euo pipefail
cd "$(dirname "$0")/.."
make install >/dev/null
.venv/bin/pip install -q -c constraints.txt -e ".[gpu]"
export LLMREC_PROGRESS=0
timeout 600 .venv/bin/python tools/gpu_check.py
