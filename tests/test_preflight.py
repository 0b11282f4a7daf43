"preflight and `--check`: before a run starts, exactly the data folders, files and models that are missing or malformed."
import contextlib, io, json, re, sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import paper_fixtures  # noqa: E402

from llmrec_nb import preflight  # noqa: E402
from llmrec_nb.cli import main  # noqa: E402
from llmrec_nb.core import environment  # noqa: E402
from llmrec_nb.loaders import dataset_catalog  # noqa: E402


def machine_profile(tmp_path: Path, data: Path, models: str | None = None) -> Path:
    "params/paper.yaml with its /data and /models paths moved into tmp_path (`models`: one model name for every run)."
    text = (ROOT / "params" / "paper.yaml").read_text().replace("/data/", f"{data}/")
    text = re.sub(r"/models/[\w.-]+", lambda m: models or f"{tmp_path}{m.group(0)}", text)
    path = tmp_path / "machine.yaml"
    path.write_text(text)
    return path


def paper_paths(prefix: str) -> set[str]:
    "Every folder under `prefix` (/data/ or /models/) that a setting of params/paper.yaml names, comments aside."
    found = set()
    def walk(v):
        if isinstance(v, dict): [walk(x) for x in v.values()]
        elif isinstance(v, list): [walk(x) for x in v]
        elif isinstance(v, str) and prefix in v: found.add(prefix + v.split(prefix, 1)[1].split(":")[0])
    walk(yaml.safe_load((ROOT / "params" / "paper.yaml").read_text()))
    return found


@pytest.fixture(scope="module")
def fixture_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    assert paper_fixtures.main([str(out)]) == 0
    return out


@pytest.fixture
def no_hardware(monkeypatch):
    "No GPU and a fixed CPU cost: --check neither imports CUDA nor measures the bundled model."
    monkeypatch.setattr(preflight, "visible_gpus", lambda: [])
    monkeypatch.setattr(preflight, "cpu_token_seconds", lambda refresh=False: 1e-4)


def run_cli(argv) -> tuple[int, str]:
    with contextlib.redirect_stdout(io.StringIO()) as out: code = main(argv)
    return code, out.getvalue()


def test_empty_machine_lists_exactly_what_is_missing(tmp_path):
    problems = preflight.check_profile(machine_profile(tmp_path, tmp_path / "data"))
    data = {p.subject: p for p in problems if "no such data folder" in p.message}
    models = {p.subject: p for p in problems if "no such model folder" in p.message}
    assert len(problems) == len(data) + len(models)           # one line per folder, whichever categories runs read there
    assert set(data) == {p.replace("/data/", f"{tmp_path}/data/") for p in paper_paths("/data/")}
    assert set(models) == {f"{tmp_path}{p}" for p in paper_paths("/models/")}
    assert {"ml-1m", "ml-10m", "amazon2023", "bookcrossing"} <= {Path(d).name for d in data} and len(models) == 5
    assert data[str(tmp_path / "data" / "ml-1m")].needed_by == ["itdr", "llama4rec", "molorec"]
    assert "ratings.dat (.gz too): '::'-separated" in data[str(tmp_path / "data" / "ml-1m")].message
    assert "https://grouplens.org/datasets/movielens/1m/" in data[str(tmp_path / "data" / "ml-1m")].message
    assert models[str(tmp_path / "models" / "llama-7b")].needed_by == ["tallrec"]
    assert data[str(tmp_path / "data" / "amazon2023")].needed_by == ["soft"]      # three categories side by side


def test_fixture_machine_with_the_tiny_model_has_no_problem(tmp_path, fixture_data):
    assert preflight.check_profile(machine_profile(tmp_path, fixture_data, models="tiny")) == []


def test_an_amazon_folder_of_several_categories_needs_one(tmp_path, fixture_data):
    profile = tmp_path / "p.yaml"
    profile.write_text(f"itdr:\n  datasets: [amazon2023:{fixture_data}/amazon2023]\n  model: tiny\n")
    problems = preflight.check_profile(profile, only=["itdr"])
    assert [(p.subject, p.needed_by) for p in problems] == [(str(fixture_data / "amazon2023"), ["itdr"])]
    assert "6 files could be <Category>.jsonl" in problems[0].message and "set category" in problems[0].message
    profile.write_text(f"itdr:\n  datasets: [amazon2023:{fixture_data}/amazon2023]\n  dataset_kw: {{category: Kindle_Store}}\n")
    assert preflight.check_profile(profile, only=["itdr"]) == []


def test_malformed_files_are_named_with_what_was_expected(tmp_path, fixture_data):
    import shutil
    bx = tmp_path / "bx"
    shutil.copytree(fixture_data / "bookcrossing", bx)
    (bx / "BX-Books.csv").unlink()
    (bx / "BX-Book-Ratings.csv").write_text("user,isbn,rating\n1,2,3\n")
    problems = preflight.check_dataset(preflight.DatasetSpec("bookcrossing", str(bx)))
    assert [s for s, _ in problems] == [str(bx / "BX-Book-Ratings.csv"), str(bx / "BX-Books.csv")]
    assert problems[0][1].startswith("the header ('user,isbn,rating') names no User-ID, ISBN, Book-Rating")
    assert problems[1][1].startswith("missing; expected BX-Books.csv or Books.csv")
    ml = tmp_path / "ml"
    shutil.copytree(fixture_data / "ml-1m", ml)
    (ml / "ratings.dat").write_bytes(b"")
    assert preflight.check_dataset(preflight.DatasetSpec("ml-1m", str(ml))) == \
        [(str(ml / "ratings.dat"), "is empty: expected '::'-separated, no header: UserID, MovieID, Rating, Timestamp")]


def test_models(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    assert preflight.check_model(str(tmp_path / "nope"))[0].startswith("no such model folder")
    assert preflight.check_model(str(folder))[0].startswith("the model folder has no config.json")
    (folder / "config.json").write_text(json.dumps({"hidden_size": 4096, "num_hidden_layers": 32, "intermediate_size": 11008,
                                                    "vocab_size": 32000, "num_attention_heads": 32, "hidden_act": "silu",
                                                    "tie_word_embeddings": False}))
    assert preflight.check_model(str(folder)) == (None, "folder")
    assert preflight.model_size(preflight.RunNeeds("x", {}, [], str(folder), tmp_path))[0] == pytest.approx(6.74e9, rel=0.01)
    with environment(HF_HUB_OFFLINE="1"):
        assert "HF_HUB_OFFLINE" in preflight.check_model("some-org/not-cached-model")[0]
    with environment(HF_HUB_OFFLINE="0"):
        assert preflight.check_model("some-org/not-cached-model") == (None, "hub")


def test_reproduce_check_prints_every_problem_and_fails(tmp_path, no_hardware):
    code, out = run_cli(["reproduce", "--profile", str(machine_profile(tmp_path, tmp_path / "data")), "--check"])
    lines = out.splitlines()
    expected = len(paper_paths("/data/")) + len(paper_paths("/models/"))
    assert code == 1 and lines[-1] == f"{expected} problems found"
    assert sum(line.startswith("problem: ") for line in lines) == expected
    assert f"problem: {tmp_path}/models/llama-7b: no such model folder" in out
    assert "GPUs: none visible" in out and "  baselines: no language model" in out


def test_reproduce_check_passes_on_a_complete_machine(tmp_path, fixture_data, no_hardware):
    profile = machine_profile(tmp_path, fixture_data, models="tiny")
    code, out = run_cli(["reproduce", "--profile", str(profile), "--check", "--only", "tallrec", "soft"])
    assert code == 0 and out.splitlines()[-1] == "all data folders, files and models found"
    assert "  tallrec: model tiny (" in out and "time ≈" in out and "rough" in out


def test_run_check(tmp_path, no_hardware):
    code, out = run_cli(["run", "soft", "--profile", "smoke", "--set", f"model={tmp_path}/m", "--check"])
    assert code == 1 and f"problem: {tmp_path}/m: no such model folder" in out
    code, out = run_cli(["run", "tallrec", "--profile", "quick", "--set", f"book_path={tmp_path}/bx", "--check"])
    assert code == 1 and f"problem: {tmp_path}/bx: no such data folder; bookcrossing expects BX-Book-Ratings.csv" in out
    assert run_cli(["run", "itdr", "--profile", "quick", "--check"])[0] == 0


def test_data_list():
    code, out = run_cli(["data", "list"])
    assert code == 0
    assert "bookcrossing (book-crossing, bx)\n  file: BX-Book-Ratings.csv or Ratings.csv (.gz too): semicolon-separated" in out
    assert "  source: https://amazon-reviews-2023.github.io/" in out
    rows = {r["name"]: r for r in json.loads(run_cli(["data", "list", "--json"])[1])}
    assert set(rows) == {i.name for i in dataset_catalog()}
    assert rows["amazon2023"]["files"][0] == {"name": "<Category>.jsonl", "also": [], "required": True,
                                              "layout": rows["amazon2023"]["files"][0]["layout"]}
    assert rows["ml-1m"]["bundled"] is False and rows["ml-1m"]["source"] == "https://grouplens.org/datasets/movielens/1m/"


LOADER_FIXTURES = ROOT / "tests" / "fixtures" / "data"


@pytest.mark.parametrize("folder", sorted(p for p in LOADER_FIXTURES.glob("*/good*") if p.is_dir()),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_loader_fixture_the_loader_reads_passes(folder):
    assert preflight.check_dataset(preflight.DatasetSpec(folder.parent.name, str(folder))) == []


@pytest.mark.parametrize("folder", sorted(p for p in LOADER_FIXTURES.glob("*/bad-empty*") if p.is_dir()),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_empty_files_are_caught_before_the_run(folder):
    problems = preflight.check_dataset(preflight.DatasetSpec(folder.parent.name, str(folder)))
    assert len(problems) == 1 and problems[0][1].startswith(("is empty", "holds only its header")), problems
