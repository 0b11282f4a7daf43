"""ITDR builder, export, CLI, parsers and evaluation (bundled data, no model)."""
import json, math, os, re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("LLMREC_PROGRESS", "0")
from llmrec_nb.report import notebook_defaults
from llmrec_nb import itdr, runs
from llmrec_nb.core import DataFormatError
from llmrec_nb.data import RecData
from llmrec_nb.loaders import load_dataset
from llmrec_nb.templates import Instruction

FIX = Path(__file__).parent / "fixtures" / "itdr"


@pytest.fixture(scope="module")
def bundled():
    return [load_dataset("ml-100k"), load_dataset("clothing-reviews")]


@pytest.fixture(scope="module")
def built(bundled):
    return itdr.build_itdr(bundled, max_per_task=10, seed=0)


def test_all_seven_subtasks_build_from_bundled_data(built):
    tasks = {x.task for x in built.instances}
    assert tasks == set(itdr.TASKS)
    by = {(x.task, x.meta["source"]) for x in built.instances}
    assert all((t, "ml-100k") in by for t in itdr.TASKS)
    for t in ("rating_prediction", "user_attribute_prediction", "target_user_identification"):
        assert (t, "clothing-reviews") in by
    counts = pd.Series([(x.task, x.meta["source"]) for x in built.instances]).value_counts()
    assert counts.max() <= 10
    assert all(x.id and x.task and x.meta["source"] and x.instruction for x in built.instances)
    assert len({x.id for x in built.instances}) == len(built.instances)


def test_skipped_subtasks_have_reasons(built):
    skipped = {(s["source"], s["task"]): s["reason"] for s in built.skipped}
    assert set(skipped) == {("clothing-reviews", t) for t in ("topk_recommendation", "cross_domain_recommendation",
                                                              "next_item_recommendation", "interest_recognition")}
    assert "does not show" in skipped[("clothing-reviews", "interest_recognition")]   # one review per user
    assert all(isinstance(r, str) and len(r) > 10 for r in skipped.values())


def test_candidates_and_truth_live_in_meta(built, bundled):
    titles = bundled[0].title_of
    for x in built.instances:
        m = x.meta
        if x.task in ("topk_recommendation", "cross_domain_recommendation"):
            assert len(m["candidates"]) == 10 and m["target"] in m["candidates"] and len(set(m["candidates"])) == 10
            assert m["candidate_titles"] == [titles[c] for c in m["candidates"]]
            assert x.output.splitlines()[0] == "1. " + titles[m["target"]]
        if x.task == "next_item_recommendation":
            assert len(m["candidates"]) == 5 and x.output == titles[m["target"]]
        if x.task == "cross_domain_recommendation":
            assert m["source_domain"] != m["target_domain"]
            assert m["domain_rule"] == "MovieLens genre groups"
        if x.task == "rating_prediction":
            assert x.output == f"{m['rating']:g}"
        if x.task == "user_attribute_prediction":
            assert x.output == m["value"] and m["value"] in m["choices"]
        if x.task in ("interest_recognition", "target_user_identification"):
            assert x.output == m["reference"] and m["reference"]


def test_negatives_never_seen_by_user(built, bundled):
    inter = bundled[0].interactions
    seen = inter.groupby("user")["item"].apply(set)
    for x in built.instances:
        if x.task == "topk_recommendation" and x.meta["source"] == "ml-100k":
            negs = [c for c in x.meta["candidates"] if c != x.meta["target"]]
            assert not set(negs) & seen[x.meta["user"]]


def test_split_by_user_and_ratio(bundled):
    ds = itdr.build_itdr(bundled[:1], max_per_task=20, seed=3, tasks=("next_item_recommendation", "rating_prediction"))
    sizes = {s: len(v) for s, v in ds.splits.items()}
    assert sizes == {"train": 32, "valid": 4, "test": 4}
    where = {}
    for s, v in ds.splits.items():
        for x in v: where.setdefault(x.meta["user"], set()).add(s)
    assert all(len(v) == 1 for v in where.values())


def test_deterministic_under_seed(bundled):
    a = itdr.build_itdr(bundled, max_per_task=5, seed=7)
    b = itdr.build_itdr(bundled, max_per_task=5, seed=7)
    c = itdr.build_itdr(bundled, max_per_task=5, seed=8)
    key = lambda d: [(x.id, x.instruction, x.input, x.output, json.dumps(x.meta, sort_keys=True)) for x in d.instances]
    assert key(a) == key(b)
    assert key(a) != key(c)


def test_task_description_switch(bundled):
    with_d = itdr.build_itdr(bundled[:1], max_per_task=14, seed=0)
    without = itdr.build_itdr(bundled[:1], max_per_task=14, seed=0, with_task_description=False)
    assert {x.instruction for x in without.instances} == {""}
    assert [x.input for x in without.instances] == [x.input for x in with_d.instances]
    used = {(x.task, x.instruction) for x in with_d.instances}
    for t in itdr.TASKS:   # several paraphrases in use, all from the task's own list
        descs = {d for tt, d in used if tt == t}
        assert descs <= set(itdr.TASK_DESCRIPTIONS[t]) and len(descs) >= 2


def test_unknown_task_rejected(bundled):
    with pytest.raises(ValueError, match="unknown ITDR subtasks"):
        itdr.build_itdr(bundled[:1], tasks=("rating_prediction", "mind_reading"))


def test_export_files(built, tmp_path):
    res = itdr.export_itdr(built, tmp_path, dataset_name="itdr")
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert set(info) == {"itdr_train", "itdr_valid", "itdr_test"}
    for split in itdr.SPLITS:
        assert info[f"itdr_{split}"]["file_name"] == f"itdr_{split}.json"
        recs = json.loads((tmp_path / f"itdr_{split}.json").read_text())
        assert len(recs) == len(built.splits[split]) > 0
        assert all(set(r) == {"instruction", "input", "output"} for r in recs)
        side = [json.loads(l) for l in (tmp_path / f"itdr_{split}.meta.jsonl").read_text().splitlines()]
        assert [s["id"] for s in side] == [x.id for x in built.splits[split]]
        assert all({"id", "task", "meta"} <= set(s) and s["meta"]["source"] for s in side)
    st = pd.read_csv(tmp_path / "stats.csv")
    assert {"task", "source", "instances", "avg_input", "avg_output", "unit"} <= set(st.columns)
    assert st.iloc[-1]["instances"] == len(built.instances) and (st.unit == "words").all()
    assert res["counts"] == {s: len(v) for s, v in built.splits.items()}


def test_stats_with_tokenizer(built):
    class WordPiece:   # a stand-in tokenizer: two tokens per word
        def __call__(self, s, add_special_tokens=False): return {"input_ids": [0] * (2 * len(s.split()))}
    words, toks = itdr.itdr_stats(built), itdr.itdr_stats(built, WordPiece())
    assert (toks.unit == "tokens").all()
    np.testing.assert_allclose(toks.avg_output, 2 * words.avg_output, atol=0.11)


def test_build_cli_writes_files(tmp_path):
    out = tmp_path / "itdr"
    summ = itdr.build_cli(str(out), ["ml-100k", "synthetic"], max_per_task=6, seed=1)
    assert (out / "dataset_info.json").exists() and (out / "stats.csv").exists()
    for s in itdr.SPLITS: assert (out / f"itdr_{s}.json").exists()
    assert summ["sources"] == ["ml-100k", "synthetic"]
    assert summ["instances"] == sum(summ["counts"].values()) == sum(summ["per_task"].values())
    json.dumps(summ)


def test_cli_entry_point(tmp_path):
    cli = pytest.importorskip("llmrec_nb.cli")
    rc = cli.main(["itdr", "build", "--out", str(tmp_path), "--datasets", "synthetic", "--max-per-task", "4", "--seed", "0"])
    assert rc == 0 and (tmp_path / "itdr_train.json").exists()


def test_parsers_on_messy_outputs():
    fx = json.loads((FIX / "messy_outputs.json").read_text())
    for case in fx["rankings"]:
        assert itdr.parse_ranked_list(case["text"], fx["titles"]) == case["expected"], case["text"]
    for case in fx["ratings"]:
        assert itdr.parse_rating(case["text"]) == case["expected"], case["text"]
    for case in fx["attributes"]:
        assert itdr.parse_attribute(case["text"], case["choices"], case["attribute"]) == case["expected"], case["text"]


def _inst(k, task, out="", **meta):
    return Instruction(instruction="", input="", output=out, id=f"i{k}", task=task, meta=dict(meta, source="s"))


def test_evaluate_hand_computed():
    c, t = ["a", "b", "c", "d"], ["Alpha (1990)", "Beta (1991)", "Gamma (1992)", "Delta (1993)"]
    insts = [_inst(0, "rating_prediction", rating=4.0, rating_scale=[1, 5]),
             _inst(1, "rating_prediction", rating=1.0, rating_scale=[1, 5]),
             _inst(2, "rating_prediction", rating=3.0, rating_scale=[1, 5]),
             _inst(3, "topk_recommendation", target="c", candidates=c, candidate_titles=t),
             _inst(4, "topk_recommendation", target="a", candidates=c, candidate_titles=t),
             _inst(5, "cross_domain_recommendation", target="d", candidates=c, candidate_titles=t),
             _inst(6, "next_item_recommendation", target="b", candidates=c, candidate_titles=t),
             _inst(7, "user_attribute_prediction", attribute="gender", value="female", choices=["female", "male"]),
             _inst(8, "user_attribute_prediction", attribute="occupation", value="writer", choices=["writer", "artist"]),
             _inst(9, "interest_recognition", reference="enjoys drama and comedy"),
             _inst(10, "target_user_identification", reference="best suited to young women")]
    outs = ["5 stars", "garbage", "3", "1. Alpha\n2. Gamma (1992)", "Alpha (1990)", "nothing relevant", "beta",
            "female", "an artist", "enjoys drama", "best suited to older men"]
    frame, summ = itdr.evaluate(insts, outs, rating_fallback={"s": 3.5})
    s = summ.set_index("task")
    # ratings: errors 1, 2.5 (fallback 3.5 vs 1), 0
    assert math.isclose(s.loc["rating_prediction", "RMSE"], math.sqrt((1 + 6.25 + 0) / 3))
    assert math.isclose(s.loc["rating_prediction", "MAE"], 3.5 / 3)
    assert math.isclose(s.loc["rating_prediction", "valid_rate"], 2 / 3)
    # top-K: target at rank 1 (0-based) and 0
    assert math.isclose(s.loc["topk_recommendation", "NDCG@10"], (1 / math.log2(3) + 1) / 2)
    assert s.loc["topk_recommendation", "HR@1"] == 0.5 and math.isclose(s.loc["topk_recommendation", "P@5"], 0.2)
    assert s.loc["cross_domain_recommendation", "NDCG@10"] == 0 and s.loc["cross_domain_recommendation", "valid_rate"] == 0
    assert s.loc["next_item_recommendation", "HR@1"] == 1.0
    assert s.loc["user_attribute_prediction", "accuracy"] == 0.5
    # "enjoys drama" vs "enjoys drama and comedy": ROUGE-1 = 2*(1*0.5)/(1.5) = 2/3; BLEU-1 = exp(1 - 4/2) * 1
    assert math.isclose(s.loc["interest_recognition", "ROUGE-1"], 2 / 3)
    assert math.isclose(s.loc["interest_recognition", "BLEU-1"], math.exp(-1))
    # "best suited to older men" vs "best suited to young women": 3 of 5 words, ROUGE-L = 0.6
    assert math.isclose(s.loc["target_user_identification", "ROUGE-L"], 0.6)
    agg = itdr.aggregate_scores(summ)
    rating_score = 100 * (1 - math.sqrt(7.25 / 3) / 4)
    assert math.isclose(agg["interaction"], (rating_score + 100 * (1 / math.log2(3) + 1) / 2 + 0 + 100) / 4)
    assert math.isclose(agg["understanding"], (50 + 100 * 2 / 3 + 60) / 3)
    assert len(frame) == len(insts) and frame.valid.dtype == bool


def test_evaluate_rejects_mismatched_outputs():
    with pytest.raises(DataFormatError):
        itdr.evaluate([_inst(0, "rating_prediction", rating=4.0)], [])


def test_rating_fallback_from_train(built):
    fb = itdr.rating_fallback(built.splits["train"])
    assert set(fb) == {"ml-100k", "clothing-reviews"} and all(1 <= v <= 5 for v in fb.values())


# --- no answer can be read off (or computed from) its prompt ---------------------------------------------------------

@pytest.fixture(scope="module")
def leak_check(bundled):
    srcs = bundled + [load_dataset("synthetic", n_users=40, n_items=60)]
    ds = itdr.build_itdr(srcs, max_per_task=60, seed=0)
    return ds, {d.name: d for d in srcs}, {d.name: itdr._Source(d, ds.config, 0) for d in srcs}


def _words(text):
    return set(re.findall(r"[a-z0-9+'-]+", str(text).lower()))


_TARGET_TEMPLATE = _words("Best suited to mostly male female users aged both men and women especially")


def test_every_subtask_and_source_is_checked(leak_check):
    ds, _, _ = leak_check
    pairs = {(x.meta["source"], x.task) for x in ds.instances}
    assert {("ml-100k", t) for t in itdr.TASKS} <= pairs and {("synthetic", t) for t in itdr.TASKS} <= pairs
    assert {("clothing-reviews", t) for t in ("rating_prediction", "user_attribute_prediction", "target_user_identification")} <= pairs


def test_rating_prompt_hides_the_target_interaction(leak_check):
    ds, data, srcs = leak_check
    n_item_variant = 0
    for x in ds.instances:
        if x.task != "rating_prediction": continue
        m, src = x.meta, srcs[x.meta["source"]]
        u, i = m["user"], m["item"]
        assert i not in m["history"]
        inter = data[m["source"]].interactions
        row = inter[(inter.user == u) & (inter.item == i)].iloc[0]
        for col in ("review", "review_title"):
            own = str(row.get(col, "") or "")
            if len(own.split()) >= 6: assert " ".join(own.split()[:12]) not in x.input, (x.id, col)
        assert not re.search(r"^\W*recommend", x.input, re.I | re.M)   # no recommended flag of the target
        if m["variant"] == "item":
            n_item_variant += 1
            n, mean = src.item_stats(i, exclude_user=u)
            assert n > 0 and f"Ratings: {n} other users, average {mean:.1f}/5" in x.input
    assert n_item_variant > 0   # the clothing reviews (one interaction per user) use the item variant


def test_attribute_value_not_in_prompt(leak_check):
    ds, _, _ = leak_check
    for x in ds.instances:
        if x.task != "user_attribute_prediction" or x.meta["attribute"] == "occupation": continue
        body = x.input.split("\nAttribute to predict:")[0]
        assert x.meta["value"] not in _words(body) | {body}, x.id
        assert not re.search(rf"(?<![\w-]){re.escape(x.meta['value'])}(?![\w-])", body, re.I), x.id


def test_interest_reference_summarises_items_the_prompt_does_not_show(leak_check):
    ds, data, srcs = leak_check
    for source in ("ml-100k", "synthetic"):
        xs = [x for x in ds.instances if x.task == "interest_recognition" and x.meta["source"] == source]
        src, titles = srcs[source], data[source].title_of
        twice = pd.Series(list(titles.values())).value_counts().to_dict()
        for x in xs:
            m = x.meta
            assert m["reference_items"] and not set(m["reference_items"]) & set(m["history"])
            shown = {l[2:].rsplit(":", 1)[0].split(" — ")[0] for l in x.input.splitlines()[1:]}
            assert {src.describe(i) for i in m["history"]} == shown
            # (ml-100k lists a few films twice under two ids, e.g. Ulee's Gold: the same title is not the same item)
            assert not {src.describe(i) for i in m["reference_items"] if twice.get(titles[i], 1) == 1} & shown
            assert m["reference"] == itdr.interest_reference(src, m["user"], m["reference_items"])
        # the old rule (the top genres of the very items listed) would reproduce the reference almost never
        same = sum(itdr.interest_reference(src, x.meta["user"], x.meta["history"]) == x.meta["reference"] for x in xs)
        assert len(xs) >= 30 and same / len(xs) < 0.1, (source, same, len(xs))


def test_interest_reference_is_not_a_function_of_the_prompt():
    "Two users with the same shown half and different held-out halves: the same prompt, different references."
    genres = ["Drama"] * 5 + ["Horror"] * 5 + ["Comedy"] * 5
    items = pd.DataFrame({"item": [str(k) for k in range(15)], "title": [f"Film {k}" for k in range(15)], "genres": [[g] for g in genres]})
    rows = [(u, str(k), 4.0, t) for u in ("a", "b") for t, k in enumerate(range(5))]
    rows += [("a", str(k), 5.0, 10 + k) for k in range(5, 10)] + [("b", str(k), 5.0, 10 + k) for k in range(10, 15)]
    data = RecData("counterfactual", pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]), items)
    ds = itdr.build_itdr(data, seed=0, tasks=("interest_recognition",))
    a, b = sorted(ds.instances, key=lambda x: x.meta["user"])
    assert a.input == b.input
    assert (a.output, b.output) == ("Enjoys horror.", "Enjoys comedy.")


def test_target_user_reference_names_who_liked_it_not_what_it_is(leak_check):
    ds, _, srcs = leak_check
    n = {}
    for x in ds.instances:
        if x.task != "target_user_identification": continue
        m, src = x.meta, srcs[x.meta["source"]]
        key = _words(m["reference"]) - _TARGET_TEMPLATE
        assert key and not key <= _words(x.input), (x.id, key)
        about = list(src.item_labels.get(m["item"], []))
        for col in (src.dept_col, src.div_col):
            if col and pd.notna(src.items.at[m["item"], col]): about.append(str(src.items.at[m["item"], col]))
        assert not _words(" ".join(about)) & _words(m["reference"]), (x.id, about)
        n[m["source"]] = n.get(m["source"], 0) + 1
    assert set(n) == {"ml-100k", "clothing-reviews", "synthetic"}


def test_ranking_prompts_do_not_list_the_target_in_the_history(leak_check):
    ds, data, srcs = leak_check
    for x in ds.instances:
        if x.task not in ("topk_recommendation", "cross_domain_recommendation", "next_item_recommendation"): continue
        history_block = x.input.split("\nCandidates:")[0]
        assert x.meta["target"] not in x.meta["history"]
        assert srcs[x.meta["source"]].describe(x.meta["target"]) not in {l.split(". ", 1)[-1].lstrip("- ") for l in history_block.splitlines()}


def _one_item_reviews(seed=0):
    "Forty reviewers of one item, one interaction each, with ages; ratings 5 from training users and 1 from the others."
    users = [f"r{k}" for k in range(40)]
    inter = pd.DataFrame({"user": users, "item": "x", "rating": 3.0, "timestamp": range(40)})
    people = pd.DataFrame({"user": users, "age": [22 + (k % 4) * 10 for k in range(40)]})
    items = pd.DataFrame({"item": ["x"], "title": ["Dresses #1"], "class": ["Dresses"], "department": ["Dresses"]})
    split = itdr._Source(RecData("one-item", inter, items, people), itdr.ITDRConfig(), seed).user_split
    train = [u for u in users if split[u] == "train"]
    inter["rating"] = [5.0 if split[u] == "train" else 1.0 for u in users]
    inter["review"] = [f"review number {k} of the dress " + ("from training" if split[u] == "train" else "held out") for k, u in enumerate(users)]
    return RecData("one-item", inter, items, people), train


def test_item_statistics_ignore_held_out_interactions():
    data, train = _one_item_reviews()
    assert 0 < len(train) < 40
    ds = itdr.build_itdr(data, seed=0, tasks=("rating_prediction", "target_user_identification"))
    (target,) = [x for x in ds.instances if x.task == "target_user_identification"]
    # with the held-out ratings (all 1) the average would be below 5
    assert f"Ratings: {len(train)} users, average 5.0/5" in target.input
    rating = [x for x in ds.instances if x.task == "rating_prediction"]
    assert len(rating) == 40 and {x.meta["variant"] for x in rating} == {"item"}
    for x in rating:
        others = len(train) - (x.meta["user"] in train)
        assert f"Ratings: {others} other users, average 5.0/5" in x.input, x.input
    for x in ds.instances:
        assert "held out" not in x.input          # reviews shown come from training users only
    for x in rating:
        k = int(x.meta["user"][1:])
        assert f"review number {k} " not in x.input   # never the user's own review


def test_attribute_choices_scored_per_token(monkeypatch):
    "A summed log-probability prefers the shorter value; the mean per token does not."
    import types
    from llmrec_nb import llm as L
    per_token = {"55+": -2.0, "under 18": -1.0}   # log-prob of every character of the value
    calls = []
    def fake(llm, prompt, candidates, reduce="sum", **kw):
        calls.append(reduce)
        tot = np.array([per_token[c] * len(c) for c in candidates])
        return tot / np.array([len(c) for c in candidates]) if reduce == "mean" else tot
    monkeypatch.setattr(L, "score_candidates", fake)
    x = Instruction(instruction="", input="Items the user liked: ...", output="under 18", id="a", task="user_attribute_prediction",
                    meta=dict(attribute="age_group", value="under 18", choices=["55+", "under 18"], source="s"))
    assert itdr.predict(types.SimpleNamespace(tokenizer=L.bundled_tokenizer()), [x]) == ["under 18"]
    assert calls == ["mean"]


# --- grounding: the project's one rule set ----------------------------------------------------------------------------

def test_ranked_lists_ground_like_every_other_paper():
    "ITDR grounds ranked answers with `grounding.ground_list`; a one-line list of titles that hold commas is split at title ends."
    from llmrec_nb.grounding import ground_list
    titles = ["Matrix, The (1999)", "Alien (1979)", "Aliens (1986)", "Toy Story (1995)", "Star Wars (1977)"]
    assert itdr.parse_ranked_list("Toy Story, Matrix, The (1999), Alien", titles) == [3, 0, 1]
    assert itdr.parse_ranked_list("Star Wars (1977), Usual Suspects, The (1995), Toy Story (1995)", titles) == [4, 3]
    fx = json.loads((FIX / "messy_outputs.json").read_text())
    for case in fx["rankings"]:
        assert itdr.parse_ranked_list(case["text"], fx["titles"]) == [g.item for g in ground_list(case["text"], fx["titles"])]


# --- the library run: the paper's settings, profiles, the notebook's parameters, resuming ------------------------------

def parameters_cell(nb: Path) -> dict:
    return notebook_defaults(nb)


def test_config_defaults_are_the_papers_and_profiles_override_them():
    paper = itdr.Config()
    lcfg = paper.lora_config(0)
    assert (paper.lr, paper.epochs, paper.scoring, len(paper.seeds), paper.n_train_per_task) == (1e-4, 2.0, False, 3, None)
    assert (lcfg.lr, lcfg.epochs, lcfg.scheduler, lcfg.r, lcfg.alpha) == (1e-4, 2.0, "cosine", 8, 16)
    for profile in ("smoke", "quick", "paper"):
        itdr.Config.from_profile(profile)
    quick = itdr.Config.from_profile("quick")
    assert (quick.datasets, quick.n_eval_per_task, quick.max_length, quick.scoring, quick.n_boot) == (
        ["ml-100k", "clothing-reviews"], 8, 512, True, 2000)
    paths = ("model", "datasets", "device_map")   # where the paper profile points at local copies, and places the model
    strip = lambda c: {k: v for k, v in c.as_dict().items() if k not in paths}
    assert strip(itdr.Config.from_profile("paper")) == strip(itdr.Config())


def test_bad_override_names_the_source_and_key():
    with pytest.raises(DataFormatError, match=r"my.yaml, section itdr, field 'n_eval_per_tsk': unknown setting 'n_eval_per_tsk' \(expected one of n_eval_per_task"):
        itdr.Config().override({"n_eval_per_tsk": 10}, "my.yaml, section itdr")
    with pytest.raises(DataFormatError, match=r"field 'seeds': got 0 \(int\) \(expected list\[int\]\)"):
        itdr.Config().override({"seeds": 0})


def test_notebook_parameters_are_the_quick_profile():
    "Run All in JupyterLab runs the quick profile: the parameters cell holds exactly its values, every setting listed."
    cell = parameters_cell(Path(__file__).resolve().parents[1] / "nbs" / "paper" / "itdr.ipynb")
    assert cell.pop("profile") == "quick" and cell.pop("out_dir") is None and cell.pop("work_dir") is None
    assert cell == itdr.Config.from_profile("quick").as_dict()


@pytest.fixture(scope="module")
def one_adapter_run(tmp_path_factory):
    "The smoke profile cut to one adapter (no data fractions, ablation or heatmap), and its run folder."
    cfg = itdr.Config.from_profile("smoke", data_fracs=[1.0], run_no_description=False, run_correlation=False)
    work = tmp_path_factory.mktemp("itdr") / "work"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runs, "code_fingerprint", lambda: "fixed")   # units stay valid while the library's files are edited
        yield cfg, work, itdr.run(cfg, work)


@pytest.fixture
def fixed_code(monkeypatch):
    monkeypatch.setattr(runs, "code_fingerprint", lambda: "fixed")


def test_rerun_reuses_finished_units(one_adapter_run, fixed_code, monkeypatch):
    from llmrec_nb import lora
    cfg, work, first = one_adapter_run
    def no_training(*a, **k): raise AssertionError("a finished unit was trained again")
    def no_answers(*a, **k): raise AssertionError("a finished unit answered again")
    monkeypatch.setattr(lora, "train_lora", no_training)
    monkeypatch.setattr(itdr, "predict", no_answers)
    again = itdr.run(cfg, work)
    pd.testing.assert_frame_equal(itdr.base_vs_tuned_table(again), itdr.base_vs_tuned_table(first))
    assert again.runs["tuned-s0"]["answers"] == first.runs["tuned-s0"]["answers"]
    # another setting is another adapter: it trains (the base model's answers are reused)
    with pytest.raises(AssertionError, match="trained again"):
        itdr.run(cfg.override({"lr": cfg.lr / 2}), work)


def test_the_config_backend_answers_with_the_tuned_adapter(one_adapter_run, fixed_code):
    "backend: the adapter trains once on transformers; the base and tuned answers come from the named engine, the same."
    from engines import registered_engine
    cfg, work, first = one_adapter_run
    with registered_engine() as engine:
        routed = itdr.run(cfg.override({"backend": "by-path"}), work)
    adapter = first.runs["tuned-s0"]["adapter"]
    assert set(engine.seen) == {None, adapter} and engine.seen.index(adapter) == engine.seen.count(None)   # base, then tuned
    for name in ("base", "tuned-s0"): assert routed.runs[name]["answers"] == first.runs[name]["answers"]


def test_claims_are_tested_over_users(one_adapter_run):
    "Instances of one user share a cluster; the aggregate claims carry CI, n, the users and the paper's effect."
    cfg, _, res = one_adapter_run
    claims = {c["id"]: c for c in itdr.claims(res)}
    assert set(claims) == {"tuned_beats_base_interaction", "tuned_beats_base_understanding"}
    for root in ("interaction", "understanding"):
        c = claims[f"tuned_beats_base_{root}"]
        ids = [x.id for x in res.sets["main"] if x.meta["root_task"] == root]
        assert c["n"] == len(ids) and c["n_effective"] == len(set(res.clusters(ids)))
        assert c["ci_low"] <= c["effect"] <= c["ci_high"] and c["paper_effect"] == itdr.PAPER_GAINS[root][0]
        agg = itdr.aggregate_table(res).set_index("root_task").loc[root]
        assert math.isclose(c["effect"], agg["tuned"] - agg["base"], abs_tol=1e-9)
    rating = next(x for x in res.sets["main"] if x.task == "rating_prediction")
    topk = next(x for x in res.sets["main"] if x.task == "topk_recommendation")
    assert itdr.instance_cluster(rating) == f"synthetic:user:{rating.meta['user']}"
    assert itdr.instance_cluster(_inst(0, "target_user_identification", item="7")) == "s:item:7"
    assert res.clusters([rating.id, topk.id]) == [itdr.instance_cluster(rating), itdr.instance_cluster(topk)]
