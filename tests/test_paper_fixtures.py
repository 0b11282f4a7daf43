"tools/paper_fixtures.py: the stand-in datasets of the paper profile load with the project's loaders and survive its filters."
import re, sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import paper_fixtures  # noqa: E402

from llmrec_nb.core import LlmrecError  # noqa: E402
from llmrec_nb.loaders import load_dataset  # noqa: E402
from llmrec_nb.data import leave_one_out  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper_data")
    assert paper_fixtures.main([str(out)]) == 0
    return out


def paper_specs() -> list[tuple[str, str, str, dict, int | None]]:
    "(section, name, path, loader keywords, k-core) of every dataset params/paper.yaml reads from /data, parsed as its notebook does."
    prof = yaml.safe_load((ROOT / "params" / "paper.yaml").read_text())
    specs = []
    for s in prof["itdr"]["datasets"]:
        name, _, path = s.partition(":"); specs.append(("itdr", name, path, {}, None))
    specs.append(("tallrec", "bookcrossing", prof["tallrec"]["book_path"], {}, None))
    specs += [("soft", d["name"], d["path"], d.get("kw") or {}, prof["soft"]["kcore"]) for d in prof["soft"]["datasets"]]
    for s in [prof["molorec"]["dataset"], *prof["molorec"]["general_datasets"]]:
        name, _, path = s.partition(":"); specs.append(("molorec", name, path, {}, 5))
    for s in prof["llama4rec"]["datasets"]:
        name, *rest = s.split(":")
        path, k = (rest + [None, None])[:2]
        specs.append(("llama4rec", name, path, {}, int(k) if k else None))
    return [s for s in specs if s[2] and s[2].startswith("/data/")]


def several_categories(folder: Path) -> bool:
    return len([p for p in folder.glob("*.jsonl") if not p.name.startswith("meta_")]) > 1


@pytest.mark.parametrize("section,name,path,kw,k", paper_specs(), ids=lambda v: str(v) if isinstance(v, str) else None)
def test_every_paper_profile_dataset_loads(root, section, name, path, kw, k):
    folder = root / path.removeprefix("/data/")
    if name == "amazon2023" and "category" not in kw and several_categories(folder):
        # params/paper.yaml's itdr entry names the folder that soft fills with three categories, without category=
        with pytest.raises(LlmrecError, match="pass category="): load_dataset(name, folder, **kw)
        pytest.xfail("an amazon2023 folder of several categories needs category= (or a one-category folder)")
    data = load_dataset(name, folder, **kw)
    if k: data = data.kcore(k)
    assert data.n_interactions > 0 and data.interactions["user"].nunique() >= 100
    split = leave_one_out(data.interactions)
    assert len(split.train) and len(split.valid) and len(split.test)


def test_every_amazon_category_loads_from_the_shared_folder_and_its_own(root):
    for category in paper_fixtures.AMAZON_CATEGORIES:
        shared = load_dataset("amazon2023", root / "amazon2023", category=category)
        alone = load_dataset("amazon2023", root / "amazon2023" / category)
        assert shared.name == alone.name == f"amazon2023-{category}"
        assert shared.interactions.equals(alone.interactions)
        ten = shared.kcore(10)
        assert 0 < ten.interactions["user"].nunique() < shared.interactions["user"].nunique()   # the tail goes, the core stays
        assert (ten.interactions.groupby("user").size() >= 11).any()                           # SOFT's windows of 10 + 1


def test_publishers_formats(root):
    ml1m_movies = (root / "ml-1m" / "movies.dat").read_bytes()
    with pytest.raises(UnicodeDecodeError): ml1m_movies.decode("utf-8")                       # latin-1, as published
    ml1m = load_dataset("ml-1m", root / "ml-1m")
    assert ml1m.items["title"].str.contains(r"[éèêäöüßñø]").any()
    assert set(ml1m.users.columns) >= {"gender", "age", "occupation", "zip_code"}
    assert (ml1m.interactions.groupby("user").size() >= 20).all()                            # as in MovieLens 1M
    assert not (root / "ml-10m" / "users.dat").exists() and (root / "ml-10m" / "tags.dat").exists()
    ml10m = load_dataset("ml-10m", root / "ml-10m")
    assert (ml10m.interactions["rating"] % 1 == 0.5).any()                                   # half stars
    assert ml10m.users is None or "gender" not in ml10m.users.columns

    raw = (root / "bookcrossing" / "BX-Books.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError): raw.decode("utf-8")
    quoted = r'"(?:[^"\\]|\\.)*"'                       # a field in quotes, inner quotes backslash-escaped
    row = re.compile(f"{quoted}(?:;(?:{quoted}|NULL))+")  # only an unknown age is written bare, as NULL
    for name in ("BX-Book-Ratings.csv", "BX-Books.csv", "BX-Users.csv"):
        lines = (root / "bookcrossing" / name).read_text(encoding="latin-1").splitlines()
        assert all(row.fullmatch(line) for line in lines), name
    bx = load_dataset("bookcrossing", root / "bookcrossing")
    assert bx.items["title"].str.contains('"').any() and not bx.items["title"].str.contains(r'\\').any()
    assert (bx.interactions["rating"] == 0).any() and (bx.interactions["rating"] > 5).any()
    kept_all = load_dataset("bookcrossing", root / "bookcrossing", keep_unknown_items=True)
    assert kept_all.n_interactions > bx.n_interactions                                    # ratings of ISBNs BX-Books lacks

    amazon = load_dataset("amazon2023", root / "amazon2023", category="Video_Games")
    assert amazon.interactions["timestamp"].between(1.2e9, 1.8e9).all()                  # written in ms, read as s
    assert {"review", "review_title", "helpful_vote", "verified_purchase"} <= set(amazon.interactions.columns)
    assert len(amazon.items) > amazon.interactions["item"].nunique()                      # listed items nobody reviewed


def test_cross_domain_overlaps_and_cold_items(root):
    from llmrec_nb.mixing import remove_overlap, molorec_splits, title_key
    ml1m, ml10m = load_dataset("ml-1m", root / "ml-1m").kcore(5), load_dataset("ml-10m", root / "ml-10m").kcore(5)
    shared = {title_key(t) for t in ml1m.items["title"]} & {title_key(t) for t in ml10m.items["title"]}
    assert len(shared) > 100 and any(not k.isascii() for k in shared)          # latin-1 and utf-8 titles meet
    general, info = remove_overlap(ml10m, ml1m, by="events")
    assert 0 < info["removed"] < info["interactions_before"] and general.n_interactions > 0
    warm, cold = molorec_splits(ml1m.interactions, cold_frac=0.1, seed=0)
    assert len(cold.test) > 0 and len(warm.test) > 0
    assert not set(cold.test["item"]) & set(warm.train["item"])

    beauty = load_dataset("amazon2023", root / "amazon2023" / "All_Beauty").kcore(5)
    games = load_dataset("amazon2023", root / "amazon2023" / "Video_Games").kcore(5)
    kept, info = remove_overlap(games, beauty, by=["events", "users"])
    assert info["removed_by_users"] > 0 and kept.n_interactions > 0


def test_bookcrossing_filters_of_the_profile(root):
    from llmrec_nb.tallrec import book_samples
    bx = load_dataset("bookcrossing", root / "bookcrossing")
    five = bx.kcore(5)
    assert 0 < five.n_interactions < bx.n_interactions
    samples = book_samples(bx, like_threshold=5.0, min_ratings=4)
    assert len(samples) >= 100 and set(np.unique(samples["label"])) == {0, 1}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    import random
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        paper_fixtures.make_bookcrossing(random.Random(seed), tmp_path / name)
    read = lambda n: (tmp_path / n / "bookcrossing" / "BX-Book-Ratings.csv").read_bytes()
    assert read("a") == read("b") != read("c")


def test_paper_profile_sizes_reports_every_filtered_dataset(root):
    rows = paper_fixtures.paper_profile_sizes(root)
    assert {r["dataset"] for r in rows} >= {"ml-1m", "ml-10m", "bookcrossing"} | {f"amazon2023/{c}" for c in paper_fixtures.AMAZON_CATEGORIES}
    assert all(r["users"] > 0 for r in rows)
