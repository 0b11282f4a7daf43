#!/usr/bin/env bash
# GPU checks (well under 10 minutes on one GPU): vLLM against transformers, bf16 LoRA training, one paper notebook.
# Never part of `make test`. tools/gpu_check.py says more.
#   bash tools/gpu_check.sh [--out DIR]           GPU machine with internet: .venv-gpu from constraints-gpu.txt, then the checks
#   bash tools/gpu_check.sh --cpu                 the same checks in .venv on this CPU with the tiny model
#   bash tools/gpu_check.sh pack                  here: .whl/gpu/call1..N for a GPU machine without internet (64 MiB a call)
#   bash tools/gpu_check.sh stage                 there, each call but the last: keep the carried part in /tmp
#   bash tools/gpu_check.sh offline [--out DIR]   there, the last call: install the parts into /tmp, run the checks with
#                                                 the machine's own python3 (LLMREC_GPU_PYTHON names another)
set -euo pipefail
cd "$(dirname "$0")/.."
export LLMREC_PROGRESS=0
case "${1:-}" in
  pack)
    shift
    # packing reads wheel metadata with `packaging`, which .venv has
    py=python3; test -x .venv/bin/python && py=.venv/bin/python
    exec "$py" tools/gpu_check.py pack "$@" ;;
  stage)
    exec "${LLMREC_GPU_PYTHON:-python3}" tools/gpu_check.py stage ;;
  offline)
    shift
    py="${LLMREC_GPU_PYTHON:-python3}"
    "$py" tools/gpu_check.py unpack
    export PYTHONPATH="/tmp/llmrec-site:$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    exec timeout "${LLMREC_GPU_TIMEOUT:-480}" "$py" tools/gpu_check.py "$@" ;;
  --cpu)
    make install >/dev/null
    exec timeout 600 .venv/bin/python tools/gpu_check.py "$@" ;;
  *)
    make gpu-env >/dev/null
    exec timeout 600 .venv-gpu/bin/python tools/gpu_check.py "$@" ;;
esac
