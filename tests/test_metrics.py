"""Metrics checked against scikit-learn and hand-computed values."""
import math, os, time

os.environ.setdefault("LLMREC_PROGRESS", "0")

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import accuracy_score, mean_absolute_error, mean_squared_error, ndcg_score, roc_auc_score

from llmrec_nb.core import DataFormatError
from llmrec_nb.metrics import (absolute_errors, accuracy, auc, bleu, correct, grouped_auc, hit_rate, mae, mean_report, mrr,
                               ndcg, precision, rank_of_target, ranking_report, ranks_from_lists, rmse, rouge, squared_errors,
                               text_report, tokenize, topk_ranks)


def brute_rank(row, t):
    "Pessimistic rank by counting, one row at a time."
    return float(sum(1 for j, s in enumerate(row) if j != t and s >= row[t]))


def test_rank_of_target_matches_brute_force_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(200, 20)).astype(float)   # many ties
    target = rng.integers(0, 20, size=200)
    expected = [brute_rank(scores[i], target[i]) for i in range(200)]
    np.testing.assert_array_equal(rank_of_target(scores, target), expected)


def test_constant_scorer_is_never_rewarded():
    ranks = rank_of_target(np.zeros((50, 20)), np.arange(50) % 20)
    assert (ranks == 19).all()
    for k in (1, 5, 10):
        assert hit_rate(ranks, k).sum() == 0 and ndcg(ranks, k).sum() == 0
    assert hit_rate(ranks, 20).mean() == 1.0


def test_ndcg_matches_sklearn_for_one_relevant_item():
    rng = np.random.default_rng(1)
    n_users, n_cand = 100, 30
    scores = rng.random((n_users, n_cand))   # continuous: no ties, where sklearn's tie averaging would differ
    target = rng.integers(0, n_cand, n_users)
    y_true = np.zeros_like(scores); y_true[np.arange(n_users), target] = 1
    ranks = rank_of_target(scores, target)
    for k in (1, 3, 5, 10, 30):
        assert ndcg(ranks, k).mean() == pytest.approx(ndcg_score(y_true, scores, k=k))
        per_user = [ndcg_score(y_true[i:i + 1], scores[i:i + 1], k=k) for i in range(5)]
        np.testing.assert_allclose(ndcg(ranks[:5], k), per_user)


def test_ranking_metrics_hand_computed():
    ranks = np.array([0, 2, 9, 10, np.inf])
    np.testing.assert_array_equal(hit_rate(ranks, 10), [1, 1, 1, 0, 0])
    np.testing.assert_allclose(ndcg(ranks, 10), [1, 0.5, 1 / math.log2(11), 0, 0])
    np.testing.assert_allclose(precision(ranks, 5), [0.2, 0.2, 0, 0, 0])
    np.testing.assert_allclose(mrr(ranks), [1, 1 / 3, 0.1, 1 / 11, 0])
    rep = ranking_report(ranks)
    assert set(rep) == {f"{m}@{k}" for m in ("HR", "NDCG", "P") for k in (1, 3, 5, 10)} | {"MRR"}
    assert all(v.shape == (5,) for v in rep.values())
    assert mean_report(rep)["HR@10"] == pytest.approx(0.6)


def test_ranks_from_lists():
    lists = [["b", "a"], ["a", "a", "c"], [], None, ["x"]]
    np.testing.assert_array_equal(ranks_from_lists(lists, ["a", "c", "a", "a", "x"]), [1, 2, np.inf, np.inf, 0])


def test_bad_inputs_raise_data_format_error():
    with pytest.raises(DataFormatError): rank_of_target(np.zeros((3, 4)), np.array([0, 1]))
    with pytest.raises(DataFormatError): rank_of_target(np.zeros((2, 4)), np.array([0.0, 1.0]))
    with pytest.raises(DataFormatError): ndcg([np.nan], 5)
    with pytest.raises(DataFormatError): ranks_from_lists([["a"]], [])
    with pytest.raises(DataFormatError): topk_ranks(np.zeros((2, 3)), np.array([0, 1]), np.zeros((2, 2), bool))


def test_topk_ranks_full_catalogue_matches_masked_brute_force():
    rng = np.random.default_rng(2)
    n_users, n_items = 943, 1682
    scores = rng.standard_normal((n_users, n_items)).astype(np.float32)
    seen = rng.random((n_users, n_items)) < 0.06
    target = rng.integers(0, n_items, n_users)
    seen[np.arange(n_users), target] = False
    ranks = topk_ranks(scores, target, seen, chunk_size=256)
    masked = np.where(seen, -np.inf, scores.astype(float))
    np.testing.assert_array_equal(ranks, rank_of_target(masked, target))
    for i in range(0, n_users, 97):   # an independent check on a few rows
        others = masked[i][np.arange(n_items) != target[i]]
        assert ranks[i] == np.sum(others >= scores[i, target[i]])
    np.testing.assert_array_equal(topk_ranks(scores, target, sp.csr_matrix(seen)), ranks)
    assert (topk_ranks(scores, target) >= ranks).all()   # masking never hurts the target


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(300) < 0.3
    s = np.round(rng.random(300) + 0.3 * y, 1)   # rounded: many ties
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert auc(y.astype(int), -s) == pytest.approx(roc_auc_score(y, -s))


def test_grouped_auc():
    rng = np.random.default_rng(3)
    g = rng.integers(0, 10, 400).astype(str)
    y = rng.random(400) < 0.4
    s = rng.random(400) + 0.2 * y
    y[g == "0"] = True   # a one-class group: skipped
    per = {k: (roc_auc_score(y[g == k], s[g == k]), (g == k).sum()) for k in np.unique(g) if 0 < y[g == k].mean() < 1}
    assert "0" not in per
    assert grouped_auc(y, s, g) == pytest.approx(np.mean([a for a, _ in per.values()]))
    assert grouped_auc(y, s, g, weighted=True) == pytest.approx(np.average([a for a, _ in per.values()], weights=[n for _, n in per.values()]))
    with pytest.raises(DataFormatError): auc(np.ones(4), np.arange(4))


def test_nan_scores_rank_worst():
    rng = np.random.default_rng(5)
    scores = rng.random((300, 12))
    scores[rng.random(scores.shape) < 0.2] = np.nan
    target = rng.integers(0, 12, 300)
    def brute(row, t):   # NaN below every number; a NaN target behind every other candidate
        if np.isnan(row[t]): return float(len(row) - 1)
        return float(sum(1 for j, x in enumerate(row) if j != t and not np.isnan(x) and x >= row[t]))
    expected = [brute(scores[i], t) for i, t in enumerate(target)]
    ranks = rank_of_target(scores, target)
    np.testing.assert_array_equal(ranks, expected)
    assert (ranks[np.isnan(scores[np.arange(300), target])] == 11).all()       # a NaN target is last
    assert np.isfinite(ranks).all() and (ranks >= 0).all()
    assert (ndcg(ranks, 10) <= 1).all()                                          # never inf


def test_diverged_model_never_wins():
    nan_model = np.full((20, 30), np.nan)
    target = np.arange(20)
    for r in (rank_of_target(nan_model, target), topk_ranks(nan_model, target)):
        assert (r == 29).all() and ndcg(r, 10).sum() == 0 and hit_rate(r, 10).sum() == 0
    seen = np.zeros((20, 30), bool); seen[:, 25:] = True
    np.testing.assert_array_equal(topk_ranks(nan_model, target, seen), np.full(20, 24.0))   # last among the unmasked


def test_topk_ranks_nan_matches_rank_of_target():
    rng = np.random.default_rng(6)
    scores = rng.standard_normal((100, 40)); scores[rng.random(scores.shape) < 0.3] = np.nan
    target = rng.integers(0, 40, 100)
    np.testing.assert_array_equal(topk_ranks(scores, target, chunk_size=7), rank_of_target(scores, target))


def test_auc_with_nan_scores_raises():
    with pytest.raises(DataFormatError, match="NaN score"): auc([0, 1, 1], [0.2, np.nan, 0.4])
    with pytest.raises(DataFormatError, match="NaN score"): grouped_auc([0, 1, 0, 1], [0.1, 0.2, np.nan, 0.3], ["a", "a", "b", "b"])


def test_rating_and_classification_errors_match_sklearn():
    rng = np.random.default_rng(4)
    t, p = rng.integers(1, 6, 100).astype(float), rng.uniform(1, 5, 100)
    assert rmse(t, p) == pytest.approx(math.sqrt(mean_squared_error(t, p)))
    assert mae(t, p) == pytest.approx(mean_absolute_error(t, p))
    assert squared_errors(t, p).mean() == pytest.approx(mean_squared_error(t, p))
    assert absolute_errors(t, p).shape == (100,)
    lt, lp = rng.choice(["18-24", "25-34", "35-44"], 100), rng.choice(["18-24", "25-34", "35-44"], 100)
    assert accuracy(lt, lp) == pytest.approx(accuracy_score(lt, lp))
    assert correct(lt, lp).sum() == (lt == lp).sum()
    assert math.isnan(rmse([1, 2], [1, np.nan]))   # invalid predictions are the caller's decision


def test_text_metrics_hand_computed():
    assert tokenize("It's Sci-Fi!") == ["it", "s", "sci", "fi"]
    ref = "the cat is on the mat"
    # clipping: "the" counts at most twice; bigrams: none match → (0+1)/(3+1); brevity penalty exp(1 - 6/4)
    assert bleu("the the the the", ref, 1) == pytest.approx(math.exp(-0.5) * 0.5)
    assert bleu("the the the the", ref, 2) == pytest.approx(math.exp(-0.5) * math.sqrt(0.5 * 0.25))
    # one word against one word: BLEU-2 smooths the empty bigram count to (0+1)/(1+1)
    assert bleu("comedy", "comedy", 2) == pytest.approx(math.sqrt(0.5)) and bleu("comedy", "drama", 2) == 0.0
    # no brevity penalty when the hypothesis is at least as long
    assert bleu("the cat sat on the mat", ref, 2) == pytest.approx(math.sqrt(5 / 6 * (3 + 1) / (5 + 1)))
    assert bleu(ref, ref, 2) == pytest.approx(1.0)
    # ROUGE-1: overlap 5 (the×2, cat, on, mat) of 6 and 6 → F1 5/6; ROUGE-2: on-the, the-mat, the-cat → 3/5
    hyp = "the cat sat on the mat"
    assert rouge(hyp, ref, 1) == pytest.approx(5 / 6)
    assert rouge(hyp, ref, 2) == pytest.approx(3 / 5)
    assert rouge(hyp, ref, "L") == pytest.approx(5 / 6)   # LCS "the cat on the mat"
    assert rouge("police killed the gunman", "police kill the gunman", "rougeL") == pytest.approx(3 / 4)
    assert rouge("", ref, "L") == 0.0 and bleu("", ref, 2) == 0.0


def test_bleu_is_nltk_method2_and_rouge_is_rouge_score():
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_score.rouge_scorer import RougeScorer
    # the short-hypothesis case: no bigram at all gives bigram precision (0+1)/(1+1), not 1
    assert bleu("comedy", "comedy", 2) == pytest.approx(math.sqrt(0.5))
    assert bleu("comedy", "comedy", 2) == pytest.approx(sentence_bleu([["comedy"]], ["comedy"], weights=(0.5, 0.5),
                                                                      smoothing_function=SmoothingFunction().method2))
    rng = np.random.default_rng(7)
    words = "the a cat dog sat ran on under mat rug big small red".split()
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"])   # its own tokeniser: equal to ours on lowercase ASCII words
    for _ in range(50):
        h = " ".join(rng.choice(words, rng.integers(1, 9))); r = " ".join(rng.choice(words, rng.integers(1, 9)))
        for n in (1, 2, 3):
            assert bleu(h, r, n) == pytest.approx(sentence_bleu([r.split()], h.split(), weights=(1 / n,) * n,
                                                                smoothing_function=SmoothingFunction().method2))
        ref = scorer.score(r, h)
        assert rouge(h, r, 1) == pytest.approx(ref["rouge1"].fmeasure)
        assert rouge(h, r, 2) == pytest.approx(ref["rouge2"].fmeasure)
        assert rouge(h, r, "L") == pytest.approx(ref["rougeL"].fmeasure)


def test_text_metrics_need_no_corpus_download(tmp_path):
    import subprocess, sys
    code = ("import nltk; nltk.data.path[:] = []\n"
            "from llmrec_nb.metrics import text_report\n"
            "r = text_report(['the cat sat', 'café'], ['the cat sat on the mat', 'café noir'])\n"
            "print({k: round(float(v.mean()), 6) for k, v in r.items()})")
    env = {**os.environ, "NLTK_DATA": str(tmp_path), "HOME": str(tmp_path)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "ROUGE-L" in res.stdout


def test_text_metrics_per_sample_and_corpus_mean():
    hyps, refs = ["action and drama", "comedy", ""], ["drama and action movies", "comedy", "horror"]
    rep = text_report(hyps, refs)
    assert all(v.shape == (3,) for v in rep.values())
    np.testing.assert_allclose(rep["ROUGE-1"], [2 * 1 * 0.75 / 1.75, 1, 0])
    assert mean_report(rep)["ROUGE-1"] == pytest.approx(rep["ROUGE-1"].mean())
    np.testing.assert_allclose(rep["BLEU-1"], [bleu(h, r, 1) for h, r in zip(hyps, refs)])
    with pytest.raises(DataFormatError): bleu(["a"], ["a", "b"], 1)
