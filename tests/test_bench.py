"Benchmarks: agreement checks, timed paths and machine fields on the tiny model; the real ratios (slow)."
import json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch

from llmrec_nb.bench import (run_benchmark, bench_scoring, bench_ranking, bench_training, bench_generation, benchmark_table, loss_curve_agreement,
                             ranking_agreement, scoring_agreement)
from llmrec_nb.core import ISA_FLAGS
from llmrec_nb.llm.kernels import onednn_linear_kernel
from llmrec_nb.llm import load_llm

slow = pytest.mark.skipif(not os.environ.get("LLMREC_SLOW"), reason="slow: set LLMREC_SLOW=1")
torch.set_num_threads(1)
KEYS = {"speedup", "baseline_seconds", "engine_seconds", "agreement", "paths", "ablation", "machine"}
MACHINE = {"cpu", "torch", "threads", "dtype", "dtype_reason", "kernel_path", "kernel_path_reason"}

@pytest.fixture(scope="module")
def tiny():
    return load_llm("tiny")

def test_scoring_agrees(tiny):
    r = bench_scoring(tiny, n=8, batch_size=4)
    assert KEYS <= set(r) and r["agreement"]["identical_auc_1e-4"] and r["agreement"]["auc_within_delong_ci"]
    assert MACHINE <= set(r["machine"]) and set(r["machine"]["cpu"]["flags"]) == set(ISA_FLAGS)
    assert {"baseline", "engine", "engine_float32_stock"} <= set(r["paths"])
    assert ("engine_float32_onednn" in r["paths"]) == (onednn_linear_kernel() is not None)
    json.dumps(r, default=float)

def test_scoring_in_bf16_is_deterministic_and_keeps_the_float32_baseline(tiny):
    a = bench_scoring(tiny, n=8, batch_size=4, rounds=1, dtype="bfloat16")
    b = bench_scoring(tiny, n=8, batch_size=4, rounds=1, dtype="bfloat16")
    assert a["machine"]["dtype"] == "bfloat16" and a["machine"]["kernel_path"] == "stock"
    assert a["agreement"] == b["agreement"]                           # two runs on one machine: the same numbers
    assert a["agreement"]["identical_auc_1e-4"] and a["agreement"]["max_prob_abs_diff"] < 0.05
    assert next(tiny.model.parameters()).dtype == torch.float32      # the engine ran on its own copy

def test_ranking_agrees(tiny):
    r = bench_ranking(tiny, n_prompts=2, n_candidates=6)
    assert KEYS <= set(r) and r["agreement"]["identical_rankings"] == 1.0 and r["agreement"]["top1_agreement"] == 1.0

def test_training_counts_the_same_tokens(tiny):
    r = bench_training(tiny, n=8, batch_size=4)
    assert KEYS <= set(r)
    assert r["agreement"]["tokens_engine"] == r["agreement"]["tokens_expected"]
    assert 0 < r["gflops_engine"] and 0 < r["matmul_peak_gflops"]
    assert r["agreement"]["loss_curves_within_2pct"]

def test_training_in_bf16_keeps_float32_adapters(tiny):
    r = bench_training(tiny, n=8, batch_size=4, dtype="bfloat16")
    assert r["machine"]["dtype"] == "bfloat16" and "torch_mm_bf16" in r["matmul_peaks_gflops"]
    assert len(r["agreement"]["loss_curve_engine"]) == len(r["agreement"]["loss_curve_float32"]) > 0

@pytest.mark.parametrize("precision", ["auto", "model"])
def test_bf16_lora_training_follows_the_float32_loss_curve(tmp_path, precision):
    # auto (a CPU): float32 compute on the bf16 weights; model: one autocast block spans the whole run, and the
    # adapters' updates must reach every later forward pass
    from test_lora import toy
    from llmrec_nb.lora import LoraTrainConfig, train_lora
    cfg = LoraTrainConfig(lr=3e-3, epochs=3, batch_size=8, style="alpaca", dropout=0.0, seed=0, precision=precision)
    runs = {dt: train_lora(load_llm("tiny", dtype=dt), toy(16), config=cfg, output_dir=tmp_path / dt) for dt in ("float32", "bfloat16")}
    bf16 = runs["bfloat16"]
    assert {p.dtype for p in bf16.model.parameters() if p.requires_grad} == {torch.float32}      # float32 adapters
    head = bf16.model.get_base_model().get_output_embeddings().weight
    assert {p.dtype for p in bf16.model.parameters() if not p.requires_grad and p is not head} == {torch.bfloat16}  # bf16 base
    assert head.dtype == torch.float32                                                             # float32 head
    a = loss_curve_agreement(bf16.log, runs["float32"].log)
    assert a["loss_steps"] == 6 and a["loss_curve_max_rel_diff"] < 2e-3, a
    assert runs["float32"].log["loss"].iloc[-1] < runs["float32"].log["loss"].iloc[0] - 0.1         # it did learn

def test_agreement_checks_can_fail():
    y = np.array([0, 1] * 10); p = np.linspace(0.05, 0.95, 20)
    assert scoring_agreement(y, p, p, p)["auc_within_delong_ci"]
    opposite = scoring_agreement(y, 1 - y + 0.01 * p, y + 0.01 * p, p)    # AUC 0 against AUC 1: outside the interval
    assert not opposite["auc_within_delong_ci"] and opposite["auc_abs_diff"] == 1.0
    assert ranking_agreement([np.array([1., 2, 3])], [np.array([3., 2, 1])], [np.array([1., 2, 3])])["top1_agreement"] == 0.0
    assert not loss_curve_agreement({"loss": [1.0, 0.9]}, {"loss": [1.0, 0.8]})["loss_curves_within_2pct"]
    assert not loss_curve_agreement({"loss": [1.0]}, {"loss": [1.0, 0.8]})["loss_curves_within_2pct"]

def test_table_names_the_machine(tiny):
    r = bench_ranking(tiny, n_prompts=2, n_candidates=4, rounds=1)
    table = benchmark_table([r])
    assert r["machine"]["cpu"]["model"] in table and "float32 / " + r["machine"]["kernel_path"] in table
    assert all(line.count("|") == 10 for line in table.splitlines())

def test_generation_agrees(tiny):
    r = bench_generation(tiny, n=3, max_new_tokens=4, num_beams=2)
    assert KEYS <= set(r) and set(r["modes"]) == {"greedy", "beam2"}
    assert r["agreement"]["identical_texts_float32"] == 1.0 and r["agreement"]["identical_texts"] == 1.0
    assert "identical texts 100%" in benchmark_table([r])

def test_unknown_name():
    with pytest.raises(ValueError, match="unknown benchmark"): run_benchmark("nope", model="tiny")

@slow
@pytest.mark.parametrize("name", ["scoring", "ranking", "training", "generation"])
def test_cli_bench_json(name):
    out = subprocess.run([str(Path(sys.executable).parent / "llmrec"), "bench", name, "--json"], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert KEYS <= set(r) and r["speedup"] > 1 and r["machine"]["cpu"]["model"]
