"TALLRec samples, splits, baselines and the tuning loop (tiny model); the paper notebook's smoke profile (slow)."
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec_nb.core import DataFormatError
from llmrec_nb.data import RecData, load_dataset, few_shot
from llmrec_nb.metrics import auc
from llmrec_nb.tallrec import (tallrec_samples, split_samples, to_instructions, labels_of, TallrecStats,
                               popularity_scores, logistic_ctr_scores, ctr_features, tune, tallrec_config, auc_of,
                               SEQUENTIAL_CTR, sequential_ctr_scores)

slow = pytest.mark.skipif(not os.environ.get("LLMREC_SLOW"), reason="slow: set LLMREC_SLOW=1")
torch.set_num_threads(1)

@pytest.fixture(scope="module")
def syn():
    return load_dataset("synthetic", n_users=30, n_items=40, n_per_user=20)

def test_samples_follow_the_protocol(syn):
    s = tallrec_samples(syn, n_samples=None)
    assert s["timestamp"].is_monotonic_increasing
    assert all(len(h) == 10 == len(l) for h, l in zip(s["history"], s["history_labels"]))
    # every history precedes its target for the same user
    it = syn.interactions.set_index(["user", "item"])["timestamp"]
    r = s.iloc[-1]
    assert max(it[(r.user, i)] for i in r.history) <= r.timestamp
    assert set(s["label"]) <= {0, 1}
    kept = tallrec_samples(syn, n_samples=40)
    assert len(kept) == 40 and kept["item"].tolist() == s["item"].iloc[-40:].tolist()

def test_ml100k_sample_count():
    s = tallrec_samples(load_dataset("ml-100k"))
    assert len(s) == 10_000
    sp = split_samples(s)
    assert [len(sp[k]) for k in ("train", "valid", "test")] == [8000, 1000, 1000]
    assert sp["valid"]["timestamp"].min() >= sp["train"]["timestamp"].max()

def test_bad_input(syn):
    implicit = RecData("implicit", syn.interactions.assign(rating=np.nan), syn.items, syn.users)
    with pytest.raises(DataFormatError, match="explicit ratings"): tallrec_samples(implicit)
    with pytest.raises(ValueError, match="ratios"): split_samples(tallrec_samples(syn, n_samples=None), (0.5, 0.5))

def test_baselines_see_the_planted_preference(syn):
    sp = split_samples(tallrec_samples(syn, n_samples=None))
    st = TallrecStats(sp["train"], syn)
    y = sp["test"]["label"].to_numpy()
    assert ctr_features(st, sp["test"]).shape == (len(y), 7)
    assert auc(y, logistic_ctr_scores(st, sp["train"], sp["test"])) > 0.7
    p = popularity_scores(st, sp["test"])
    assert ((p > 0) & (p < 1)).all()
    # one class only: a constant score instead of a crash
    one = sp["train"][sp["train"]["label"] == 1].head(5)
    assert np.ptp(logistic_ctr_scores(st, one, sp["test"])) == 0

@pytest.mark.parametrize("name", SEQUENTIAL_CTR)
def test_sequential_ctr_baselines_learn_from_the_samples_alone(name):
    syn = load_dataset("synthetic", n_users=100, n_items=40, n_per_user=20)
    sp = split_samples(tallrec_samples(syn, n_samples=None))
    y = sp["test"]["label"].to_numpy()
    p = sequential_ctr_scores(name, sp["train"], sp["test"], syn, valid=sp["valid"], epochs=10)
    assert p.shape == y.shape and ((p > 0) & (p < 1)).all()
    assert auc(y, p) > 0.7
    # a few samples of one class: constant scores, no crash
    one = sp["train"][sp["train"]["label"] == 1].head(4)
    assert np.ptp(sequential_ctr_scores(name, one, sp["test"], syn)) == 0

def test_sequential_ctr_rejects_unknown_models(syn):
    sp = split_samples(tallrec_samples(syn, n_samples=None))
    with pytest.raises(ValueError, match="unknown sequential CTR baseline 'Caser'"):
        sequential_ctr_scores("Caser", sp["train"], sp["test"], syn)

def test_tune_keeps_the_best_adapter(syn, tmp_path):
    from llmrec_nb.llm import load_llm
    sp = split_samples(tallrec_samples(syn, n_samples=None))
    llm = load_llm("tiny")
    tr = to_instructions(few_shot(sp["train"], 8, seed=0), syn)
    va = to_instructions(sp["valid"].iloc[:8], syn)
    res = tune(llm, tr, va, tallrec_config(epochs=2, batch_size=4, grad_accum=1, lr=1e-3, patience=5), output_dir=tmp_path)
    assert len(res.evals) == 2 and res.best_metric == max(e["metric"] for e in res.evals)
    assert res.adapter_dir == tmp_path / "best"
    assert abs(auc_of(llm, va) - res.best_metric) < 1e-9

@slow
def test_paper_notebook_smoke(tmp_path):
    import papermill as pm
    root = Path(__file__).resolve().parents[1]
    pm.execute_notebook(str(root / "nbs/paper/tallrec.ipynb"), str(tmp_path / "out.ipynb"), parameters=dict(
        profile="smoke", dataset="synthetic", dataset_kw={"n_users": 40, "n_per_user": 20}, model="tiny",
        n_samples=None, ks=[4, 8], seeds=[0, 1], n_valid=8, n_test=32, epochs=1, out_dir=str(tmp_path / "fig")),
        kernel_name="python3", progress_bar=False)
    import json
    summary = json.loads((tmp_path / "fig" / "summary.json").read_text())
    assert {c["id"] for c in summary["claims"]} == {"tuned_beats_zero_shot", "tuned_beats_baselines"}
    assert (tmp_path / "fig" / "auc_vs_k.png").exists() and (tmp_path / "fig" / "auc.md").exists()
