"""Conventional recommenders: planted structure is recovered, seen items are masked, seeds are honoured, bad ids fail clearly."""
import os

os.environ.setdefault("LLMREC_PROGRESS", "0")

import numpy as np
import pandas as pd
import pytest

from llmrec_nb.conventional import (BPRMF, CTRRating, GRU4Rec, BiasedMF, IdIndex, LightGCN, NotFittedError, Popularity,
                                    SASRec, UnknownIdError)
from llmrec_nb.core import DataFormatError


def planted(n_users=80, n_items=80, per_user=16, groups=4, seed=0):
    """Users of group g pick items i with i % groups == g, walking i -> i + groups (90%) or jumping within the group.
    Ratings: 4, +1 when the user's gender matches the item's genre block, -1 at random (20%)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        g = u % groups
        own = [i for i in range(n_items) if i % groups == g]
        cur, seq = int(rng.choice(own)), []
        while len(seq) < per_user:
            if cur not in seq: seq.append(cur)
            cur = (cur + groups) % n_items if rng.random() < 0.9 else int(rng.choice(own))
        for t, i in enumerate(seq):
            r = 4 + (u % 2 == i % 8 // 4) - (rng.random() < 0.2)
            rows.append((f"u{u}", f"i{i}", float(min(5, r)), 1000 + t))
    df = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    last = df.groupby("user")["timestamp"].transform("max")
    return df[df.timestamp < last - 1], df[df.timestamp == last - 1], df[df.timestamp == last]


class Side:
    "A minimal stand-in for RecData's side tables."
    def __init__(self, n_users=80, n_items=80):
        self.users = pd.DataFrame({"user": [f"u{u}" for u in range(n_users)], "gender": ["F", "M"] * (n_users // 2),
                                   "age": np.arange(n_users) % 50 + 12, "zip": [f"z{u}" for u in range(n_users)]})
        self.items = pd.DataFrame({"item": [f"i{i}" for i in range(n_items)], "title": [f"Item {i}" for i in range(n_items)],
                                   "genres": [["A"] if i % 8 < 4 else ["B", "C"] for i in range(n_items)]})


@pytest.fixture(scope="module")
def split():
    return planted()


def hit(m, df, k):
    return float((m.full_ranks(df) < k).mean())


@pytest.fixture(scope="module")
def bpr(split):
    train, valid, _ = split
    return BPRMF(dim=16, epochs=30, eval_every=5, seed=0).fit(train, valid)


def test_graph_models_beat_popularity(split, bpr):
    train, valid, test = split
    pop = Popularity().fit(train, valid)
    lgc = LightGCN(dim=16, epochs=30, eval_every=5, seed=0).fit(train, valid)
    assert hit(bpr, test, 5) > hit(pop, test, 5) + 0.3
    assert hit(lgc, test, 5) > hit(pop, test, 5) + 0.3


@pytest.mark.parametrize("cls", [SASRec, GRU4Rec])
def test_sequential_ranks_planted_next_item_first(split, bpr, cls):
    train, valid, test = split
    m = cls(dim=32, max_len=16, epochs=30, lr=5e-3, batch_size=16, eval_every=5, seed=0).fit(train, valid)
    assert hit(m, test, 1) > 0.6
    assert hit(m, test, 1) > hit(bpr, test, 1) + 0.3
    # at test time a user's history is train + validation, in time order
    u = valid.user.iloc[0]
    hist = list(pd.concat([train, valid]).query("user == @u").sort_values("timestamp").item)
    np.testing.assert_allclose(m.score_histories([hist]), m.score_all([u], exclude_seen=False), rtol=1e-5, atol=1e-5)
    assert not np.allclose(m.score_histories([hist[:-1]]), m.score_all([u], exclude_seen=False), atol=1e-3)


def test_rating_models_recover_structure(split):
    train, valid, test = split
    y = test.rating.to_numpy()
    base = np.sqrt(np.mean((train.rating.mean() - y) ** 2))
    side = Side()
    for m in (BiasedMF(dim=8, epochs=40, seed=0), CTRRating("FM", dim=8, epochs=40, seed=0),
              CTRRating("DeepFM", dim=8, epochs=40, seed=0)):
        m.fit(train, valid, data=side)
        pred = m.predict_rating(test.user, test.item)
        assert pred.min() >= 3.0 and pred.max() <= 5.0          # clipped to the training range
        assert np.sqrt(np.mean((pred - y) ** 2)) < base - (0.02 if isinstance(m, BiasedMF) else 0.1), m.name
    assert m.fields_ == ["user", "user:age", "user:gender", "item", "item:genres"]   # declared columns only (no zip, no title)


@pytest.mark.parametrize("cls", [GRU4Rec, SASRec])
def test_sequence_score_does_not_depend_on_padding(split, cls):
    import torch
    train, valid, _ = split
    m = cls(dim=16, max_len=20, epochs=2, batch_size=16, seed=0).fit(train, valid)
    hist = m.items.encode(["i0", "i4", "i8", "i12"]) + 1
    with torch.no_grad():
        outs = [m.net(torch.as_tensor([[0] * (w - len(hist)) + list(hist)]))[0, -1] for w in (4, 5, 11, 20)]
        # and in a batch beside a full-length history (a right-aligned batch of mixed lengths)
        other = m.items.encode([f"i{4 * k + 1}" for k in range(20)]) + 1
        batch = torch.as_tensor([[0] * (20 - len(hist)) + list(hist), list(other)])
        outs.append(m.net(batch)[0, -1])
    for o in outs[1:]:
        np.testing.assert_allclose(o.numpy(), outs[0].numpy(), rtol=1e-5, atol=1e-6)
    if cls is GRU4Rec:   # the GRU run on the bare sequence, no padding at all
        x = m.net.item(torch.as_tensor(hist)[None])
        with torch.no_grad(): bare = m.net.out(m.net.gru(x)[0])[0, -1]
        np.testing.assert_allclose(bare.numpy(), outs[0].numpy(), rtol=1e-5, atol=1e-6)
    scores = m.score_histories([["i0", "i4", "i8", "i12"], [f"i{4 * k + 1}" for k in range(20)]])
    np.testing.assert_allclose(scores[:1], m.score_histories([["i0", "i4", "i8", "i12"]]), rtol=1e-5, atol=1e-6)


def test_fm_uses_declared_features_never_the_generating_cluster():
    from llmrec_nb.data import leave_one_out, load_synthetic
    data = load_synthetic()
    assert "cluster" in data.users.columns and "cluster" in data.items.columns
    sp = leave_one_out(data.interactions)
    for name in ("FM", "DeepFM"):
        m = CTRRating(name, dim=4, epochs=1, seed=0).fit(sp.train, sp.valid, data=data)
        assert not any("cluster" in f for f in m.fields_), m.fields_
        assert m.fields_ == ["user", "user:age", "user:gender", "user:occupation", "item", "item:genres", "item:year"]
    # ML-100K's tables: zip prefix and release year are derived, title and URL are not features
    from llmrec_nb.conventional import declared_side_features
    class ML:
        users = pd.DataFrame({"user": ["1", "2", "3"], "age": [24, 53, 23], "gender": ["M", "F", "M"],
                              "occupation": ["technician", "other", "writer"], "zip_code": ["85711", "94043", "T8H1N"]})
        items = pd.DataFrame({"item": ["1", "2"], "title": ["Toy Story (1995)", "GoldenEye (1995)"],
                              "release_date": ["01-Jan-1995", None], "imdb_url": ["u1", "u2"], "genres": [["Animation"], ["Action"]]})
    u, i = declared_side_features(ML)
    assert list(u.columns) == ["user", "age", "gender", "occupation", "zip_prefix"] and list(u.zip_prefix) == ["85", "94", "T8"]
    assert list(i.columns) == ["item", "genres", "year"] and i.year.iloc[0] == 1995 and pd.isna(i.year.iloc[1])
    # a catalogue's category columns are declared item features too (the clothing reviews' division, department, class)
    class Shop:
        users = pd.DataFrame({"user": ["a", "b"], "age": [30, 40]})
        items = pd.DataFrame({"item": ["x", "y"], "title": ["Dress", "Top"], "division": ["General", "Petite"],
                              "department": ["Dresses", "Tops"], "class": ["Dresses", "Knits"], "rating_mean": [4.1, 3.9]})
    assert list(declared_side_features(Shop)[1].columns) == ["item", "division", "department", "class"]


def test_nan_scores_never_win_validation(split):
    import torch
    from llmrec_nb.conventional import _ranks_from_scores
    s = torch.tensor([[np.nan, 0.5, 0.2, -np.inf], [0.1, np.nan, -np.inf, 0.3], [np.nan] * 4])
    r = _ranks_from_scores(s, torch.tensor([1, 1, 2]))
    np.testing.assert_array_equal(r, [0, 2, 3])   # NaN never ahead; a NaN target behind every unmasked entry
    train, valid, _ = split

    class Diverged(BPRMF):   # every score NaN from the second epoch on
        def _score_all(self, u):
            out = super()._score_all(u)
            return out * np.nan if len(self.history_) >= 1 else out
    m = Diverged(dim=8, epochs=6, eval_every=1, patience=10, seed=0).fit(train, valid)
    valid_scores = [h["valid"] for h in m.history_]
    assert not np.isnan(valid_scores[0]) and all(v == 0 for v in valid_scores[1:])
    assert m.best_epoch_ == 1 and m.best_valid_ == valid_scores[0] and m.stopped_by_ == "epochs"


def test_time_cap_is_opt_in_and_recorded(split):
    train, valid, _ = split
    assert BPRMF().max_seconds is None
    m = BPRMF(dim=8, epochs=50, eval_every=1, patience=100, seed=0, max_seconds=0.0).fit(train, valid)
    assert len(m.history_) == 1 and m.stopped_by_ == "max_seconds"
    m = BPRMF(dim=8, epochs=3, eval_every=1, patience=100, seed=0).fit(train, valid)
    assert len(m.history_) == 3 and m.stopped_by_ == "epochs"


def test_seen_items_are_masked(split, bpr):
    train, valid, test = split
    seen = pd.concat([train, valid]).groupby("user")["item"].apply(set)
    rec = bpr.recommend(["u0", "u5"], k=20)
    assert len(rec) == 40 and list(rec.columns) == ["user", "rank", "item", "score"]
    for u, g in rec.groupby("user"):
        assert not (set(g.item) & seen[u])
        assert list(g["rank"]) == list(range(20)) and g.score.is_monotonic_decreasing
    full = bpr.score_all(["u0"], exclude_seen=True)
    assert np.isneginf(full[0, bpr.items.encode(sorted(seen["u0"]))]).all()
    assert np.isfinite(bpr.score_all(["u0"], exclude_seen=False)).all()
    # a seen target is still ranked (never masked away)
    assert np.isfinite(bpr.full_ranks(train.head(3))).all()
    unmasked = bpr.recommend(["u0"], k=5, exclude_seen=False)
    assert set(unmasked.item) & seen["u0"]


def test_score_shapes_and_candidates(split, bpr):
    train, valid, test = split
    pairs = bpr.score(["u0", "u1"], ["i0", "i1"])
    assert pairs.shape == (2,)
    mat = bpr.score(["u0", "u1"], [["i0", "i1", "i2"], ["i3", "i4", "i5"]])
    assert mat.shape == (2, 3) and np.isclose(mat[0, 1], bpr.score(["u0"], ["i1"])[0]) and np.isclose(mat[1, 1], bpr.score(["u1"], ["i4"])[0])
    cands = pd.DataFrame({"user": ["u0", "u1"], "target": ["i2", "i3"], "candidates": [["i0", "i1", "i2"], ["i3", "i4", "i5"]]})
    s, t = bpr.candidate_scores(cands)
    assert s.shape == (2, 3) and list(t) == [2, 0]
    emb = bpr.user_embeddings()
    assert emb.shape == (80, 16) and emb.index[0] == "u0"


def test_deterministic_under_seed(split):
    train, valid, _ = split
    kw = dict(dim=16, max_len=16, epochs=4, eval_every=2, batch_size=16, seed=3)
    a, b = SASRec(**kw).fit(train, valid), SASRec(**kw).fit(train, valid)
    np.testing.assert_array_equal(a.item_embeddings().values, b.item_embeddings().values)
    c = SASRec(**{**kw, "seed": 4}).fit(train, valid)
    assert not np.array_equal(a.item_embeddings().values, c.item_embeddings().values)
    m1 = LightGCN(dim=8, epochs=4, seed=1).fit(train, valid).user_embeddings().values
    m2 = LightGCN(dim=8, epochs=4, seed=1).fit(train, valid).user_embeddings().values
    np.testing.assert_array_equal(m1, m2)


def test_unknown_ids_are_named(split, bpr):
    with pytest.raises(UnknownIdError, match="'ghost'"):
        bpr.score(["u0", "ghost"], ["i0", "i1"])
    with pytest.raises(UnknownIdError, match="'i999'"):
        bpr.score(["u0"], [["i0", "i999"]])
    with pytest.raises(UnknownIdError, match="unknown item"):
        bpr.full_ranks(pd.DataFrame({"user": ["u0"], "item": ["nope"]}))
    with pytest.raises(UnknownIdError):
        IdIndex(["a"]).encode(["b"])


def test_bad_input(split):
    train, valid, _ = split
    with pytest.raises(DataFormatError, match="item"):
        BPRMF().fit(train.drop(columns="item"))
    with pytest.raises(DataFormatError, match="ratings"):
        BiasedMF().fit(train.assign(rating=np.nan))
    with pytest.raises(ValueError, match="does not use extra_sequences"):
        BPRMF().fit(train, extra_sequences=[["i0", "i4"]])
    with pytest.raises(NotFittedError):
        Popularity().recommend(["u0"])
    with pytest.raises(ValueError, match="candidate lists differ"):
        Popularity().fit(train).score(["u0", "u1"], [["i0"], ["i1", "i2"]])


def test_extra_training_data(split, bpr):
    train, valid, _ = split
    extra = pd.DataFrame({"user": ["u0"] * 200, "pos": ["i1"] * 200, "neg": ["i0"] * 200})
    m = BPRMF(dim=16, epochs=30, eval_every=5, seed=0).fit(train, valid, extra_triples=extra)
    gap = lambda mod: mod.score(["u0"], ["i1"])[0] - mod.score(["u0"], ["i0"])[0]
    assert gap(m) > gap(bpr)
    # augmented sequences teach a sequential model a transition it never saw in the users' own data
    aug = [["i1", "i2", "i3", "i6"]] * 100
    kw = dict(dim=16, max_len=8, epochs=10, lr=5e-3, batch_size=32, seed=0)
    s0, s1 = GRU4Rec(**kw).fit(train), GRU4Rec(**kw).fit(train, extra_sequences=aug)
    j = s1.items.encode(["i6"])[0]
    assert s1.score_histories([["i1", "i2", "i3"]])[0, j] - s0.score_histories([["i1", "i2", "i3"]])[0, j] > 1.0
    fm = CTRRating("FM", dim=4, epochs=3, seed=0).fit(train, valid, item_features=pd.DataFrame({"item": [f"i{i}" for i in range(80)], "director": [f"d{i % 5}" for i in range(80)]}))
    assert "item:director" in fm.fields_


def like_samples(n, seed):
    "History of 5 items of one taste group; the target is liked when it comes from the same group."
    rng = np.random.default_rng(seed)
    H, T, Y, L = [], [], [], []
    for k in range(n):
        g, like = k % 4, rng.random() < 0.5
        H.append([f"i{4 * j + g}" for j in rng.choice(20, 5, replace=False)])
        T.append(f"i{4 * rng.integers(20) + (g if like else (g + 1) % 4)}"); Y.append(int(like)); L.append([1, 1, 0, 1, 1])
    return H, T, Y, L


def test_like_mode(split):
    train, valid, _ = split
    H, T, Y, L = like_samples(300, 0)
    Ht, Tt, Yt, Lt = like_samples(200, 2)
    m = SASRec(dim=32, max_len=16, epochs=30, lr=5e-3, batch_size=16, eval_every=5, seed=0).fit(train, valid)
    m.fit_like(H, T, Y, history_labels=L, valid=like_samples(100, 1), epochs=30, lr=3e-3)
    p = m.predict_like(Ht, Tt, history_labels=Lt)
    from llmrec_nb.metrics import auc
    assert p.shape == (200,) and ((p > 0) & (p < 1)).all()
    assert auc(np.array(Yt), p) > 0.9
    # from scratch (no next-item pre-training) it still runs and gives probabilities
    fresh = GRU4Rec(dim=8, max_len=8, seed=0).fit_like(H[:50], T[:50], Y[:50], epochs=2, data=Side())
    assert fresh.predict_like(Ht[:5], Tt[:5]).shape == (5,)
    with pytest.raises(UnknownIdError):
        m.predict_like([["i0"]], ["zzz"])
    with pytest.raises(NotFittedError):
        SASRec().predict_like([["i0"]], ["i1"])
    with pytest.raises(ValueError, match="history_labels"):
        m.predict_like([["i0", "i4"]], ["i8"], history_labels=[[1]])
