"SOFT: schedule, distance, two-source loss through train_lora, grounding with duplicate titles, α on validation, best epoch kept."
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec_nb.data import RecData
from llmrec_nb.loaders import load_dataset
from llmrec_nb.llm import load_llm
from llmrec_nb.lora import remove_lora, train_lora
from llmrec_nb.curriculum import (next_item_windows, sample_splits, to_instructions, build_catalogue, embed_catalogue,
                                  embed_texts, model_identity, ground_report, generate_titles, l2_distances,
                                  self_distill, soft_lambda, SoftSchedule, TargetDistance, ValidationMetric, train_sft,
                                  train_soft, soft_config, choose_alpha)

torch.set_num_threads(1)
GEN = dict(num_beams=2, max_new_tokens=4, batch_size=8)

@pytest.fixture(scope="module")
def setup():
    syn = load_dataset("synthetic", n_users=30, n_items=40, n_per_user=20)
    sp = sample_splits(next_item_windows(syn), sizes=(12, 6, 6))
    cat = build_catalogue(syn)
    llm = load_llm("tiny")
    embed_catalogue(llm, cat, cache=False)
    return syn, sp, cat, llm

def test_schedule_hand_values():
    assert soft_lambda(10, 10, 0.1) == 1.0
    assert math.isclose(soft_lambda(9, 10, 1), math.exp(-0.1))
    assert math.isclose(soft_lambda(9, 10, 10), math.exp(-1.0))
    assert math.isclose(soft_lambda(9, 10, 100), math.exp(-10.0))
    assert soft_lambda(11, 10, 100) == 1.0
    d = iter([9.0, 12.0, 5.0])
    s = SoftSchedule(lambda: next(d), d0=10.0, alpha=1.0)
    np.testing.assert_allclose([s(e) for e in range(4)], [1.0, math.exp(-0.1), 1.0, math.exp(-0.5)], rtol=1e-12)
    assert [r["epoch"] for r in s.log] == [1, 2, 3, 4]

def test_distance_uses_the_adapter_for_generation_and_the_base_for_embeddings(setup, tmp_path):
    syn, sp, cat, llm = setup
    tr = to_instructions(sp["train"], syn)
    dist = TargetDistance(llm, tr[:4], **GEN)
    d_base = dist()
    manual = np.linalg.norm(embed_texts(llm, generate_titles(llm, tr[:4], **GEN)) - embed_texts(llm, [i.output for i in tr[:4]]), axis=1).mean()
    assert math.isclose(d_base, manual, rel_tol=1e-5)
    before = embed_texts(llm, cat.texts[:5])
    ident = model_identity(llm)
    train_lora(llm, tr, config=soft_config(epochs=2, lr=5e-2, batch_size=4, seed=1), output_dir=tmp_path)
    try:
        # LoRA B starts at zero: the adapter must have moved for this test to mean anything
        assert any(p.abs().sum() > 0 for n, p in llm.model.named_parameters() if "lora_B" in n)
        np.testing.assert_allclose(embed_texts(llm, cat.texts[:5]), before, rtol=1e-5, atol=1e-5)   # base embeddings
        np.testing.assert_allclose(dist.targets, embed_texts(llm, [i.output for i in tr[:4]]), rtol=1e-5, atol=1e-5)
        assert model_identity(llm) == ident                     # the cache key ignores adapters
        texts = generate_titles(llm, tr[:4], **GEN)
        assert math.isclose(dist(), np.linalg.norm(embed_texts(llm, texts) - dist.targets, axis=1).mean(), rel_tol=1e-5)
    finally:
        remove_lora(llm)
    assert model_identity(load_llm("tiny", seed=1)) != ident

def _adapter(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}

def test_two_source_weights_reach_train_lora(setup, tmp_path):
    "λ ≡ 1 makes the real outputs irrelevant and λ ≡ 0 the self-distilled ones; a schedule's λ values are the ones used."
    syn, sp, cat, llm = setup
    tr = to_instructions(sp["train"], syn)
    shuffled = [replace(i, output=o) for i, o in zip(tr, [i.output for i in tr][::-1])]
    sd = self_distill(None, tr, texts=[f"Made up title {k}" for k in range(len(tr))])
    cfg = soft_config(epochs=1, lr=5e-2, batch_size=4, dropout=0.0, group_by_length=False, share_prefix=False)
    runs = {}
    for name, main, aux, lam in [("a", tr, sd, 1.0), ("b", shuffled, sd, 1.0), ("c", tr, sd, 0.0), ("d", tr, shuffled, 0.0)]:
        train_lora(llm, main, config=cfg, output_dir=tmp_path / name, aux=aux, mix_lambda=lambda e, m, lam=lam: lam)
        runs[name] = _adapter(llm.model); remove_lora(llm)
    # Adam turns float noise in near-zero gradients into small steps, so "irrelevant" is judged against the effect
    # of the weights themselves: swapping the ignored source moves the adapter far less than changing λ does
    gap = lambda x, y: max(float((runs[x][k] - runs[y][k]).abs().max()) for k in runs[x])
    assert gap("a", "b") < 1e-3 * gap("a", "c") and gap("c", "d") < 1e-3 * gap("a", "c")
    d = iter([0.5, 2.0])
    sched = SoftSchedule(lambda: next(d), d0=1.0, alpha=1.0, log_path=tmp_path / "sched.json")
    va = to_instructions(sp["valid"], syn)
    res, _ = train_soft(llm, tr, sd, va, cat, sched, replace(cfg, epochs=3), tmp_path / "soft", **GEN)
    remove_lora(llm)
    assert sorted(res.lambdas) == [0, 1, 2]
    np.testing.assert_allclose([res.lambdas[e] for e in range(3)], [1.0, math.exp(-0.5), 1.0], rtol=1e-12)
    assert [r["lambda"] for r in sched.log] == [res.lambdas[e] for e in range(3)]
    with pytest.raises(ValueError, match="same prompts"):
        train_soft(llm, tr, sd[::-1], va, cat, sched, cfg, tmp_path / "bad", **GEN)

def test_grounding_with_duplicate_titles(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_CACHE", str(tmp_path / "cache"))
    items = pd.DataFrame({"item": ["a", "b", "c", "d", "e"], "title": ["Alien (1979)", "Alien", "Heat (1995)", "Up", "Jaws"],
                          "genres": [["Sci-Fi"], ["Horror"], ["Crime"], ["Kids"], ["Horror"]]})
    data = RecData("dup", pd.DataFrame({"user": ["u"] * 5, "item": list(items["item"]), "timestamp": range(5)}), items)
    cat = build_catalogue(data)
    assert len(cat) == 4 and cat.groups(["a", "b"]).tolist() == [0, 0]
    llm = load_llm("tiny")
    embed_catalogue(llm, cat)
    assert len(list((tmp_path / "cache" / "embeddings").glob("*.npy"))) == 1
    assert (np.abs(cat.embeddings).sum(1) > 0).all() and cat.embeddings.shape[0] == 4
    cached = cat.embeddings.copy()
    cat.embeddings = None
    embed_catalogue(llm, cat)                                 # read back from the cache
    np.testing.assert_array_equal(cat.embeddings, cached)
    rep = ground_report(llm, ["Alien (1979)", "Heat (1995)", "no such film"], ["b", "d", "e"], cat, ks=(1, 2), category_ks=(1,))
    assert rep["HR@1"][0] == 1.0 and rep["distance"][0] < 1e-3  # the twin's title is a hit for item b
    assert rep["valid"].tolist() == [1.0, 1.0, 0.0]
    assert rep["HR@1"][1] == 0.0                              # "Heat" is its own group, not "Up"'s
    assert rep["HC@1"][0] == 1.0                              # the group of a and b carries b's Horror
    d = l2_distances(embed_texts(llm, ["no such film"]), cat.embeddings)[0]
    assert rep["HR@1"][2] == float(np.argmin(d) == cat.groups(["e"])[0])

def test_min_distance_beam_is_kept(setup):
    syn, sp, cat, llm = setup
    tr = to_instructions(sp["train"], syn)[:4]
    from llmrec_nb.llm import generate
    from llmrec_nb.templates import render_prompt
    beams = generate(llm, [render_prompt(i, llm.tokenizer) for i in tr], 4, 3, 3)
    got = generate_titles(llm, tr, num_beams=3, max_new_tokens=4, select="min_distance", catalogue=cat)
    for bs, g in zip(beams, got):
        near = l2_distances(embed_texts(llm, bs), cat.embeddings).min(1)
        assert g == bs[int(np.argmin(near))]
    assert generate_titles(llm, tr, num_beams=3, max_new_tokens=4) == [b[0] for b in beams]

def test_alpha_is_chosen_on_validation_not_test():
    runs = {0.1: {"valid": 0.30, "test": 0.10}, 1: {"valid": 0.20, "test": 0.50}, 10: {"valid": 0.25, "test": 0.40},
            100: {"valid": 0.10, "test": 0.20}}
    best_test = max(runs, key=lambda a: runs[a]["test"])
    chosen = choose_alpha({a: r["valid"] for a, r in runs.items()})
    assert chosen == 0.1 != best_test
    assert choose_alpha({1: 0.2, 10: 0.2}) == 1

def test_best_epoch_adapter_is_kept(setup, tmp_path):
    syn, sp, cat, llm = setup
    tr, va = to_instructions(sp["train"], syn), to_instructions(sp["valid"], syn)
    # mean distance to the target title moves every epoch; lower is better here
    cfg = soft_config(epochs=4, lr=1e-1, batch_size=4, greater_is_better=False, patience=None, seed=0)
    val = ValidationMetric(llm, va, cat, metric="distance", **GEN)
    res = train_lora(llm, tr, config=cfg, output_dir=tmp_path, eval_fn=val)
    try:
        metrics = [e["metric"] for e in res.evals]
        assert len(set(metrics)) > 1 and res.best_metric == min(metrics)
        assert res.best_step != res.global_step, "this setting must make an earlier epoch the best one"
        assert math.isclose(ValidationMetric(llm, va, cat, metric="distance", **GEN)(), res.best_metric, rel_tol=1e-6)
        assert val.best(res)["distance"] == res.best_metric
    finally:
        remove_lora(llm)
    res2, val2 = train_sft(llm, tr, va, cat, soft_config(epochs=2, lr=5e-2, batch_size=4), tmp_path / "sft", **GEN)
    remove_lora(llm)
    assert val2.score(val2.best(res2)) == res2.best_metric == max(e["metric"] for e in res2.evals)

def test_hit_rate_ties_are_broken_by_distance_and_never_overturn_a_hit(setup):
    syn, sp, cat, llm = setup
    val = ValidationMetric(llm, to_instructions(sp["valid"], syn)[:4], cat, **GEN)
    one_hit_far, no_hit_near, no_hit_far = ({"HR@10": 0.25, "distance": 50.0}, {"HR@10": 0.0, "distance": 0.0},
                                            {"HR@10": 0.0, "distance": 3.0})
    assert val.score(one_hit_far) > val.score(no_hit_near) > val.score(no_hit_far)
    assert val.score(no_hit_near) <= 0.25 / 2 and math.isclose(val.score(one_hit_far), 0.25, abs_tol=0.5 / 4 / 51 + 1e-12)
    assert ValidationMetric(llm, [], cat, metric="distance").score(no_hit_far) == 3.0     # not a hit rate: no tie-break

def test_paper_notebook_smoke_through_reproduce(smoke_out):
    import json
    out = smoke_out
    summary = json.loads((out / "soft" / "summary.json").read_text())
    claims = {c["id"]: c for c in summary["claims"]}
    assert set(claims) == {"soft_beats_sft", "sd_data_easier", "self_adaptive_helps"}
    # tested over users, not over the windows that repeat them: 8 test windows of the smoke profile come from fewer users
    n_users = claims["soft_beats_sft"]["n"]
    assert n_users < 8 and "users (8 test windows)" in claims["soft_beats_sft"]["detail"]
    assert claims["self_adaptive_helps"]["n"] == n_users and claims["soft_beats_sft"]["ci_low"] is not None
    # empty self-distilled answers (kept as the real title) are counted in a table
    assert all("sd_empty" in r for r in summary["tables"]["train_hits"])
    for f in ("main.md", "main.csv", "schedule.png", "alpha_sensitivity.pdf", "first_epoch_loss.png", "category_hits.png",
              "training_cost.png"):
        assert (out / "soft" / f).exists(), f
