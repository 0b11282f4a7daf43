"""TALLRec samples, splits, baselines, the tuning loop and the cross-domain grid (tiny model); the library run (config,
profiles, resuming, claims tested over users); the paper notebook's smoke profile (slow)."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec_nb import tallrec
from llmrec_nb.core import DataFormatError
from llmrec_nb.data import RecData, few_shot, SYNTH_GENRES
from llmrec_nb.loaders import load_dataset
from llmrec_nb.metrics import auc
from llmrec_nb.tallrec import (tallrec_samples, split_samples, to_instructions, TallrecStats,
                               popularity_scores, logistic_ctr_scores, ctr_features, oof_ctr_features, few_shot_baselines,
                               tune, tallrec_config, auc_of, score, SEQUENTIAL_CTR, sequential_ctr_scores, item_genres,
                               book_samples, genre_domains, domain_of, cross_domain_grid, cross_domain_table,
                               transfer_comparison, MIXED)

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

GROUPS = {"a": SYNTH_GENRES[:6], "b": SYNTH_GENRES[6:]}   # the synthetic item clusters 1–2 and 3–4

@pytest.fixture(scope="module")
def syn_x():
    return load_dataset("synthetic", n_users=80, n_per_user=30)

def test_genre_domains_are_disjoint_deterministic_and_labelled_like_the_rest(syn_x):
    doms = genre_domains(syn_x, GROUPS)
    assert list(doms) == ["a", "b"]
    a, b = doms["a"].interactions, doms["b"].interactions
    assert len(a) and len(b)
    assert not set(a["item"]) & set(b["item"]) and not set(a["user"]) & set(b["user"])
    genres = item_genres(syn_x)
    for name, it in (("a", a), ("b", b)):
        other = set(GROUPS["b" if name == "a" else "a"])
        assert all(genres[i] & set(GROUPS[name]) and not genres[i] & other for i in it["item"])
    again = genre_domains(syn_x, GROUPS)
    pd.testing.assert_frame_equal(again["a"].interactions, a)
    pd.testing.assert_frame_equal(again["b"].interactions, b)
    # every kept interaction is one of the dataset's, with its rating: the labels follow the same rule
    full = syn_x.interactions.set_index(["user", "item"])
    for d in doms.values():
        s = tallrec_samples(d, n_samples=None)
        assert len(s) and set(s["item"]) <= set(d.interactions["item"])
        assert s["label"].tolist() == [int(full.loc[(u, i), "rating"] > 3) for u, i in zip(s["user"], s["item"])]
        assert all(set(h) <= set(d.interactions["item"]) for h in s["history"])
    # without disjoint users, each user keeps all their interactions with the domain's items
    shared = genre_domains(syn_x, GROUPS, disjoint_users=False)
    assert set(shared["a"].interactions["user"]) & set(shared["b"].interactions["user"])
    assert len(shared["a"].interactions) > len(a)

def test_genre_domains_reject_bad_groups(syn_x):
    with pytest.raises(ValueError, match="share"): genre_domains(syn_x, {"a": ["Action", "Drama"], "b": ["Drama"]})
    with pytest.raises(ValueError, match="at least two"): genre_domains(syn_x, {"a": ["Action"]})
    with pytest.raises(DataFormatError, match="leaves no interactions"): genre_domains(syn_x, {"a": ["Action"], "b": ["Polka"]})
    no_genres = RecData("plain", syn_x.interactions, syn_x.items.drop(columns="genres"))
    with pytest.raises(DataFormatError, match="no item genres"): genre_domains(no_genres, GROUPS)

def _write_bx(folder, ratings):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "BX-Book-Ratings.csv").write_text("\n".join(['"User-ID";"ISBN";"Book-Rating"'] + [f'"{u}";"{i}";"{r}"' for u, i, r in ratings]) + "\n",
                                               encoding="latin-1")
    (folder / "BX-Books.csv").write_text("\n".join(['"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";"Publisher"']
                                                   + [f'"{i}";"Title {i}";"An Author";"1999";"P"' for i in sorted({i for _, i, _ in ratings})]) + "\n",
                                        encoding="latin-1")
    return folder

def test_book_samples_follow_the_paper(tmp_path):
    rng = np.random.default_rng(3)
    ratings = [(u, f"b{i:03d}", int(rng.integers(0, 11))) for u in range(1, 61)
               for i in rng.choice(80, size=int(rng.integers(1, 20)), replace=False)]
    bx = load_dataset("bookcrossing", _write_bx(tmp_path / "bx", ratings))
    s = book_samples(bx)
    n = bx.interactions.groupby("user").size()
    assert sorted(s["user"]) == sorted(n.index[n > 3])           # users with more than 3 ratings, one sample each
    r = bx.interactions.set_index(["user", "item"])["rating"]
    for row in s.itertuples():
        assert row.label == int(r[(row.user, row.item)] > 5)
        assert len(row.history) == min(10, n[row.user] - 1) and row.item not in row.history
        assert row.history_labels == [int(r[(row.user, i)] > 5) for i in row.history]
    assert s.equals(book_samples(bx)) and not s["user"].equals(book_samples(bx, seed=1)["user"])
    sp = split_samples(s)                                        # users split 8:1:1
    assert abs(len(sp["train"]) - 0.8 * len(s)) <= 1 and abs(len(sp["test"]) - 0.1 * len(s)) <= 1
    assert not set(sp["train"]["user"]) & (set(sp["valid"]["user"]) | set(sp["test"]["user"]))
    explicit = book_samples(bx, drop_implicit=True)
    assert all(r[(row.user, i)] > 0 for row in explicit.itertuples() for i in [row.item, *row.history])
    assert len(book_samples(bx, n_samples=5)) == 5

def test_cross_domain_grid_reuses_tuning_and_scoring(syn_x, tmp_path):
    from llmrec_nb.llm import load_llm
    from llmrec_nb.lora import adapter_names
    doms = [domain_of(n, d, tallrec_samples(d, n_samples=None), n_valid=8, n_test=16) for n, d in genre_domains(syn_x, GROUPS).items()]
    llm = load_llm("tiny")
    base = {d.name: score(llm, to_instructions(d.test, d.data)) for d in doms}
    grid = cross_domain_grid(llm, doms, k=8, seeds=[0, 1], work_dir=tmp_path,
                             config=tallrec_config(epochs=1, batch_size=8, grad_accum=1, lr=1e-3, patience=2))
    assert not adapter_names(llm.model)                        # the base model is back
    assert grid.train_domains == ["a", "b", MIXED]
    assert sorted(grid.scores) == sorted((t, n, s) for t in ("a", "b", MIXED) for n in ("a", "b") for s in (0, 1))
    for d in doms:
        np.testing.assert_allclose(grid.zero_shot[d.name], base[d.name])
        np.testing.assert_array_equal(grid.labels[d.name], d.test["label"].to_numpy())
    assert grid.runs["n_train"].tolist() == [8, 8, 8, 8, 16, 16]
    assert not np.allclose(grid.scores[("a", "b", 0)], base["b"])   # tuning moved the scores
    table, comps = cross_domain_table(grid, n_boot=200)
    assert len(table) == 2 + 3 * 2 and set(comps) == {(t, n) for t in ("a", "b", MIXED) for n in ("a", "b")}
    assert ((table["auc_ci_low"] <= table["auc_mean"]) & (table["auc_mean"] <= table["auc_ci_high"])).all()
    row = table[(table["train"] == "b") & (table["test"] == "a")].iloc[0]
    assert row["auc_mean"] == pytest.approx(np.mean([auc(grid.labels["a"], grid.scores[("b", "a", s)]) for s in (0, 1)]))
    assert row["effect_vs_zero_shot"] == pytest.approx(row["auc_mean"] - auc(grid.labels["a"], base["a"]))
    t = transfer_comparison(comps, grid.domains)
    assert set(t["directions"]) == {"a → b", "b → a"} and t["direction"] in t["directions"]
    with pytest.raises(ValueError, match="distinct"): cross_domain_grid(llm, [doms[0], doms[0]], 8, [0])

def test_transfer_claim_rests_on_the_weaker_direction():
    c = {("a", "b"): {"effect": 0.1, "p": 0.01}, ("b", "a"): {"effect": 0.05, "p": 0.2}}
    assert transfer_comparison(c, ["a", "b"])["direction"] == "b → a"
    c[("a", "b")] = {"effect": -0.01, "p": 0.001}                # a losing direction decides, whatever its p
    assert transfer_comparison(c, ["a", "b"])["direction"] == "a → b"
    with pytest.raises(KeyError, match="no comparison"): transfer_comparison({("a", "b"): c[("a", "b")]}, ["a", "b"])

@slow
def test_paper_notebook_smoke(tmp_path):
    import papermill as pm
    root = Path(__file__).resolve().parents[1]
    pm.execute_notebook(str(root / "nbs/paper/tallrec.ipynb"), str(tmp_path / "out.ipynb"), parameters=dict(
        profile="smoke", dataset="synthetic", dataset_kw={"n_users": 80, "n_per_user": 30}, model="tiny",
        n_samples=None, ks=[4, 8], seeds=[0, 1], n_valid=8, n_test=32, epochs=1, book_path=None, xd_genre_groups=GROUPS,
        xd_k=4, xd_seeds=[0], xd_max_steps=-1, xd_mixed=True, xd_n_valid=8, xd_n_test=16, out_dir=str(tmp_path / "fig"),
        work_dir=str(tmp_path / "work")),
        kernel_name="python3", progress_bar=False)
    import json
    summary = json.loads((tmp_path / "fig" / "summary.json").read_text())
    assert {c["id"] for c in summary["claims"]} == {"tuned_beats_zero_shot", "tuned_beats_baselines", "more_samples_help",
                                                    "cross_domain_transfer"}
    assert (tmp_path / "fig" / "auc_vs_k.png").exists() and (tmp_path / "fig" / "auc.md").exists()
    assert all((tmp_path / "fig" / f"cross_domain.{ext}").exists() for ext in ("png", "pdf", "md"))
    assert {r["train"] for r in summary["tables"]["cross_domain"]} == {"none (zero-shot)", "a", "b", "both"}


# --- the library run -------------------------------------------------------------------------------------------------

from llmrec_nb.report import notebook_defaults

ROOT = Path(__file__).resolve().parents[1]

# what the paper notebook runs at the quick profile (one seed since two took 912 s on 2 cores): its parameters cell's defaults
# overridden by the quick profile's `common` and `tallrec` sections
QUICK_BEFORE = {
    'seed': 0, 'dataset': 'ml-100k', 'dataset_kw': {}, 'model': 'smollm2-135m', 'dtype': 'auto', 'device_map': None,
    'backend': 'transformers', 'backend_kw': {}, 'n_samples': 10000,
    'history_len': 10, 'like_threshold': 3.0, 'ks': [16, 64], 'seeds': [0], 'n_valid': 64, 'n_test': 256, 'epochs': 6,
    'max_steps': 24, 'batch_size': 8, 'grad_accum': 1, 'lr': 0.001, 'patience': 2, 'lora_r': 8, 'lora_alpha': 16,
    'lora_dropout': 0.05, 'eval_batch_size': 16, 'seq_baselines': ['SASRec', 'GRU4Rec'], 'seq_epochs': 50, 'seq_dim': 64,
    'n_boot': 2000, 'full_data_reference': True, 'cross_domain': True, 'book_path': None, 'book_like_threshold': 5.0,
    'book_min_ratings': 4, 'xd_genre_groups': {
        'action': ['Action', 'Adventure', 'Sci-Fi', 'Thriller', 'Crime', 'Horror', 'War', 'Western', 'Mystery', 'Film-Noir', 'Fantasy'],
        'drama': ['Drama', 'Comedy', 'Romance', "Children's", 'Animation', 'Musical', 'Documentary']},
    'xd_k': 64, 'xd_seeds': [0], 'xd_max_steps': 8, 'xd_mixed': False, 'xd_n_valid': 32, 'xd_n_test': 96}


def parameters_cell(nb: Path) -> dict:
    return notebook_defaults(nb)


def test_profiles_are_overrides_of_the_paper_config():
    paper = tallrec.Config()
    assert (paper.model, paper.ks, paper.seeds, paper.n_samples) == ("huggyllama/llama-7b", [16, 64, 256], [0, 1, 2, 3, 4], 10000)
    lora = paper.lora()
    assert (lora.r, lora.alpha, lora.dropout, lora.target_modules, lora.lr) == (8, 16, 0.05, ("q_proj", "v_proj"), 1e-4)
    assert (paper.book_path, paper.xd_mixed, paper.n_test) == ("/data/bookcrossing", True, None)
    for profile in ("smoke", "quick", "paper"):
        tallrec.Config.from_profile(profile)
    assert tallrec.Config.from_profile("paper").ks == [16, 64, 256]


def test_quick_profile_runs_what_the_notebook_ran():
    assert tallrec.Config.from_profile("quick").as_dict() == QUICK_BEFORE


def test_bad_override_names_the_source_and_key():
    with pytest.raises(DataFormatError, match=r"my.yaml, section tallrec, field 'n_tset': unknown setting 'n_tset' \(expected one of n_test"):
        tallrec.Config().override({"n_tset": 10}, "my.yaml, section tallrec")
    with pytest.raises(DataFormatError, match=r"field 'ks': got 16 \(int\) \(expected list\[int\]\)"):
        tallrec.Config().override({"ks": 16})


def test_notebook_parameters_are_the_quick_profile():
    "Run All in JupyterLab runs the quick profile: the parameters cell holds exactly its values, every setting listed."
    cell = parameters_cell(ROOT / "nbs" / "paper" / "tallrec.ipynb")
    assert cell.pop("profile") == "quick" and cell.pop("out_dir") is None and cell.pop("work_dir") is None
    assert cell == tallrec.Config.from_profile("quick").as_dict()


def test_rerun_reuses_finished_units(tmp_path, monkeypatch):
    cfg = tallrec.Config.from_profile("smoke", ks=[4], seeds=[0], seq_baselines=["GRU4Rec"], full_data_reference=False)
    first = tallrec.run(cfg, tmp_path / "work")
    def nothing_again(*a, **k): raise AssertionError("a finished unit was computed again")
    for name in ("train_lora", "score", "few_shot_baselines"): monkeypatch.setattr(tallrec, name, nothing_again)
    again = tallrec.run(cfg, tmp_path / "work")
    pd.testing.assert_frame_equal(tallrec.auc_table(again), tallrec.auc_table(first))
    pd.testing.assert_frame_equal(tallrec.cross_domain_tables(again)[0], tallrec.cross_domain_tables(first)[0])
    # another learning rate is another adapter: it trains
    with pytest.raises(AssertionError, match="computed again"):
        tallrec.run(cfg.override({"lr": cfg.lr / 2}), tmp_path / "work")


def test_the_config_backend_scores_with_the_tuned_adapters(tmp_path):
    "backend: training stays on transformers, every test score comes from the named engine with the adapter applied."
    from engines import registered_engine
    with registered_engine() as engine:
        cfg = tallrec.Config.from_profile("smoke", ks=[4], seeds=[0], seq_baselines=["GRU4Rec"], full_data_reference=False,
                                          cross_domain=False)
        plain = tallrec.run(cfg, tmp_path / "work")
        routed = tallrec.run(cfg.override({"backend": "by-path"}), tmp_path / "work")   # the adapters trained once, reused
    assert len(engine.seen) == 2 and engine.seen[0] is None                  # zero-shot, then the K=4 adapter by its path
    assert (Path(engine.seen[1]) / "adapter_config.json").exists() and Path(engine.seen[1]).is_relative_to(tmp_path / "work")
    for key in (("Zero-shot LLM", 0, 0), ("TALLRec", 4, 0)):
        np.testing.assert_allclose(routed.scores[key], plain.scores[key], atol=1e-5)


def _results(n_users=10, per_user=4, seed=1):
    "A hand-made `Results`: TALLRec clearly better than zero-shot at K=64, each user with `per_user` test samples."
    rng = np.random.default_rng(seed)
    n = n_users * per_user
    y, users = rng.integers(0, 2, n), np.repeat([f"u{i}" for i in range(n_users)], per_user)
    scores = {("Zero-shot LLM", 0, 0): rng.random(n)}
    for k in (16, 64):
        for s in (0, 1):
            scores.update({("TALLRec", k, s): y * (0.2 if k == 16 else 1.0) + rng.random(n),
                           ("Popularity", k, s): y * 0.1 + rng.random(n), ("CTR-LR", k, s): y * 0.3 + rng.random(n)})
    cfg = tallrec.Config(ks=[16, 64], seeds=[0, 1], n_boot=500, cross_domain=False)
    return tallrec.Results(cfg, y, users, scores, ["Popularity", "CTR-LR"], [], pd.DataFrame({"K": [16, 16, 64, 64]}), {"train": 100})


def test_claims_are_tested_over_users_with_the_papers_effect():
    res = _results()
    found = {c["id"]: c for c in tallrec.claims(res)}
    assert set(found) == {"tuned_beats_zero_shot", "tuned_beats_baselines", "more_samples_help"}
    for c in found.values():
        assert (c["n"], c["n_effective"]) == (40, 10) and c["ci_low"] <= c["effect"] <= c["ci_high"]
        assert c["paper_source"].startswith("TALLRec's table")
    assert found["tuned_beats_zero_shot"]["holds"]
    assert found["tuned_beats_zero_shot"]["paper_effect"] == pytest.approx(0.675 - 0.50)
    assert found["tuned_beats_baselines"]["paper_effect"] == pytest.approx(0.675 - 0.54)
    assert found["more_samples_help"]["paper_effect"] == pytest.approx(0.675 - 0.672)
    assert "bootstrap over 10 users (40 test samples)" in found["tuned_beats_zero_shot"]["detail"]
    table = tallrec.auc_table(res)
    assert table.loc[table["method"] == "TALLRec", "n_users"].tolist() == [10, 10]


def test_auc_tests_do_not_count_a_users_repeated_samples_as_evidence():
    "Five copies of every user's samples: the user-level CI stays put, where a bootstrap over samples narrows it."
    from llmrec_nb.stats import compare_over_seeds
    rng = np.random.default_rng(0)
    y, users = rng.integers(0, 2, 60), np.repeat(np.arange(12), 5)
    a, b = y * 0.3 + rng.random(60), rng.random(60)
    tile = lambda v: np.tile(v, 5)
    once = tallrec.compare_auc_over_users(y, a, b, users, n_boot=1000)
    five = tallrec.compare_auc_over_users(tile(y), tile(a), tile(b), tile(users), n_boot=1000)
    assert five["effect"] == pytest.approx(once["effect"]) and (five["n"], five["n_clusters"]) == (300, 12)
    assert five["ci_high"] - five["ci_low"] == pytest.approx(once["ci_high"] - once["ci_low"], abs=0.05)
    samples = compare_over_seeds(tile(y), tile(a), tile(b), n_boot=1000)
    assert samples["ci_high"] - samples["ci_low"] < 0.6 * (five["ci_high"] - five["ci_low"])
    assert tallrec.weighted_aucs(y, a, np.ones(60))[0, 0] == pytest.approx(auc(y, a))
    with pytest.raises(DataFormatError, match="one user per test sample"): tallrec.compare_auc_over_users(y, a, b, users[:5])
