"Benchmarks: agreement checks and result keys on the tiny model; the real ratios (slow)."
import json, os, subprocess, sys
from pathlib import Path

import pytest
import torch

from llmrec_nb.bench import run_benchmark, bench_scoring, bench_ranking, bench_training
from llmrec_nb.llm import load_llm

slow = pytest.mark.skipif(not os.environ.get("LLMREC_SLOW"), reason="slow: set LLMREC_SLOW=1")
torch.set_num_threads(1)
KEYS = {"speedup", "baseline_seconds", "engine_seconds", "agreement"}

@pytest.fixture(scope="module")
def tiny():
    return load_llm("tiny")

def test_scoring_agrees(tiny):
    r = bench_scoring(tiny, n=8, batch_size=4)
    assert KEYS <= set(r) and r["agreement"]["identical_auc_1e-4"]

def test_ranking_agrees(tiny):
    r = bench_ranking(tiny, n_prompts=2, n_candidates=6)
    assert KEYS <= set(r) and r["agreement"]["identical_rankings"] == 1.0

def test_training_counts_the_same_tokens(tiny):
    r = bench_training(tiny, n=8, batch_size=4)
    assert KEYS <= set(r)
    assert r["agreement"]["tokens_engine"] == r["agreement"]["tokens_expected"]
    assert 0 < r["gflops_engine"] and 0 < r["matmul_peak_gflops"]

def test_unknown_name():
    with pytest.raises(ValueError, match="unknown benchmark"): run_benchmark("nope", model="tiny")

@slow
@pytest.mark.parametrize("name", ["scoring", "ranking", "training"])
def test_cli_bench_json(name):
    out = subprocess.run([str(Path(sys.executable).parent / "llmrec"), "bench", name, "--json"], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert KEYS <= set(r) and r["speedup"] > 1
