"TALLRec samples, splits, baselines and the tuning loop (tiny model); the paper notebook's smoke profile (slow)."
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec_nb.core import DataFormatError
from llmrec_nb.data import RecData, few_shot
from llmrec_nb.loaders import load_dataset
from llmrec_nb.metrics import auc
from llmrec_nb.tallrec import (tallrec_samples, split_samples, to_instructions, labels_of, TallrecStats,
                               popularity_scores, logistic_ctr_scores, ctr_features, oof_ctr_features, few_shot_baselines,
                               tune, tallrec_config, auc_of, SEQUENTIAL_CTR, sequential_ctr_scores)

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
    assert oof_ctr_features(sp["train"], syn).shape == (len(sp["train"]), 7)
    assert auc(y, logistic_ctr_scores(sp["train"], sp["test"], syn)) > 0.7
    p = popularity_scores(sp["train"], sp["test"])
    assert ((p > 0) & (p < 1)).all()
    # one class only: a constant score instead of a crash
    one = sp["train"][sp["train"]["label"] == 1].head(5)
    assert np.ptp(logistic_ctr_scores(one, sp["test"], syn)) == 0


def _flip_pair(df, user, item):
    "Flip the label of one (user, item) interaction wherever the samples show it: as a target and in histories."
    out = df.copy()
    hit = (out["user"] == user) & (out["item"] == item)
    out.loc[hit, "label"] = 1 - out.loc[hit, "label"]
    out["history_labels"] = [[1 - l if (u == user and i == item) else l for i, l in zip(h, hl)]
                             for u, h, hl in zip(out["user"], out["history"], out["history_labels"])]
    return out


def test_training_features_never_see_their_own_label(syn):
    train = few_shot(split_samples(tallrec_samples(syn, n_samples=None))["train"], 48, seed=2).reset_index(drop=True)
    base = oof_ctr_features(train, syn, seed=0)
    in_sample = ctr_features(TallrecStats(train, syn), train)
    moved = 0
    for r in range(len(train)):
        flipped = _flip_pair(train, train["user"].iloc[r], train["item"].iloc[r])
        np.testing.assert_array_equal(oof_ctr_features(flipped, syn, seed=0)[r], base[r])
        moved += not np.allclose(ctr_features(TallrecStats(flipped, syn), flipped)[r], in_sample[r])
    assert moved == len(train)   # in-sample target encoding would leak every row's label into its own features


def test_pairs_seen_twice_are_excluded_from_their_fold():
    # two samples of one user: the first one's target (u, b) reappears in the second one's history
    s = pd.DataFrame({"user": ["u", "u"], "item": ["b", "c"], "label": [1, 0], "timestamp": [1, 2],
                      "history": [["a"], ["a", "b"]], "history_labels": [[0], [0, 1]]})
    st = TallrecStats(s, exclude=[("u", "b")])
    assert st.users.loc["u", "count"] == 2 and st.users.loc["u", "sum"] == 0 and "b" not in st.items.index
    assert TallrecStats(s).users.loc["u", "sum"] == 1


def test_baselines_at_k_use_only_the_k_samples(syn):
    sp = split_samples(tallrec_samples(syn, n_samples=None))
    pool, k, seed = sp["train"], 20, 3
    drawn = few_shot(pool, k, seed=seed)
    outside = ~pool.index.isin(drawn.index)
    noisy = pool.assign(label=np.where(outside, 1 - pool["label"], pool["label"]))
    noisy["history_labels"] = [[1 - l for l in hl] if o else hl for o, hl in zip(outside, noisy["history_labels"])]
    kw = dict(sequential=("GRU4Rec",), valid=sp["valid"], dim=16, epochs=2)
    a, b = (few_shot_baselines(p, k, seed, sp["test"], syn, **kw) for p in (pool, noisy))
    assert set(a) == {"Popularity", "CTR-LR", "GRU4Rec"}
    for name in a: np.testing.assert_array_equal(a[name], b[name])
    np.testing.assert_array_equal(a["Popularity"], popularity_scores(drawn, sp["test"]))
    np.testing.assert_array_equal(a["CTR-LR"], logistic_ctr_scores(drawn, sp["test"], syn, seed=seed))
    # the flips do reach statistics built from the whole pool
    assert not np.allclose(popularity_scores(pool, sp["test"]), popularity_scores(noisy, sp["test"]))
    # an item none of the K samples shows scores the K samples' like rate, whatever the pool says about it
    two = few_shot(pool, 2, seed=seed)
    unseen = ~sp["test"]["item"].isin(set(two["item"]) | {i for h in two["history"] for i in h}).to_numpy()
    assert unseen.any()
    pop2 = few_shot_baselines(pool, 2, seed, sp["test"], syn, sequential=())["Popularity"]
    np.testing.assert_allclose(pop2[unseen], TallrecStats(two).prior)


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
    assert {c["id"] for c in summary["claims"]} == {"tuned_beats_zero_shot", "tuned_beats_baselines", "more_samples_help"}
    assert (tmp_path / "fig" / "auc_vs_k.png").exists() and (tmp_path / "fig" / "auc.md").exists()
