#!/usr/bin/env python
"""Seeded stand-ins for the datasets the paper profile (params/paper.yaml) reads, in the publishers' file layouts.

    python tools/paper_fixtures.py OUT_DIR [--seed 0] [--stats]

writes
    OUT_DIR/ml-1m/         ratings.dat, movies.dat (latin-1), users.dat          `::`-separated, as MovieLens 1M
    OUT_DIR/ml-10m/        ratings.dat, movies.dat, tags.dat (no users.dat)      `::`-separated, half-star ratings
    OUT_DIR/amazon2023/    <Category>.jsonl + meta_<Category>.jsonl for six categories, side by side (load with
                           category=...), and each category again in a folder of its own, amazon2023/<Category>/
    OUT_DIR/bookcrossing/  BX-Book-Ratings.csv, BX-Books.csv, BX-Users.csv       `;`-separated, quoted, latin-1

so that `llmrec reproduce --profile paper` can run on a machine without the real data, with the paths of
params/paper.yaml pointed at OUT_DIR. The people, titles and texts are invented. The data are small (hundreds of users)
but shaped so that the profile's filters keep something: users and items grouped by taste (so 5- and 10-cores survive),
a long tail that k-core filters remove, ratings of MovieLens 1M movies that MovieLens 10M repeats under its own user
ids (same title, rating and time), reviewers shared between Amazon categories, BookCrossing's implicit 0 ratings and
ratings of ISBNs that BX-Books.csv lacks. Standard library only; `--stats` (which needs llmrec_nb) prints the sizes
after the profile's filters.
"""
from __future__ import annotations
import argparse, json, random, string, sys
from dataclasses import dataclass
from pathlib import Path

AMAZON_CATEGORIES = ("Video_Games", "Movies_and_TV", "Kindle_Store", "All_Beauty", "Toys_and_Games", "Sports_and_Outdoors")
ML1M_GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
               "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
ML1M_AGES = [1, 18, 25, 35, 45, 50, 56]
ML1M_FIRST, ML1M_LAST = 956703932, 1046454590        # the span of MovieLens 1M's timestamps (2000-04 to 2003-02)
ML10M_FIRST, ML10M_LAST = 789652009, 1231131736      # MovieLens 10M's (1995-01 to 2009-01)

TITLE_WORDS = ("Harbor Winter Stranger Garden Mirror Signal Orchard Lantern Frontier Echo Canyon Harvest Comet Bridge "
               "Shadow Meadow Island Circus Engine Thunder Paper Velvet Glass River Falcon Cipher Monsoon Ember Tide "
               "Summit Rooftop Carnival Atlas Voyage Cobalt Station Whisper Kingdom Desert Silver Midnight").split()
TITLE_ADJECTIVES = ("Silent Last Broken Hidden Golden Lonely Distant Crimson Restless Quiet Wild Burning Forgotten "
                    "Electric Hollow Secret Northern Little Endless Bright").split()
FOREIGN_TITLES = ["Rêve d'hiver", "Été perdu", "Mädchen am Fluß", "Niño del faro", "Misérables du port", "Chère inconnue",
                  "Ça tourne", "Søster", "Señora de las nubes", "Über den Dächern"]
FOREIGN_ARTICLES = ["Le", "La", "Les", "L'", "Die", "Das", "El", "Il"]
FIRST_NAMES = "Maria José Anna Peter Sofia Liam Noah Emma Lucía Björn Zoë André Chloé Jürgen Ines Omar Mei Ravi".split()
LAST_NAMES = "García Müller Rossi Dubois Smith Nowak Tanaka Silva Johansson O'Brien Novák Kowalski Brontë Ibáñez".split()
CITIES = [("seattle", "washington", "usa"), ("barcelona", "barcelona", "spain"), ("toronto", "ontario", "canada"),
          ("köln", "nordrhein-westfalen", "germany"), ("porto", "porto", "portugal"), ("austin", "texas", "usa"),
          ("lyon", "rhône-alpes", "france"), ("melbourne", "victoria", "australia"), ("milano", "lombardia", "italy"),
          ("london", "england", "united kingdom"), ("ottawa", "n/a", "canada"), ("tyler", "texas", "usa")]
PUBLISHERS = ["Ballantine Books", "Warner Books", "Simon &amp; Schuster", "Penguin USA", "Harper Collins", "Éditions du Seuil",
              "Bantam", "Vintage", "Berkley Publishing Group", "Fischer Taschenbuch Verlag"]
AMAZON_MAIN = {"Video_Games": "Video Games", "Movies_and_TV": "Movies & TV", "Kindle_Store": "Kindle Store",
               "All_Beauty": "All Beauty", "Toys_and_Games": "Toys & Games", "Sports_and_Outdoors": "Sports & Outdoors"}
AMAZON_NOUNS = {"Video_Games": "Racing Controller Quest Arena Legends Kart Saga Headset Tactics Odyssey".split(),
                "Movies_and_TV": "Season Collection Trilogy Edition Special Documentary Series Classics Box Set".split(),
                "Kindle_Store": "Mystery Romance Chronicles Thriller Novella Cookbook Memoir Anthology Guide".split(),
                "All_Beauty": "Shampoo Serum Lotion Cream Mask Cleanser Balm Polish Brush Oil".split(),
                "Toys_and_Games": "Puzzle Blocks Robot Doll Kit Board Game Cards Plush Racer Playset".split(),
                "Sports_and_Outdoors": "Tent Bottle Backpack Gloves Mat Rope Helmet Lantern Bike Lock".split()}
PRAISE = ["Works exactly as described.", "Great value for the price.", "My kids love it.", "Would buy again.",
          "Arrived quickly and well packed.", "Better than I expected.", "Solid quality overall."]
COMPLAINTS = ["Stopped working after a week.", "Not what the pictures show.", "Too small for my needs.",
              "The packaging was damaged.", "Returned it the next day.", "Cheaply made."]


@dataclass
class Taste:
    "Users and items grouped into taste clusters; users mostly pick popular items of their own cluster."
    n_clusters: int
    p_own: float = 0.8
    popularity: float = 0.9      # Zipf exponent of item popularity within the catalogue


def pick_items(rng: random.Random, n: int, user_cluster: int, items: list, item_cluster: dict, weight: dict,
               taste: Taste) -> list:
    "`n` distinct items for one user, drawn by popularity from its own cluster with probability `taste.p_own`."
    own = [i for i in items if item_cluster[i] == user_cluster]
    chosen: list = []
    seen = set()
    while len(chosen) < min(n, len(items)):
        pool = own if own and rng.random() < taste.p_own else items
        item = rng.choices(pool, weights=[weight[i] for i in pool])[0]
        if item not in seen:
            seen.add(item); chosen.append(item)
    return chosen


def taste_layout(rng: random.Random, items: list, taste: Taste) -> tuple[dict, dict]:
    "Each item's cluster and popularity weight (a random rank in a Zipf curve)."
    ranks = list(range(1, len(items) + 1)); rng.shuffle(ranks)
    return ({i: rng.randrange(taste.n_clusters) for i in items},
            {i: 1.0 / r ** taste.popularity for i, r in zip(items, ranks)})


def timeline(rng: random.Random, n: int, first: int, last: int, min_gap: int = 30, max_gap: int = 86400 * 20) -> list[int]:
    "`n` increasing timestamps inside [first, last]."
    start = rng.randrange(first, max(first + 1, last - n * max_gap // 4))
    times, t = [], start
    for _ in range(n):
        t = min(t + rng.randrange(min_gap, max_gap), last - rng.randrange(0, 3600))
        times.append(t)
    return sorted(times)


def write_text(path: Path, lines: list[str], encoding: str = "utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + "\n" for line in lines).encode(encoding))


# ---------------------------------------------------------------- MovieLens
def movie_titles(rng: random.Random, n: int, first_year: int, last_year: int) -> list[str]:
    "Invented titles in MovieLens's style: year in brackets, a leading article moved to the end, some in other languages."
    titles, seen = [], set()
    while len(titles) < n:
        year = rng.randint(first_year, last_year)
        roll = rng.random()
        if roll < 0.08:
            name = f"{rng.choice(FOREIGN_TITLES)}, {rng.choice(FOREIGN_ARTICLES)}"
        elif roll < 0.28:
            name = f"{rng.choice(TITLE_ADJECTIVES)} {rng.choice(TITLE_WORDS)}, The"
        elif roll < 0.32:   # an original title, then its English one in brackets
            name = f"{rng.choice(TITLE_WORDS)} {rng.choice(TITLE_WORDS)} ({rng.choice(FOREIGN_TITLES)})"
        else:
            name = f"{rng.choice(TITLE_ADJECTIVES)} {rng.choice(TITLE_WORDS)}"
            if rng.random() < 0.3: name += f" {rng.randint(2, 4)}"
        title = f"{name} ({year})"
        if title not in seen:
            seen.add(title); titles.append(title)
    return titles


def movie_genres(rng: random.Random, vocabulary: list[str]) -> str:
    return "|".join(sorted(rng.sample(vocabulary, rng.choice([1, 1, 2, 2, 3])), key=vocabulary.index))


def make_movielens(rng: random.Random, out: Path):
    "ML-1M and ML-10M: 10M keeps most 1M movies (same ids and titles), adds newer ones, and repeats some 1M ratings."
    taste = Taste(n_clusters=6)
    ids_1m = sorted(rng.sample(range(1, 3953), 460))
    titles_1m = dict(zip(ids_1m, movie_titles(rng, len(ids_1m), 1930, 2000)))
    genres_1m = {m: movie_genres(rng, ML1M_GENRES) for m in ids_1m}
    rare_1m = ids_1m[::12]                     # rated by one to three users: what a 5-core removes
    common_1m = sorted(set(ids_1m) - set(rare_1m))
    cluster, weight = taste_layout(rng, common_1m, taste)

    users_1m = list(range(1, 361))
    events_1m = {}
    for u in users_1m:
        uc = rng.randrange(taste.n_clusters)
        picked = pick_items(rng, rng.randint(20, 60), uc, common_1m, cluster, weight, taste)
        times = timeline(rng, len(picked), ML1M_FIRST, ML1M_LAST, max_gap=86400 * 6)
        events_1m[u] = [(m, max(1, min(5, (4 if cluster[m] == uc else 3) + rng.choice([-2, -1, 0, 0, 0, 1]))), t)
                        for m, t in zip(picked, times)]
    for m in rare_1m:
        for u in rng.sample(users_1m, rng.randint(1, 3)):
            events_1m[u].append((m, rng.randint(1, 5), rng.choice(events_1m[u])[2] + rng.randint(60, 3600)))
    ratings_1m = []
    for u in users_1m:
        events = list(events_1m[u])
        rng.shuffle(events)        # MovieLens 1M lists each user's ratings together, not in time order
        ratings_1m += [f"{u}::{m}::{r}::{t}" for m, r, t in events]
    users_lines = []
    for u in users_1m:
        zip_code = f"{rng.randint(1000, 99999):05d}" + (f"-{rng.randint(1000, 9999)}" if rng.random() < 0.05 else "")
        users_lines.append(f"{u}::{rng.choice('MF')}::{rng.choice(ML1M_AGES)}::{rng.randint(0, 20)}::{zip_code}")
    movies_lines = [f"{m}::{titles_1m[m]}::{genres_1m[m]}" for m in ids_1m]
    write_text(out / "ml-1m" / "ratings.dat", ratings_1m)
    write_text(out / "ml-1m" / "movies.dat", movies_lines, "latin-1")
    write_text(out / "ml-1m" / "users.dat", users_lines)

    # ML-10M: most 1M movies again (its genre list says "Children" and adds IMAX), and newer, higher-numbered ones
    genres_10m_vocab = [g.replace("Children's", "Children") for g in ML1M_GENRES] + ["IMAX"]
    kept = sorted(rng.sample(ids_1m, int(0.75 * len(ids_1m))))
    new_ids = sorted(rng.sample(range(3953, 65134), 260))
    new_titles = [t for t in movie_titles(rng, 400, 2001, 2008) if t not in titles_1m.values()][:len(new_ids)]
    titles_10m = {**{m: titles_1m[m] for m in kept}, **dict(zip(new_ids, new_titles))}
    genres_10m = {m: genres_1m[m].replace("Children's", "Children") for m in kept}
    genres_10m.update({m: movie_genres(rng, genres_10m_vocab) for m in new_ids})
    genres_10m[new_ids[-1]] = "(no genres listed)"
    ids_10m = sorted(titles_10m)
    rare_10m = set(new_ids[::10])
    common_10m = [m for m in ids_10m if m not in rare_10m]
    cluster_10m, weight_10m = taste_layout(rng, common_10m, taste)

    users_10m = sorted(rng.sample(range(1, 71568), 420))
    ratings_10m, tags_10m = [], []
    repeaters = dict(zip(users_10m[::5], rng.sample(users_1m, len(users_10m[::5]))))   # a 1M user under a 10M id
    tag_words = ["classic", "twist ending", "atmospheric", "based on a book", "Oscar (Best Picture)", "dark comedy", "visually appealing"]
    kept_set = set(kept)
    for u in users_10m:
        uc = rng.randrange(taste.n_clusters)
        events = {}
        if u in repeaters:
            for m, r, t in events_1m[repeaters[u]]:
                if m in kept_set and rng.random() < 0.8: events[m] = (float(r), t)
        for m, t in zip(pick_items(rng, rng.randint(20, 50), uc, common_10m, cluster_10m, weight_10m, taste),
                        timeline(rng, 50, ML10M_FIRST, ML10M_LAST)):
            if m in events: continue
            base = 4.0 if cluster_10m[m] == uc else 3.0
            events[m] = (max(0.5, min(5.0, base + rng.choice([-2, -1.5, -1, -0.5, 0, 0, 0.5, 1]))), t)
        if rng.random() < 0.04:
            for m in rng.sample(sorted(rare_10m), 2): events[m] = (rng.choice([1.0, 2.5, 4.0, 5.0]), rng.randint(ML10M_FIRST, ML10M_LAST))
        for m in sorted(events):   # MovieLens 10M lists each user's ratings by movie id
            r, t = events[m]
            ratings_10m.append(f"{u}::{m}::{r:g}::{t}")
            if rng.random() < 0.03: tags_10m.append(f"{u}::{m}::{rng.choice(tag_words)}::{t + rng.randint(10, 600)}")
    write_text(out / "ml-10m" / "ratings.dat", ratings_10m)
    write_text(out / "ml-10m" / "movies.dat", [f"{m}::{titles_10m[m]}::{genres_10m[m]}" for m in ids_10m])
    write_text(out / "ml-10m" / "tags.dat", tags_10m)


# ---------------------------------------------------------------- Amazon Reviews 2023
def asin(rng: random.Random, prefix: str = "B0") -> str:
    return prefix + "".join(rng.choices(string.ascii_uppercase + string.digits, k=10 - len(prefix)))


def reviewer_id(rng: random.Random) -> str:
    return "A" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=27))


def review_text(rng: random.Random, rating: float, noun: str) -> tuple[str, str]:
    good = rating >= 4
    title = rng.choice(["Love it", "Five stars", "Great " + noun.lower(), "Exactly what I wanted"] if good else
                       ["Disappointed", "Meh", "Not worth it", "Two stars"])
    sentences = rng.sample(PRAISE if good else COMPLAINTS, rng.randint(1, 3))
    if rating == 3: sentences = [rng.choice(PRAISE), "But " + rng.choice(COMPLAINTS).lower()]
    joiner = "<br />" if rng.random() < 0.1 else " "
    return title, joiner.join([f"This {noun.lower()} surprised me."] + sentences)


def amazon_meta(rng: random.Random, category: str, parent: str, title: str, n_reviews: int) -> dict:
    main = AMAZON_MAIN[category]
    meta = {"main_category": main, "title": title, "average_rating": round(rng.uniform(2.5, 5.0), 1),
            "rating_number": n_reviews + rng.randint(0, 400),
            "features": [f"{rng.choice(TITLE_ADJECTIVES)} design", "Easy to use"] if rng.random() < 0.7 else [],
            "description": [f"The {title} for every day."] if rng.random() < 0.6 else [],
            "price": round(rng.uniform(4, 80), 2) if rng.random() < 0.75 else None,
            "images": [{"thumb": f"https://m.media-amazon.com/images/I/{parent}._SS40_.jpg",
                        "large": f"https://m.media-amazon.com/images/I/{parent}.jpg", "variant": "MAIN", "hi_res": None}],
            "videos": [], "store": rng.choice(["Acme", "Northwind", "Globex", "Initech", "Umbrella Goods"]),
            "categories": [main, rng.choice(AMAZON_NOUNS[category])] if rng.random() < 0.8 else [],
            "details": {"Date First Available": f"{rng.choice(['March', 'June', 'October'])} {rng.randint(1, 28)}, {rng.randint(2005, 2022)}"},
            "parent_asin": parent, "bought_together": None}
    if category == "Kindle_Store":
        meta["author"] = {"name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}", "about": [], "avatar": None}
        meta["subtitle"] = "Kindle Edition"
    return meta


def make_amazon(rng: random.Random, out: Path):
    "Six categories; reviewer ids are global in the release, so a share of each category's reviewers recur in others."
    pool = [reviewer_id(rng) for _ in range(900)]
    folder = out / "amazon2023"
    for category in AMAZON_CATEGORIES:
        taste = Taste(n_clusters=4, p_own=0.85, popularity=0.6)
        nouns = AMAZON_NOUNS[category]
        parents = [asin(rng) for _ in range(120)]
        tail_items = [asin(rng) for _ in range(50)]
        cluster, weight = taste_layout(rng, parents, taste)
        titles = {p: f"{rng.choice(TITLE_ADJECTIVES)} {rng.choice(TITLE_WORDS)} {rng.choice(nouns)}" for p in parents + tail_items}
        variants = {p: [p] + [asin(rng) for _ in range(rng.choice([0, 0, 1, 2]))] for p in parents + tail_items}
        core_users = rng.sample(pool[:600], 200)                       # recurring reviewers
        tail_users = rng.sample(pool[600:], 70) + [reviewer_id(rng) for _ in range(50)]
        reviews = []
        def review(user, parent, t, uc=None):
            rating = float(max(1, min(5, (5 if uc is not None and cluster.get(parent) == uc else 4) + rng.choice([-3, -1, 0, 0, 0]))))
            title, text = review_text(rng, rating, rng.choice(nouns))
            images = [] if rng.random() < 0.95 else [{"small_image_url": "https://images-na.ssl-images-amazon.com/images/I/x._SL256_.jpg",
                                                        "medium_image_url": "https://images-na.ssl-images-amazon.com/images/I/x._SL800_.jpg",
                                                        "large_image_url": "https://images-na.ssl-images-amazon.com/images/I/x.jpg",
                                                        "attachment_type": "IMAGE"}]
            return {"rating": rating, "title": title, "text": text, "images": images, "asin": rng.choice(variants[parent]),
                    "parent_asin": parent, "user_id": user, "timestamp": t * 1000 + rng.randrange(1000),
                    "helpful_vote": rng.choice([0, 0, 0, 1, 2, 5]), "verified_purchase": rng.random() < 0.85}
        for user in core_users:
            uc = rng.randrange(taste.n_clusters)
            picked = pick_items(rng, rng.randint(10, 22), uc, parents, cluster, weight, taste)
            reviews += [review(user, p, t, uc) for p, t in zip(picked, timeline(rng, len(picked), 1262304000, 1694000000))]
        for user in tail_users:
            picked = rng.sample(parents + tail_items, rng.randint(1, 4))
            reviews += [review(user, p, t) for p, t in zip(picked, timeline(rng, len(picked), 1262304000, 1694000000))]
        rng.shuffle(reviews)
        counts: dict = {}
        for r in reviews: counts[r["parent_asin"]] = counts.get(r["parent_asin"], 0) + 1
        listed = [p for p in parents + tail_items if rng.random() < 0.97]             # a few reviewed items lack metadata
        listed += [asin(rng) for _ in range(15)]                                       # and some listed ones have no reviews
        for p in listed: titles.setdefault(p, f"{rng.choice(TITLE_WORDS)} {rng.choice(nouns)}")
        metas = [amazon_meta(rng, category, p, titles[p], counts.get(p, 0)) for p in listed]
        review_lines = [json.dumps(r) for r in reviews]
        meta_lines = [json.dumps(m) for m in metas]
        for where in (folder, folder / category):
            write_text(where / f"{category}.jsonl", review_lines)
            write_text(where / f"meta_{category}.jsonl", meta_lines)


# ---------------------------------------------------------------- BookCrossing
def isbn10(rng: random.Random) -> str:
    digits = [rng.randrange(10) for _ in range(9)]
    check = sum((10 - k) * d for k, d in enumerate(digits)) % 11
    return "".join(map(str, digits)) + ("X" if (11 - check) % 11 == 10 else str((11 - check) % 11))


def bx_quote(value: str) -> str:
    "One field as the BookCrossing dump writes it: in double quotes, inner quotes escaped with a backslash."
    return '"' + value.replace('"', '\\"') + '"'


def make_bookcrossing(rng: random.Random, out: Path):
    "Ratings 0 (implicit) to 10 over ISBN-keyed books; some rated ISBNs are missing from BX-Books.csv, as in the dump."
    taste = Taste(n_clusters=5, p_own=0.8, popularity=0.7)
    books = sorted({isbn10(rng) for _ in range(260)})
    unknown_books = [isbn10(rng) for _ in range(25)]
    cluster, weight = taste_layout(rng, books, taste)
    user_ids = sorted(rng.sample(range(1, 278859), 520))
    raters, tail, silent = user_ids[:300], user_ids[300:430], user_ids[430:]
    rating_lines = [";".join(map(bx_quote, ["User-ID", "ISBN", "Book-Rating"]))]
    for u in raters + tail:
        uc = rng.randrange(taste.n_clusters)
        picked = (pick_items(rng, rng.randint(5, 28), uc, books, cluster, weight, taste) if u in raters
                  else rng.sample(books + unknown_books, rng.randint(1, 3)))
        if u in raters and rng.random() < 0.2: picked.append(rng.choice(unknown_books))
        for b in picked:
            liked = cluster.get(b) == uc
            r = 0 if rng.random() < 0.55 else max(1, min(10, (8 if liked else 5) + rng.randint(-3, 2)))
            rating_lines.append(";".join(map(bx_quote, [str(u), b, str(r)])))
    header = ["ISBN", "Book-Title", "Book-Author", "Year-Of-Publication", "Publisher", "Image-URL-S", "Image-URL-M", "Image-URL-L"]
    book_lines = [";".join(map(bx_quote, header))]
    for b in books:
        title = f"{rng.choice(TITLE_ADJECTIVES)} {rng.choice(TITLE_WORDS)}"
        roll = rng.random()
        if roll < 0.05: title = f'The "{rng.choice(TITLE_WORDS)}" Affair'
        elif roll < 0.12: title = f"{rng.choice(FOREIGN_TITLES)}: A Novel"
        elif roll < 0.2: title += f" (Paperback {rng.choice(['Classics', 'Edition'])})"
        year = "0" if rng.random() < 0.03 else str(rng.randint(1950, 2004))
        url = f"http://images.amazon.com/images/P/{b}.01."
        book_lines.append(";".join(map(bx_quote, [b, title, f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}", year,
                                                  rng.choice(PUBLISHERS), url + "THUMBZZZ.jpg", url + "MZZZZZZZ.jpg", url + "LZZZZZZZ.jpg"])))
    user_lines = [";".join(map(bx_quote, ["User-ID", "Location", "Age"]))]
    for u in sorted(raters + tail + silent):
        city, region, country = rng.choice(CITIES)
        age = "NULL" if rng.random() < 0.4 else bx_quote(str(rng.choice([rng.randint(14, 80)] * 20 + [0, 103])))
        user_lines.append(f"{bx_quote(str(u))};{bx_quote(f'{city}, {region}, {country}')};{age}")   # NULL is unquoted in the dump
    for name, lines in (("BX-Book-Ratings.csv", rating_lines), ("BX-Books.csv", book_lines), ("BX-Users.csv", user_lines)):
        write_text(out / "bookcrossing" / name, lines, "latin-1")


def make_all(out: Path | str, seed: int = 0) -> Path:
    "Write every fixture dataset under `out` (see the module docstring); the same `seed` gives the same bytes."
    out = Path(out)
    for offset, make in enumerate((make_movielens, make_amazon, make_bookcrossing)):
        make(random.Random(seed * 1000 + offset), out)
    return out


def paper_profile_sizes(out: Path | str) -> list[dict]:
    "Users, items and interactions of each fixture as loaded and after the filters params/paper.yaml applies to it."
    from llmrec_nb.loaders import load_dataset
    from llmrec_nb.mixing import remove_overlap
    from llmrec_nb.tallrec import book_samples
    out = Path(out)
    rows = []
    def add(name, variant, d):
        it = d.interactions
        rows.append({"dataset": name, "variant": variant, "users": it["user"].nunique(), "items": it["item"].nunique(),
                     "interactions": len(it)})
    ml1m, ml10m = load_dataset("ml-1m", out / "ml-1m"), load_dataset("ml-10m", out / "ml-10m")
    add("ml-1m", "raw (itdr, llama4rec)", ml1m); add("ml-1m", "5-core (molorec)", ml1m.kcore(5))
    add("ml-10m", "raw", ml10m)
    general, info = remove_overlap(ml10m.kcore(5), ml1m.kcore(5), by="events")
    add("ml-10m", f"5-core less {info['removed']} 1M events (molorec)", general)
    for category in AMAZON_CATEGORIES:
        d = load_dataset("amazon2023", out / "amazon2023", category=category)
        add(f"amazon2023/{category}", "raw", d)
        if category in ("Video_Games", "Movies_and_TV", "Kindle_Store"): add(f"amazon2023/{category}", "10-core (soft)", d.kcore(10))
        else: add(f"amazon2023/{category}", "5-core (molorec)", d.kcore(5))
    bx = load_dataset("bookcrossing", out / "bookcrossing")
    add("bookcrossing", "raw (known ISBNs)", bx); add("bookcrossing", "5-core (llama4rec)", bx.kcore(5))
    rows.append({"dataset": "bookcrossing", "variant": "tallrec samples (users with >= 4 ratings)",
                 "users": len(book_samples(bx, min_ratings=4)), "items": None, "interactions": None})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="folder to write ml-1m/, ml-10m/, amazon2023/ and bookcrossing/ into")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stats", action="store_true", help="print the sizes after the paper profile's filters (needs llmrec_nb)")
    args = ap.parse_args(argv)
    out = make_all(args.out, args.seed)
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir() if p.is_dir()))} under {out}")
    if args.stats:
        for r in paper_profile_sizes(out):
            print(f"{r['dataset']:<32} {r['variant']:<44} users {r['users']!s:>5}  items {r['items']!s:>5}  interactions {r['interactions']!s:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
