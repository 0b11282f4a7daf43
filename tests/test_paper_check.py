"""tools/paper_check.py: params/paper.yaml in shape (stand-in data, the tiny model, capped sizes) runs every paper
notebook; params/gpu.yaml is a valid profile whose evaluated n are the ones its comments promise."""
import json, os, subprocess, sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import paper_check  # noqa: E402
import paper_fixtures  # noqa: E402

from llmrec_nb.report import load_profile, notebook_defaults  # noqa: E402

LLMREC = str(Path(sys.executable).parent / "llmrec")
PAPERS = sorted(p.stem for p in (ROOT / "nbs" / "paper").glob("*.ipynb"))
# two at a time finish soonest longest first (seconds on 2 cores: Llama4Rec ~400, MoLoRec ~230, ITDR, TALLRec, SOFT ~100 each)
LONGEST_FIRST = ["llama4rec", "molorec", "itdr", "tallrec", "soft", "baselines"]


@pytest.fixture(scope="module")
def check_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper_check")
    paper_fixtures.make_all(out / "data")
    paper_check.paper_check_profile(out / "data", out / "paper-check.yaml")
    return out


def strings(x):
    if isinstance(x, dict):
        for v in x.values(): yield from strings(v)
    elif isinstance(x, list):
        for v in x: yield from strings(v)
    elif isinstance(x, str): yield x


def split_sizes(value, path: list[str]) -> tuple[list, object]:
    "(the sizes at `path` inside `value`, `value` without them); `*` and `<backbones>` step into every entry."
    if not path: return [value], None
    if path[0] in ("*", "<backbones>"):
        parts = {k: split_sizes(v, path[1:]) for k, v in value.items()}
        rest = {k: r for k, (_, r) in parts.items() if r not in (None, {})}
        return [s for sizes, _ in parts.values() for s in sizes], rest
    if path[0] not in value: return [], value
    sizes, inner = split_sizes(value[path[0]], path[1:])
    return sizes, {**{k: v for k, v in value.items() if k != path[0]}, **({path[0]: inner} if inner not in (None, {}) else {})}


def test_the_profile_passes_the_notebooks_parameter_check(check_dir):
    cfg = load_profile(check_dir / "paper-check.yaml")
    assert set(cfg) == set(yaml.safe_load((ROOT / "params" / "paper.yaml").read_text()))


def test_only_paths_models_and_capped_sizes_differ_from_the_paper_profile(check_dir):
    paper = yaml.safe_load((ROOT / "params" / "paper.yaml").read_text())
    check = yaml.safe_load((check_dir / "paper-check.yaml").read_text())
    data = str((check_dir / "data").resolve())
    for section, values in paper.items():
        shrunk = {k.split("/")[0]: (k.split("/")[1:], kind) for k, kind in paper_check.SIZE_KEYS.get(section, {}).items()}
        new = check[section]
        assert set(new) == set(values), section
        for key, old in values.items():
            where = f"{section}.{key}"
            if key == "model": assert new[key] == "tiny", where
            elif key in shrunk:
                path, kind = shrunk[key]
                sizes, rest = split_sizes(new[key], path)
                assert sizes and all(s is not None and s <= paper_check.CAPS[kind] for s in sizes), where
                assert rest == split_sizes(old, path)[1] or path[0] == "<backbones>", where   # nothing else in a mapping changes
            elif any(s.startswith("/data/") or ":/data/" in s for s in strings(old)):
                assert json.dumps(new[key]) == json.dumps(old).replace("/data/", data + "/"), where
            else: assert new[key] == old, where
    assert not any(s.startswith("/data/") or ":/data/" in s for s in strings(check))


def test_shrunk_sizes_are_capped_and_keep_their_type():
    assert paper_check.capped(None, "count") == paper_check.CAPS["count"]
    assert paper_check.capped(10000, "resamples") == paper_check.CAPS["resamples"]
    assert paper_check.capped(3.0, "epochs") == 2.0 and isinstance(paper_check.capped(3.0, "epochs"), float)
    assert paper_check.capped(1, "epochs") == 1
    with pytest.raises(paper_check.PaperCheckError): paper_check.capped("all", "count")


def test_backbones_without_epochs_get_the_cap(check_dir):
    l4r = yaml.safe_load((check_dir / "paper-check.yaml").read_text())["llama4rec"]
    paper = yaml.safe_load((ROOT / "params" / "paper.yaml").read_text())["llama4rec"]
    for name in paper["direct_backbones"] + paper["sequential_backbones"] + paper["rating_backbones"]:
        assert l4r["backbone_kw"][name]["epochs"] <= paper_check.CAPS["epochs"], name
        assert {k: v for k, v in l4r["backbone_kw"][name].items() if k != "epochs"} == \
            {k: v for k, v in paper["backbone_kw"].get(name, {}).items() if k != "epochs"}


def test_a_renamed_or_unlisted_size_stops_the_generator(tmp_path, check_dir):
    text = (ROOT / "params" / "paper.yaml").read_text()
    def fails(changed, *needles):
        (tmp_path / "p.yaml").write_text(changed)
        with pytest.raises(paper_check.PaperCheckError) as e: paper_check.paper_check_config(check_dir / "data", paper=tmp_path / "p.yaml")
        for needle in needles: assert needle in str(e.value)
    fails(text.replace("  n_eval_per_task: 500", "  n_evaluated_per_task: 500"), "itdr", "n_eval_per_task")
    fails(text.replace("  n_dist: 256", "  n_dist: 256\n  n_extra_windows: 100"), "soft", "n_extra_windows", "KEPT")
    fails(text.replace("  book_path: /data/bookcrossing", "  book_path: /data/bookcrosing"), "bookcrosing")


def test_the_paper_profiles_itdr_amazon_source_is_one_category(check_dir):
    "The ITDR notebook loads each source without category=: its Amazon folder must hold one category."
    from llmrec_nb.loaders import load_dataset
    itdr = yaml.safe_load((check_dir / "paper-check.yaml").read_text())["itdr"]
    amazon = [s.split(":", 1)[1] for s in itdr["datasets"] if s.startswith("amazon2023:")]
    assert amazon and all(load_dataset("amazon2023", path).n_interactions > 0 for path in amazon)


def test_paper_check_runs_every_paper_notebook(check_dir):
    run_and_check(check_dir, sorted(PAPERS, key=lambda p: LONGEST_FIRST.index(p) if p in LONGEST_FIRST else len(LONGEST_FIRST)))


def run_and_check(check_dir: Path, papers: list[str]):
    out, runs = check_dir / "figures", check_dir / "runs"
    res = subprocess.run([LLMREC, "reproduce", "--profile", str(check_dir / "paper-check.yaml"), "--jobs", "2", "--only", *papers,
                          "--out", str(out), "--runs", str(runs)], capture_output=True, text=True, cwd=ROOT, timeout=3600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for paper in papers:
        s = json.loads((out / paper / "summary.json").read_text())
        assert s["paper"] == paper and s["profile"] == "paper-check"
        assert s["claims"], f"{paper}: no claims"
        for c in s["claims"]: assert set(c) >= {"id", "text", "holds", "effect", "p"}, (paper, c)
        m = json.loads((out / paper / "manifest.json").read_text())
        assert m["params"].get("model") in ("tiny", None), paper   # baselines and datasets load no LLM
    report = (out / "REPORT.md").read_text()
    assert all(f"## {paper}" in report for paper in papers)


# ---------------------------------------------------------------- the gpu profile
GPU = yaml.safe_load((ROOT / "params" / "gpu.yaml").read_text())


def test_gpu_profile_matches_the_notebooks_parameters():
    load_profile("gpu")   # raises on an unknown section or key, or a value of the wrong type
    assert set(GPU) == {"common", *PAPERS}


def test_gpu_profile_runs_the_bundled_model_on_bundled_data():
    assert GPU["common"]["model"] == "smollm2-135m" and GPU["common"]["dataset"] == "ml-100k"
    assert all("model" not in values for section, values in GPU.items() if section != "common")
    assert not any("/" in s and ":" in s for s in strings(GPU)), "a dataset path: this profile reads bundled data only"


def test_gpu_profile_evaluates_the_n_its_claims_need():
    assert GPU["soft"]["n_test"] is None or GPU["soft"]["n_test"] >= 4000      # ~4,200-6,400 windows for SOFT vs SFT
    assert GPU["llama4rec"]["n_eval_users"] is None                            # all 943 users: direct, IFT and rating claims
    assert GPU["molorec"]["n_test"] is None and GPU["molorec"]["few_shot_n_test"] is None   # all 471 / 462 target users
    assert GPU["tallrec"]["n_test"] is None and GPU["tallrec"]["ks"] == [16, 64, 256]        # all 1,000 test samples
    assert GPU["itdr"]["n_eval_per_task"] >= 100 and GPU["itdr"]["n_train_per_task"] is None


def test_gpu_profile_leaves_no_library_setting_to_the_notebooks_quick_defaults():
    """A key a profile does not set takes the notebook's default, which is the quick profile's value: every setting of a
    library run whose notebook default differs from its Config default (the paper's) is set in gpu.yaml."""
    import importlib
    for paper in PAPERS:
        try: config = importlib.import_module(f"llmrec_nb.{paper}").Config
        except (ImportError, AttributeError): continue
        nb = notebook_defaults(ROOT / "nbs" / "paper" / f"{paper}.ipynb")
        given = {**GPU["common"], **GPU[paper]}
        paper_values = config()
        loose = [k for k in config.names() if k in nb and k not in given and nb[k] != getattr(paper_values, k)]
        assert not loose, f"{paper}: gpu.yaml leaves {loose} to the notebook's quick defaults"
