#!/usr/bin/env python
"""GPU checks, in one run of a few minutes on one GPU: the real vLLM backend against the transformers backend,
bf16 LoRA training on the bundled model, and one paper notebook at the quick profile. Prints one summary table.

    bash tools/gpu_check.sh            # installs the `gpu` extra (vllm) into .venv first
"""
from __future__ import annotations
import json, os, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(fn):
    t0 = time.perf_counter(); out = fn(); return out, time.perf_counter() - t0


def main(n_prompts: int = 128, notebook: str = "tallrec") -> int:
    import numpy as np, torch
    from llmrec_nb.loaders import load_dataset
    from llmrec_nb.llm import load_llm, generate, rank_candidates
    from llmrec_nb.metrics import auc
    from llmrec_nb import tallrec
    rows = []
    if not torch.cuda.is_available(): sys.exit("no CUDA device: these checks are for a GPU machine")
    rows.append(("device", torch.cuda.get_device_name(0), ""))
    data = load_dataset("ml-100k")
    split = tallrec.split_samples(tallrec.tallrec_samples(data, n_samples=2000))
    test = tallrec.to_instructions(split["test"].iloc[:n_prompts], data)
    labels = tallrec.labels_of(test)
    hf = load_llm("smollm2-135m", device="cuda", dtype="bfloat16")
    vl = load_llm("smollm2-135m", backend="vllm", dtype="bfloat16")
    p_hf, t_hf = timed(lambda: tallrec.score(hf, test))
    p_vl, t_vl = timed(lambda: tallrec.score(vl, test))
    rows.append(("yes/no AUC transformers / vLLM", f"{auc(labels, p_hf):.4f} / {auc(labels, p_vl):.4f}",
                 f"|ΔAUC| {abs(auc(labels, p_hf) - auc(labels, p_vl)):.2e} (target ≤ 1e-3)"))
    rows.append(("yes/no prompts per second", f"{len(test) / t_hf:.1f} / {len(test) / t_vl:.1f}", "transformers / vLLM"))
    prompts = tallrec.prompts_of(hf, test[:32])
    cands = [list(data.items["title"].sample(20, random_state=i)) for i in range(len(prompts))]
    r_hf = rank_candidates(hf, prompts, cands); r_vl = rank_candidates(vl, prompts, cands)
    rows.append(("candidate top-1 agreement", f"{np.mean(r_hf.argmax(1) == r_vl.argmax(1)):.3f}", "target ≥ 0.95"))
    g_hf, tg_hf = timed(lambda: generate(hf, prompts, max_new_tokens=24))
    g_vl, tg_vl = timed(lambda: generate(vl, prompts, max_new_tokens=24))
    rows.append(("greedy generations identical", f"{np.mean([a == b for a, b in zip(g_hf, g_vl)]):.3f}", "target ≥ 0.95"))
    rows.append(("greedy generation seconds", f"{tg_hf:.2f} / {tg_vl:.2f}", "transformers / vLLM"))
    del vl
    from llmrec_nb.lora import train_lora
    train = tallrec.to_instructions(split["train"].iloc[:256], data)
    res = train_lora(hf, train, config=tallrec.tallrec_config(epochs=1, batch_size=16, lr=1e-3),
                     output_dir=ROOT / "runs" / "gpu-check" / "lora")
    rows.append(("bf16 LoRA training", f"{res.tokens_per_second:.0f} tokens/s", f"final loss {res.log['loss'].iloc[-1]:.3f}"))
    t0 = time.perf_counter()
    rc = subprocess.run([str(Path(sys.executable).parent / "llmrec"), "reproduce", "--profile", "quick", "--only", notebook,
                         "--out", str(ROOT / "runs" / "gpu-check" / "figures")], cwd=ROOT).returncode
    rows.append((f"{notebook} notebook, quick profile", f"{time.perf_counter() - t0:.0f} s", "ok" if rc == 0 else f"failed ({rc})"))
    width = max(len(r[0]) for r in rows)
    print("\n" + "\n".join(f"{a:<{width}}  {b:<28} {c}" for a, b, c in rows))
    (ROOT / "runs" / "gpu-check").mkdir(parents=True, exist_ok=True)
    (ROOT / "runs" / "gpu-check" / "summary.json").write_text(json.dumps(rows, indent=1))
    return rc


if __name__ == "__main__":        # vLLM starts its engine with `spawn`: the work must sit behind this guard
    sys.exit(main())
