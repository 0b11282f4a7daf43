"""Statistical tests, corrections and the results table, checked against SciPy and hand-computed references."""
import itertools, math, os, warnings

os.environ.setdefault("LLMREC_PROGRESS", "0")

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from sklearn.metrics import roc_auc_score

from llmrec_nb.core import DataFormatError
from llmrec_nb.stats import (ResultsTable, auc_bootstrap, auc_test, benjamini_hochberg, claim_from_comparison, cohens_d_paired,
                             compare, holm, mean_ci, mean_std_str, paired_bootstrap, paired_ttest, permutation_test,
                             results_table, wilcoxon, write_table)


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    b = rng.normal(0.3, 0.2, 150)
    return b + rng.normal(0.08, 0.2, 150), b


def test_paired_ttest_matches_scipy(pair):
    a, b = pair
    r = paired_ttest(a, b)
    ref = st.ttest_rel(a, b)
    assert r.statistic == pytest.approx(ref.statistic) and r.p == pytest.approx(ref.pvalue)
    t, p = r   # unpacks


def test_degenerate_differences_give_no_warnings():
    x = np.array([0.1, 0.5, 0.9, 0.3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert paired_ttest(x, x) == (0.0, 1.0)
        assert wilcoxon(x, x) == (0.0, 1.0)
        assert paired_bootstrap(x, x, n_boot=200).p == 1.0
        assert permutation_test(x, x).p == 1.0
        assert cohens_d_paired(x, x) == 0.0
        assert compare(x, x, n_boot=200)["p_ttest"] == 1.0
        assert paired_ttest(x + 1, x).p == 0.0


def test_wilcoxon_matches_scipy(pair):
    a, b = pair
    assert wilcoxon(a, b).p == pytest.approx(st.wilcoxon(a, b).pvalue)
    a2 = a.copy(); a2[:10] = b[:10]   # zero differences are dropped ("wilcox")
    assert wilcoxon(a2, b).p == pytest.approx(st.wilcoxon(a2[10:], b[10:]).pvalue)


def test_paired_bootstrap_deterministic_and_sensible(pair):
    a, b = pair
    r1, r2 = paired_bootstrap(a, b, n_boot=3000, seed=7), paired_bootstrap(a, b, n_boot=3000, seed=7)
    assert r1 == r2
    assert paired_bootstrap(a, b, n_boot=3000, seed=8) != r1
    assert r1.effect == pytest.approx(np.mean(a - b))
    assert r1.ci_low < r1.effect < r1.ci_high
    # the percentile CI is close to the t-interval for a mean of 150 differences
    m, lo, hi = mean_ci(a - b)
    assert abs(r1.ci_low - lo) < 0.01 and abs(r1.ci_high - hi) < 0.01
    assert r1.p < 0.05 and r1.p > 0   # never exactly zero
    rng = np.random.default_rng(1)
    null = paired_bootstrap(rng.normal(size=100), rng.normal(size=100), n_boot=2000)
    assert null.p > 0.05


def test_permutation_exact_matches_enumeration():
    d = np.array([0.3, -0.1, 0.25, 0.4, 0.05, -0.2, 0.6, 0.15])
    stats_ = [abs(np.mean(np.array(s) * d)) for s in itertools.product([1, -1], repeat=len(d))]
    expected = np.mean(np.array(stats_) >= abs(d.mean()) - 1e-12)
    assert permutation_test(d, np.zeros_like(d)).p == pytest.approx(expected)
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.2, 1, 60), rng.normal(0, 1, 60)
    r = permutation_test(a, b, n_perm=4000, seed=3)
    assert r == permutation_test(a, b, n_perm=4000, seed=3)
    assert r.p == pytest.approx(st.ttest_rel(a, b).pvalue, abs=0.03)


def delong_slow(y, scores_a, scores_b):
    "DeLong's variance from pairwise placement values, O(n²): the textbook definition."
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    v10, v01, aucs = [], [], []
    for s in (scores_a, scores_b):
        psi = np.array([[1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0 for j in neg] for i in pos])
        v10.append(psi.mean(axis=1)); v01.append(psi.mean(axis=0)); aucs.append(psi.mean())
    s10, s01 = np.cov(np.array(v10)), np.cov(np.array(v01))
    S = s10 / len(pos) + s01 / len(neg)
    var = S[0, 0] + S[1, 1] - 2 * S[0, 1]
    z = (aucs[0] - aucs[1]) / math.sqrt(var)
    return aucs, var, z, 2 * st.norm.sf(abs(z))


@pytest.mark.parametrize("seed", range(4))
def test_delong_matches_slow_reference(seed):
    rng = np.random.default_rng(seed)
    n = 120
    y = rng.random(n) < 0.35
    sa = np.round(y * 0.9 + rng.normal(0, 1, n), 1)   # rounded: ties within and across classes
    sb = np.round(y * 0.4 + 0.5 * sa + rng.normal(0, 1, n), 1)
    (auc_a, auc_b), var, z, p = delong_slow(y, sa, sb)
    r = auc_test(y, sa, sb)
    assert r["auc_a"] == pytest.approx(auc_a) and r["auc_a"] == pytest.approx(roc_auc_score(y, sa))
    assert r["auc_b"] == pytest.approx(auc_b)
    assert r["se"] == pytest.approx(math.sqrt(var)) and r["z"] == pytest.approx(z) and r["p"] == pytest.approx(p)
    assert r["ci_low"] == pytest.approx(r["effect"] - 1.959963984540054 * r["se"])


def test_delong_known_small_example():
    # 3 positives, 3 negatives, worked by hand: model a separates perfectly, b has one swapped pair.
    y = np.array([1, 1, 1, 0, 0, 0], bool)
    a = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    b = np.array([0.9, 0.8, 0.25, 0.3, 0.2, 0.1])
    r = auc_test(y, a, b)
    assert r["auc_a"] == 1.0 and r["auc_b"] == pytest.approx(8 / 9)
    # placements of b: positives (1, 1, 2/3), negatives (1/3, 0, 0); of a: all 1 and 0 → var = var(b's) terms
    var = np.var([1, 1, 2 / 3], ddof=1) / 3 + np.var([1 / 3, 0, 0], ddof=1) / 3
    assert r["se"] == pytest.approx(math.sqrt(var))
    assert auc_test(y, a, a)["p"] == 1.0


def test_auc_bootstrap(pair):
    rng = np.random.default_rng(5)
    y = rng.random(300) < 0.4
    sa, sb = y + rng.normal(0, 1, 300), 0.3 * y + rng.normal(0, 1, 300)
    r = auc_bootstrap(y, sa, sb, n_boot=500, seed=1)
    assert r == auc_bootstrap(y, sa, sb, n_boot=500, seed=1)
    assert r["auc_a"] == pytest.approx(roc_auc_score(y, sa))
    d = auc_test(y, sa, sb)
    assert r["ci_low"] < d["effect"] < r["ci_high"]
    assert abs((r["ci_high"] - r["ci_low"]) - (d["ci_high"] - d["ci_low"])) < 0.05
    assert r["p"] < 0.05 and d["p"] < 0.05


def holm_slow(p):
    m = len(p); order = np.argsort(p); out = np.empty(m); run = 0.0
    for i, j in enumerate(order):
        run = max(run, min(1.0, (m - i) * p[j])); out[j] = run
    return out


def bh_slow(p):
    m = len(p); order = np.argsort(p); out = np.empty(m)
    for i, j in enumerate(order):
        out[j] = min(min(1.0, m * p[k] / (r + 1)) for r, k in enumerate(order) if r >= i)
    return out


def test_holm_and_bh_textbook_examples():
    # Benjamini & Hochberg (1995), 15 p-values: at 0.05 BH rejects 4; Holm (and Bonferroni) 3.
    p = np.array([0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262, 0.5719, 0.6528, 0.7590, 1.0])
    assert (benjamini_hochberg(p) <= 0.05).sum() == 4
    assert (holm(p) <= 0.05).sum() == 3
    np.testing.assert_allclose(holm([0.01, 0.02, 0.03, 0.04, 0.05]), [0.05, 0.08, 0.09, 0.09, 0.09])
    np.testing.assert_allclose(benjamini_hochberg([0.01, 0.02, 0.03, 0.04, 0.05]), [0.05] * 5)
    np.testing.assert_allclose(benjamini_hochberg([0.04, 0.01]), [0.04, 0.02])


def test_holm_and_bh_match_slow_definitions():
    rng = np.random.default_rng(6)
    for _ in range(20):
        p = rng.random(rng.integers(1, 12)) ** 2
        h, b = holm(p), benjamini_hochberg(p)
        np.testing.assert_allclose(h, holm_slow(p)); np.testing.assert_allclose(b, bh_slow(p))
        order = np.argsort(p)
        assert (np.diff(h[order]) >= 0).all() and (np.diff(b[order]) >= 0).all()
        assert (h <= 1).all() and (h >= p - 1e-12).all() and (b >= p - 1e-12).all() and (b <= h + 1e-12).all()


def test_intervals_effect_sizes_formatting(pair):
    a, b = pair
    m, lo, hi = mean_ci(a, level=0.9)
    ref = st.t.interval(0.9, len(a) - 1, loc=a.mean(), scale=st.sem(a))
    assert (lo, hi) == pytest.approx(ref) and m == pytest.approx(a.mean())
    assert cohens_d_paired(a, b) == pytest.approx(np.mean(a - b) / np.std(a - b, ddof=1))
    assert mean_std_str([0.661, 0.672, 0.683]) == "0.672 ± 0.011"
    assert mean_std_str([0.1, 0.3], digits=2, ddof=0) == "0.20 ± 0.10"


def test_compare_fields(pair):
    a, b = pair
    c = compare(a, b, seed=0, n_boot=1000)
    assert c["n"] == 150 and c["effect"] == pytest.approx(np.mean(a) - np.mean(b))
    assert c["rel_effect"] == pytest.approx(c["effect"] / np.mean(b))
    assert c["p_ttest"] == pytest.approx(st.ttest_rel(a, b).pvalue)
    assert c == compare(a, b, seed=0, n_boot=1000)
    with pytest.raises(DataFormatError): compare(a, b[:-1])
    with pytest.raises(DataFormatError): compare(np.r_[a[:-1], np.nan], b)
    with pytest.raises(DataFormatError): paired_ttest(np.r_[a[:-1], np.inf], b)


@pytest.fixture
def per_user():
    rng = np.random.default_rng(10)
    n = 400
    mf = (rng.random(n) < 0.30).astype(float)
    return {"Pop": {"HR@5": (rng.random(n) < 0.2).astype(float), "RMSE": rng.normal(1.2, 0.3, n)},
            "MF": {"HR@5": mf, "RMSE": rng.normal(1.0, 0.3, n)},
            "LightGCN": {"HR@5": (rng.random(n) < 0.31).astype(float), "RMSE": rng.normal(1.05, 0.3, n)},
            "Ours": {"HR@5": np.maximum(mf, (rng.random(n) < 0.2).astype(float)), "RMSE": rng.normal(0.9, 0.3, n)},
            "Ours-lite": {"HR@5": mf.copy(), "RMSE": rng.normal(1.0, 0.3, n)}}


def test_results_table_per_user(per_user):
    res = results_table(per_user, baseline="best", method=["Ours", "Ours-lite"], n_boot=500)
    assert isinstance(res, ResultsTable)
    comp = res.comparisons
    assert len(comp) == 4
    # best non-method baseline: LightGCN or MF for HR@5 (whichever mean is higher), MF for RMSE (lower is better)
    hr_base = max(["Pop", "MF", "LightGCN"], key=lambda m: per_user[m]["HR@5"].mean())
    assert set(comp.loc[comp.metric == "HR@5", "baseline"]) == {hr_base}
    assert set(comp.loc[comp.metric == "RMSE", "baseline"]) == {"MF"}
    np.testing.assert_allclose(comp["p_adj"], holm(comp["p"].to_numpy()))
    row = res.comparison("Ours", "RMSE")
    assert row["p_ttest"] == pytest.approx(st.ttest_rel(per_user["Ours"]["RMSE"], per_user["MF"]["RMSE"]).pvalue)
    assert row["better"] and row["effect"] < 0
    assert res.claim("Ours", "RMSE") == {"holds": True, "effect": row["effect"], "p": row["p_adj"]}
    assert res.claim("Ours-lite", "HR@5")["holds"] is False
    means = res.means
    assert means.loc["Ours", "HR@5"] == pytest.approx(per_user["Ours"]["HR@5"].mean())
    t = res.table
    assert t.loc["Ours", ("HR@5", "rank")] == 1 and t.loc["Ours", ("RMSE", "rank")] == 1
    assert t.loc["Ours", ("HR@5", "sig")] == 1 and np.isnan(t.loc["MF", ("HR@5", "p")])
    plain = res.formatted()
    assert plain.loc["Ours", "RMSE"].endswith("*") and not plain.loc["Pop", "RMSE"].endswith("*")


def test_named_baseline_tests_every_other_model(per_user):
    res = results_table(per_user, baseline="MF", n_boot=200, correction="bh")
    assert set(res.comparisons.model) == {"Pop", "LightGCN", "Ours", "Ours-lite"}
    assert set(res.comparisons.baseline) == {"MF"}
    np.testing.assert_allclose(res.comparisons["p_adj"], benjamini_hochberg(res.comparisons["p"].to_numpy()))
    with pytest.raises(DataFormatError): results_table(per_user, baseline="nope")
    bad = {"A": {"HR@5": np.ones(3)}, "B": {"HR@5": np.ones(4)}}
    with pytest.raises(DataFormatError): results_table(bad, baseline="A")


def test_results_table_per_seed_and_long_frame():
    per_seed = {"zero-shot": {"AUC": [0.50, 0.49, 0.52]}, "ICL": {"AUC": [0.53, 0.55, 0.54]}, "TALLRec": {"AUC": [0.66, 0.68, 0.67]}}
    res = results_table(per_seed, method="TALLRec", seeds=[0, 1, 2], n_boot=200, digits=3)
    f = res.formatted("markdown")
    assert f.loc["TALLRec", "AUC"] == r"**0.670 ± 0.010**\*"
    assert f.loc["ICL", "AUC"] == "<u>0.540 ± 0.010</u>"
    assert res.comparisons.loc[0, "baseline"] == "ICL" and res.comparisons.loc[0, "n"] == 3
    assert "paired t-test over seeds" in res.legend()
    long = pd.DataFrame([{"model": m, "metric": "AUC", "seed": s, "value": v} for m, d in per_seed.items() for s, v in enumerate(d["AUC"])])
    res2 = results_table(long.sample(frac=1, random_state=0).sort_values("model", key=lambda c: c.map(list(per_seed).index)),
                         method="TALLRec", n_boot=200, digits=3)
    pd.testing.assert_frame_equal(res.table, res2.table)
    with pytest.raises(DataFormatError): results_table(per_seed, method="TALLRec", seeds=[0, 1])


def test_results_table_seeds_by_users_arrays():
    rng = np.random.default_rng(11)
    base = rng.random((3, 200)) < 0.3
    vals = {"MF": {"HR@5": base.astype(float)}, "Ours": {"HR@5": (base | (rng.random((3, 200)) < 0.2)).astype(float)}}
    res = results_table(vals, method="Ours", seeds=True, n_boot=200)
    assert res.comparisons.loc[0, "n"] == 200   # paired over users on seed-averaged vectors
    assert "paired t-test over users" in res.legend() and "over 3 seeds" in res.legend()
    assert res.table.loc["Ours", ("HR@5", "std")] == pytest.approx(vals["Ours"]["HR@5"].mean(axis=1).std(ddof=1))


def test_long_frame_per_user_and_missing_metric():
    df = pd.DataFrame({"model": ["A"] * 3 + ["B"] * 3 + ["B"] * 3, "metric": ["HR@1"] * 6 + ["MRR"] * 3,
                       "user": ["u1", "u2", "u3", "u3", "u1", "u2", "u1", "u2", "u3"], "value": [1, 0, 0, 0, 1, 1, .5, .3, 1]})
    res = results_table(df, baseline="A", n_boot=100)
    assert res.means.loc["B", "HR@1"] == pytest.approx(2 / 3)
    assert res.formatted().loc["A", "MRR"] == "–"
    # users are aligned by id, not by row order: differences per user are (u1: 0, u2: +1, u3: 0)
    assert res.comparison("B", "HR@1")["effect"] == pytest.approx(1 / 3)
    uneven = df[~((df.model == "B") & (df.user == "u3") & (df.metric == "HR@1"))]
    with pytest.raises(DataFormatError): results_table(uneven, baseline="A")


def test_long_frame_with_seeds_refuses_unpaired_units():
    rng = np.random.default_rng(3)
    rows = [{"model": m, "metric": "HR@1", "seed": s, "user": f"u{u + (5 if m == 'B' else 0)}", "value": float(rng.random() < .5)}
            for m in ("A", "B") for s in range(2) for u in range(6)]   # B covers u5..u10, A u0..u5: same count, different users
    with pytest.raises(DataFormatError, match="different seeds and users"): results_table(pd.DataFrame(rows), baseline="A")
    per_seed = pd.DataFrame([{"model": m, "metric": "AUC", "seed": s + (3 if m == "B" else 0), "value": v}
                             for m in ("A", "B") for s, v in enumerate([.5, .6, .7])])
    with pytest.raises(DataFormatError, match="different seeds"): results_table(per_seed, baseline="A")
    ok = per_seed.assign(seed=per_seed.groupby("model").cumcount())
    assert results_table(ok, baseline="A", n_boot=50).comparison("B", "AUC")["effect"] == pytest.approx(0)


def test_write_table_markers_and_atomicity(per_user, tmp_path):
    res = results_table(per_user, method=["Ours", "Ours-lite"], n_boot=200)
    paths = write_table(res, tmp_path / "hr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr.csv", "hr.md", "hr.tex"]   # no temporary files left
    md, tex = paths["md"].read_text(), paths["tex"].read_text()
    assert "| Ours | **" in md and r"\*" in md and "<u>" in md and "Holm" in md
    assert r"Ours & \textbf{" in tex and "$^{*}$" in tex and r"\underline{" in tex and r"\toprule" in tex
    csv = pd.read_csv(paths["csv"], index_col="model")
    assert {"HR@5", "HR@5 p", "HR@5 p_adj", "RMSE", "RMSE p_adj"} <= set(csv.columns)
    assert csv.loc["Ours", "RMSE"] == pytest.approx(per_user["Ours"]["RMSE"].mean())
    assert csv.loc["Ours", "HR@5 p_adj"] == pytest.approx(res.comparison("Ours", "HR@5")["p_adj"])
    assert np.isnan(csv.loc["MF", "HR@5 p"])
    # the numeric table alone carries enough to write the same files
    paths2 = write_table(res.table, tmp_path / "again")
    assert paths2["md"].read_text() == md and paths2["tex"].read_text() == tex
    # any DataFrame, escaped for LaTeX
    p3 = write_table(pd.DataFrame({"K": [16, 64], "auc_mean": [0.61234, 0.7]}), tmp_path / "plain")
    assert "auc\\_mean" in p3["tex"].read_text() and "0.6123" in p3["md"].read_text()
    assert pd.read_csv(p3["csv"])["auc_mean"].tolist() == [0.61234, 0.7]


def test_claim_from_comparison_dict():
    assert claim_from_comparison({"effect": 0.02, "p_adj": 0.01}) == {"holds": True, "effect": 0.02, "p": 0.01}
    assert claim_from_comparison({"effect": 0.02, "p_adj": 0.2})["holds"] is False
    assert claim_from_comparison({"effect": 0.02, "p_adj": 0.01, "higher_is_better": False})["holds"] is False
    c = compare([1.0, 2, 3, 4], [0.5, 1, 1.5, 2.5], n_boot=100)
    assert claim_from_comparison(c)["p"] == c["p_ttest"]


def test_supplied_pvalues_are_corrected_with_the_rest(per_user):
    given = {("Ours", "HR@5"): 0.01, ("Ours-lite", "HR@5"): 0.04}
    res = results_table(per_user, method=["Ours", "Ours-lite"], metrics=["HR@5"], pvalues=given, test_label="DeLong's test", n_boot=100)
    np.testing.assert_allclose(res.comparisons["p"], [0.01, 0.04])
    np.testing.assert_allclose(res.comparisons["p_adj"], [0.02, 0.04])
    assert list(res.comparisons["test"]) == ["given", "given"] and "DeLong's test" in res.legend()
    assert list(res.means.columns) == ["HR@5"]


def test_star_marks_only_significant_improvements():
    from llmrec_nb.stats import results_table
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.05, 200)
    res = results_table({"base": {"HR@5": base}, "better": {"HR@5": base + 0.1}, "worse": {"HR@5": base - 0.1}},
                        baseline="base", method=["better", "worse"], n_boot=200)
    md = res.to_markdown()
    row = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("|")}
    assert "\\*" in row["better"] and "†" not in row["better"]
    assert "†" in row["worse"] and "\\*" not in row["worse"]


# --- compare_over_seeds: method vs baseline over seeds × test samples -------------------------------------------------
from llmrec_nb.stats import compare_over_seeds, correct_comparisons, describe_comparison
from llmrec_nb.metrics import auc as _auc


def _auc_world(rng, n, signal_m, signal_b, seeds_m=3, seeds_b=3):
    "Labels and per-seed scores: every seed's score is signal·label + its own noise."
    y = rng.random(n) < 0.4
    m = np.stack([signal_m * y + rng.normal(0, 1, n) for _ in range(seeds_m)])
    b = np.stack([signal_b * y + rng.normal(0, 1, n) for _ in range(seeds_b)])
    return y, m, b


@pytest.mark.parametrize("seeds_b", [3, 1])
def test_compare_over_seeds_is_calibrated_under_the_null(seeds_b):
    rng = np.random.default_rng(123)
    ps, ps_seed, ps_ensemble = [], [], []
    for _ in range(200):
        y, m, b = _auc_world(rng, 150, 0.8, 0.8, seeds_b=seeds_b)
        c = compare_over_seeds(y, m, b, n_boot=199, seed=int(rng.integers(1 << 30)))
        ps.append(c["p"]); ps_seed.append(c["per_seed"][0]["p"]); ps_ensemble.append(c["p_delong"])
    ps, ps_seed = np.array(ps), np.array(ps_seed)
    # identical distributions: p is not systematically small (nominal 5% rejections, mean p near 1/2)
    assert np.mean(ps <= 0.05) <= 0.11 and 0.38 <= ps.mean() <= 0.62, (np.mean(ps <= 0.05), ps.mean())
    assert np.mean(ps_seed <= 0.05) <= 0.11 and 0.38 <= ps_seed.mean() <= 0.62
    if seeds_b == 1:   # DeLong on seed-averaged scores tests the 3-seed ensemble, which beats one seed: not the claim's test
        assert np.mean(np.array(ps_ensemble) <= 0.05) > 0.3


def test_compare_over_seeds_per_sample_metric_is_calibrated_and_has_power():
    rng = np.random.default_rng(5)
    null, alt = [], []
    for _ in range(200):
        base = (rng.random((3, 200)) < 0.3).astype(float)
        null.append(compare_over_seeds(None, (rng.random((3, 200)) < 0.3).astype(float), base, metric="mean", n_boot=199,
                                       seed=int(rng.integers(1 << 30)))["p"])
    null = np.array(null)
    assert np.mean(null <= 0.05) <= 0.11 and 0.38 <= null.mean() <= 0.62
    for _ in range(30):
        base = (rng.random(200) < 0.3).astype(float)   # a deterministic baseline: one "seed"
        alt.append(compare_over_seeds(None, (rng.random((3, 200)) < 0.45).astype(float), base, metric="mean", n_boot=199)["p"])
    assert np.mean(np.array(alt) <= 0.05) >= 0.8


def test_compare_over_seeds_detects_a_real_difference():
    rng = np.random.default_rng(7)
    hits = []
    for _ in range(30):
        y, m, b = _auc_world(rng, 300, 1.2, 0.5, seeds_b=1)
        c = compare_over_seeds(y, m, b, n_boot=299)
        hits.append(c["p"] <= 0.05 and c["better"] and c["ci_low"] > 0)
    assert np.mean(hits) >= 0.8
    # the other direction is "worse", not "better"
    y, m, b = _auc_world(rng, 300, 0.2, 1.2, seeds_b=1)
    c = compare_over_seeds(y, m, b, n_boot=299)
    assert c["p"] <= 0.05 and not c["better"] and c["effect"] < 0
    assert claim_from_comparison(c)["holds"] is False


def test_compare_over_seeds_fields_and_pairing():
    rng = np.random.default_rng(8)
    y, m, b = _auc_world(rng, 120, 1.0, 0.6, seeds_m=3, seeds_b=3)
    c = compare_over_seeds(y, m, b, n_boot=300, seed=4)
    assert c == compare_over_seeds(y, m, b, n_boot=300, seed=4)
    assert c["effect"] == pytest.approx(np.mean([_auc(y, s) for s in m]) - np.mean([_auc(y, s) for s in b]))
    assert c["seed_values"] == pytest.approx([roc_auc_score(y, s) for s in m])
    assert c["baseline_seed_values"] == pytest.approx([roc_auc_score(y, s) for s in b])
    assert c["ci_low"] <= c["effect"] <= c["ci_high"] and c["n"] == 120 and (c["n_seeds"], c["n_seeds_baseline"]) == (3, 3)
    # equal seed counts: seed i against baseline seed i (same training draw), with DeLong beside
    for i, r in enumerate(c["per_seed"]):
        assert r["effect"] == pytest.approx(roc_auc_score(y, m[i]) - roc_auc_score(y, b[i]))
        assert r["p_delong"] == pytest.approx(auc_test(y, m[i], b[i])["p"])
    assert c["p_delong"] == pytest.approx(auc_test(y, m.mean(0), b.mean(0))["p"])
    # unequal counts: each seed against the whole baseline
    c2 = compare_over_seeds(y, m, b[:2], n_boot=300)
    assert c2["per_seed"][0]["baseline_mean"] == pytest.approx(np.mean([roc_auc_score(y, s) for s in b[:2]]))
    # one vector each: single seeds, and the per-seed result is the overall one
    c1 = compare_over_seeds(y, m[0], b[0], n_boot=300, seed=1)
    assert c1["n_seeds"] == 1 and c1["per_seed"][0]["p"] == c1["p"] and c1["p_delong"] == c1["per_seed"][0]["p_delong"]
    # lists of per-seed vectors work too
    assert compare_over_seeds(y.astype(int).tolist(), list(m), b[0], n_boot=100)["n_seeds"] == 3
    # lower-is-better metrics: a negative effect is the better one
    sq_m, sq_b = rng.normal(1.0, 0.3, (2, 100)) ** 2, rng.normal(1.3, 0.3, 100) ** 2
    cl = compare_over_seeds(None, sq_m, sq_b, metric="mean", higher_is_better=False, n_boot=300)
    assert cl["better"] and claim_from_comparison(cl)["holds"]
    for bad in (lambda: compare_over_seeds(y, m, b[:, :-1]), lambda: compare_over_seeds(y, m, b, metric="ndcg"),
                lambda: compare_over_seeds(y, m, b, average="median"), lambda: compare_over_seeds(None, m, b),
                lambda: compare_over_seeds(y, m, b, metric="mean"), lambda: compare_over_seeds(y, np.full((2, 120), np.nan), b),
                lambda: compare_over_seeds(np.ones(120), m, b)):
        with pytest.raises(DataFormatError): bad()


def test_compare_over_seeds_ensemble_average_and_custom_metric():
    rng = np.random.default_rng(9)
    y, m, b = _auc_world(rng, 200, 0.8, 0.8, seeds_b=1)
    cs = compare_over_seeds(y, m, b, average="scores", n_boot=200)
    assert cs["mean"] == pytest.approx(roc_auc_score(y, m.mean(0))) and cs["baseline_mean"] == pytest.approx(roc_auc_score(y, b[0]))
    # averaging three noisy seeds' scores raises the AUC over any single seed: the ensemble effect that "metric" avoids
    cm = compare_over_seeds(y, m, b, n_boot=200)
    assert cs["mean"] > max(cm["seed_values"])
    acc = lambda lab, s: float(np.mean((s > 0.4) == lab))
    ca = compare_over_seeds(y, m, b, metric=acc, n_boot=100)
    assert ca["metric"] == "<lambda>" and ca["effect"] == pytest.approx(np.mean([acc(y, s) for s in m]) - acc(y, b[0]))
    assert "p_delong" not in ca and "p_ttest" not in ca


def test_correct_comparisons_and_description():
    rng = np.random.default_rng(10)
    y, m, b = _auc_world(rng, 150, 1.0, 0.5, seeds_b=1)
    comps = {"a": compare_over_seeds(y, m, b, n_boot=200), "b": compare_over_seeds(y, m, m, n_boot=200)}
    correct_comparisons(comps)
    np.testing.assert_allclose([comps["a"]["p_adj"], comps["b"]["p_adj"]], holm([comps["a"]["p"], comps["b"]["p"]]))
    assert claim_from_comparison(comps["a"])["p"] == comps["a"]["p_adj"]
    assert comps["b"]["p"] == 1.0 and claim_from_comparison(comps["b"])["holds"] is False
    text = describe_comparison(comps["a"])
    assert "holm-adjusted" in text and "DeLong" in text and text.count("p=") == 1 + 3 + 1
    lst = correct_comparisons([dict(comps["a"]), dict(comps["b"])], correction="bh")
    assert lst[0]["correction"] == "bh"
    with pytest.raises(DataFormatError): correct_comparisons([comps["a"]], correction="bonferroni")


def _users_world(seed=0, users=30, per_user=10, mean_lift=0.1, user_sd=0.3):
    "Per-instance values where the method's lift depends mostly on the user (strong within-user correlation)."
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"u{i}" for i in range(users)], per_user)
    lift = np.repeat(rng.normal(mean_lift, user_sd, users), per_user) + rng.normal(0, 0.05, users * per_user)
    base = rng.normal(0.5, 0.1, users * per_user)
    return base + lift, base, ids


def test_compare_clustered_is_wider_than_naive_with_correlated_users():
    from llmrec_nb.stats import compare_clustered
    for seed in range(3):
        a, b, users = _users_world(seed)
        naive, clustered = compare(a, b, n_boot=2000), compare_clustered(a, b, users, n_boot=2000)
        assert set(clustered) == set(naive) | {"n_clusters"}
        assert clustered["n_clusters"] == 30 and clustered["n"] == 300
        assert clustered["effect"] == pytest.approx(naive["effect"])
        assert clustered["p_ttest"] > 10 * naive["p_ttest"] and clustered["p_bootstrap"] > naive["p_bootstrap"]
        assert clustered["ci_high"] - clustered["ci_low"] > 2 * (naive["ci_high"] - naive["ci_low"])
        # the tests run over the per-user mean differences
        d = pd.Series(a - b).groupby(users).mean()
        assert clustered["p_ttest"] == pytest.approx(st.ttest_1samp(d, 0).pvalue)
        assert clustered["sd"] == pytest.approx(d.std(ddof=1))


def test_compare_clustered_with_singletons_equals_compare(pair):
    from llmrec_nb.stats import compare_clustered
    a, b = pair
    c = compare_clustered(a, b, np.arange(len(a)), seed=3, n_boot=1000)
    assert c.pop("n_clusters") == len(a)
    assert c == compare(a, b, seed=3, n_boot=1000)


def test_compare_clustered_cluster_bootstrap_is_calibrated():
    "Under no true lift, the cluster bootstrap CI covers 0 about 95% of the time; the naive one far less often."
    from llmrec_nb.stats import compare_clustered
    cover_c = cover_n = 0
    for seed in range(60):
        a, b, users = _users_world(seed, users=20, per_user=8, mean_lift=0.0)
        c, n = compare_clustered(a, b, users, n_boot=400, seed=seed), compare(a, b, n_boot=400, seed=seed)
        cover_c += c["ci_low"] <= 0 <= c["ci_high"]; cover_n += n["ci_low"] <= 0 <= n["ci_high"]
    assert cover_c >= 50 and cover_n <= 42   # 53 and 35 of 60 with these seeds


def test_compare_clustered_refuses_bad_clusters(pair):
    from llmrec_nb.stats import compare_clustered
    a, b = pair
    with pytest.raises(DataFormatError, match="clusters"): compare_clustered(a, b, ["u"] * 3)
    with pytest.raises(DataFormatError, match="clusters"): compare_clustered(a, b, [None] * len(a))


def test_claim_statistics_and_degenerate_reason(pair):
    from llmrec_nb.stats import claim_statistics, compare_clustered, degenerate_reason
    a, b, users = _users_world(1)
    c = compare_clustered(a, b, users, n_boot=200)
    assert claim_statistics(c) == {"ci_low": c["ci_low"], "ci_high": c["ci_high"], "n": 300, "n_effective": 30, "sd": c["sd"],
                                   "mean": c["mean"], "baseline_mean": c["baseline_mean"]}
    assert claim_statistics(compare(*pair, n_boot=100))["n_effective"] == 150
    assert degenerate_reason(np.zeros(5), np.zeros(5)) == "all zeros"
    assert degenerate_reason(np.full(5, 0.5), np.full(5, 0.5)) == "both arms constant"
    assert degenerate_reason(*pair) is None


def _simulated_mde(sd, n, sims=20000, seed=0, alpha=0.05, power=0.8):
    "The mean difference the paired t-test detects `power` of the time, found by simulation (common random numbers, bisection)."
    z = np.random.default_rng(seed).normal(size=(sims, n))
    zbar, s = z.mean(1), z.std(1, ddof=1)
    crit = st.t.ppf(1 - alpha / 2, n - 1)
    rate = lambda e: np.mean(np.abs(e / sd + zbar) * np.sqrt(n) / s > crit)
    lo, hi = 0.0, 10 * sd
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rate(mid) < power else (lo, mid)
    return hi


@pytest.mark.parametrize("sd,n", [(1.0, 8), (0.25, 40), (0.5, 300)])
def test_min_detectable_effect_matches_simulation(sd, n):
    from llmrec_nb.stats import min_detectable_effect, n_needed, paired_power
    mde = min_detectable_effect(sd, n)
    assert mde == pytest.approx(_simulated_mde(sd, n), rel=0.10)
    assert paired_power(mde, sd, n) == pytest.approx(0.8, abs=1e-6)
    assert n_needed(mde * 1.001, sd) <= n < n_needed(mde * 0.95, sd)


def test_n_needed_for_hit_rates_by_the_binomial_approximation():
    "Two independent hit-rate arms (0.10 vs 0.16): at the n the bounded sd gives, a paired t-test rejects about 80% of the time."
    from llmrec_nb.stats import bounded_sd, n_needed
    base, lift = 0.10, 0.06
    n = n_needed(lift, bounded_sd(base + lift, base))
    rng = np.random.default_rng(1)
    a = (rng.random((4000, n)) < base + lift).astype(float); b = (rng.random((4000, n)) < base).astype(float)
    d = a - b
    t = d.mean(1) / (d.std(1, ddof=1) / np.sqrt(n))
    assert np.mean(np.abs(t) > st.t.ppf(0.975, n - 1)) == pytest.approx(0.8, rel=0.10)


def test_ci_and_sd_recovered_from_effect_and_p():
    from llmrec_nb.stats import normal_ci, sd_from_p
    rng = np.random.default_rng(2)
    x = rng.normal(0.1, 0.5, 80)
    r = st.ttest_1samp(x, 0)
    assert sd_from_p(x.mean(), r.pvalue, 80) == pytest.approx(x.std(ddof=1), rel=1e-6)
    lo, hi = normal_ci(x.mean(), r.pvalue)
    se = x.std(ddof=1) / np.sqrt(80)
    assert (lo + hi) / 2 == pytest.approx(x.mean()) and (hi - lo) / 2 == pytest.approx(1.96 * se, rel=0.05)
    assert math.isnan(sd_from_p(0.0, 1.0, 30)) and normal_ci(0.0, 1.0) == (-math.inf, math.inf)


# --- An independent oracle: the hand-written ranking metrics and the paired t-test against ranx (test-only dependency,
# installed by the `dev` extra). Scores are continuous, so no ties: tie handling is a convention that differs between tools.
ranx = pytest.importorskip("ranx", reason="ranx (the dev extra's independent check of metrics and tests) is not installed")


def _ranx_world(seed=0, users=60, items=40):
    rng = np.random.default_rng(seed)
    scores = rng.random((users, items))
    targets = rng.integers(0, items, users)
    seen = rng.random((users, items)) < 0.3
    seen[np.arange(users), targets] = False
    return scores, targets, seen


def _ranx_eval(scores, targets, metrics, mask=None):
    from ranx import Qrels, Run, evaluate
    qrels = Qrels({f"u{u}": {f"i{t}": 1} for u, t in enumerate(targets)})
    run = Run({f"u{u}": {f"i{i}": float(s) for i, s in enumerate(row) if mask is None or not mask[u, i]} for u, row in enumerate(scores)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        per_query = evaluate(qrels, run, metrics, return_mean=False, make_comparable=True)
    order = sorted(range(len(targets)), key=lambda u: f"u{u}")   # ranx returns queries in sorted id order
    back = np.argsort(order)
    return {m: np.asarray(v)[back] for m, v in per_query.items()}


@pytest.mark.parametrize("masked", [False, True])
def test_ranking_metrics_match_ranx(masked):
    from llmrec_nb.metrics import hit_rate, mrr, ndcg, precision, rank_of_target, topk_ranks
    scores, targets, seen = _ranx_world()
    ranks = topk_ranks(scores, targets, seen_mask=seen) if masked else rank_of_target(scores, targets)
    if not masked: np.testing.assert_array_equal(ranks, topk_ranks(scores, targets))
    ks = (1, 3, 5, 10)
    ref = _ranx_eval(scores, targets, [f"{m}@{k}" for k in ks for m in ("hit_rate", "ndcg", "precision")] + ["mrr"],
                     mask=seen if masked else None)
    for k in ks:
        np.testing.assert_allclose(hit_rate(ranks, k), ref[f"hit_rate@{k}"], atol=1e-12)
        np.testing.assert_allclose(ndcg(ranks, k), ref[f"ndcg@{k}"], atol=1e-12)
        np.testing.assert_allclose(precision(ranks, k), ref[f"precision@{k}"], atol=1e-12)
    np.testing.assert_allclose(mrr(ranks), ref["mrr"], atol=1e-12)


def test_ranked_lists_match_ranx():
    "Generated lists (a target may be missing) scored by position: the same per-user values."
    from llmrec_nb.metrics import hit_rate, mrr, ndcg, ranks_from_lists
    rng = np.random.default_rng(3)
    lists = [list(rng.permutation(20)[:10]) for _ in range(50)]
    targets = rng.integers(0, 20, 50)
    ranks = ranks_from_lists(lists, list(targets))
    scores = np.full((50, 20), -1.0)
    for u, lst in enumerate(lists): scores[u, lst] = 10.0 - np.arange(len(lst))
    listed = scores > -1
    ref = _ranx_eval(scores, targets, ["hit_rate@5", "ndcg@10", "mrr"], mask=~listed)
    np.testing.assert_allclose(hit_rate(ranks, 5), ref["hit_rate@5"], atol=1e-12)
    np.testing.assert_allclose(ndcg(ranks, 10), ref["ndcg@10"], atol=1e-12)
    np.testing.assert_allclose(mrr(ranks), ref["mrr"], atol=1e-12)


def test_paired_ttest_matches_ranx_compare():
    from ranx import Qrels, Run, compare as ranx_compare
    from llmrec_nb.metrics import ndcg, rank_of_target
    rng = np.random.default_rng(4)
    users, items = 80, 30
    targets = rng.integers(0, items, users)
    base = rng.random((users, items))
    better = base.copy(); better[np.arange(users), targets] += rng.random(users) * 0.5   # a method that lifts the target
    qrels = Qrels({f"u{u}": {f"i{t}": 1} for u, t in enumerate(targets)})
    runs = [Run({f"u{u}": {f"i{i}": float(s) for i, s in enumerate(row)} for u, row in enumerate(m)}, name=name)
            for name, m in (("better", better), ("base", base))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = ranx_compare(qrels, runs, metrics=["ndcg@10"], stat_test="student")
    p_ranx = float(report.to_dict()["better"]["comparisons"]["base"]["ndcg@10"])
    a, b = ndcg(rank_of_target(better, targets), 10), ndcg(rank_of_target(base, targets), 10)
    assert paired_ttest(a, b).p == pytest.approx(p_ranx, rel=1e-9)
    assert compare(a, b, n_boot=200)["p_ttest"] == pytest.approx(p_ranx, rel=1e-9)
