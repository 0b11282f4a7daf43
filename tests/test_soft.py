"SOFT as a library run: the config and its profiles, the notebook's parameters, resuming from the run folder."
import ast, json
from pathlib import Path

import pytest

from llmrec_nb import curriculum, soft
from llmrec_nb.core import DataFormatError

ROOT = Path(__file__).resolve().parents[1]


def parameters_cell(nb: Path) -> dict:
    cells = json.loads(nb.read_text())["cells"]
    src = "".join(next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))["source"])
    return {t.id: ast.literal_eval(n.value) for n in ast.parse(src).body if isinstance(n, ast.Assign) for t in n.targets}


def test_profiles_are_overrides_of_the_paper_config():
    paper = soft.Config()
    assert (paper.n_train, paper.grad_accum, paper.warmup_steps, len(paper.train_seeds())) == (4096, 32, 20, 3)
    for profile in ("smoke", "quick", "paper"):
        soft.Config.from_profile(profile)
    quick = soft.Config.from_profile("quick")
    assert (quick.datasets, quick.n_test, quick.model) == (None, 100, "smollm2-135m")


def test_bad_override_names_the_source_and_key():
    with pytest.raises(DataFormatError, match=r"my.yaml, section soft, field 'n_tset': unknown setting 'n_tset' \(expected one of n_test"):
        soft.Config().override({"n_tset": 10}, "my.yaml, section soft")
    with pytest.raises(DataFormatError, match=r"field 'lr': got 'fast' \(str\) \(expected float\)"):
        soft.Config().override({"lr": "fast"})


def test_notebook_parameters_are_the_quick_profile():
    "Run All in JupyterLab runs the quick profile: the parameters cell holds exactly its values, every setting listed."
    cell = parameters_cell(ROOT / "nbs" / "paper" / "soft.ipynb")
    assert cell.pop("profile") == "quick" and cell.pop("out_dir") is None and cell.pop("work_dir") is None
    assert cell == soft.Config.from_profile("quick").as_dict()


def test_rerun_reuses_finished_units(tmp_path, monkeypatch):
    cfg = soft.Config.from_profile("smoke")
    first = soft.run(cfg, tmp_path / "work")
    def no_training(*a, **k): raise AssertionError("a finished unit was trained again")
    monkeypatch.setattr(curriculum, "train_sft", no_training)
    monkeypatch.setattr(curriculum, "train_soft", no_training)
    again = soft.run(cfg, tmp_path / "work")
    assert soft.main_table(again).numbers().equals(soft.main_table(first).numbers())
    # another setting is another unit: it trains
    with pytest.raises(AssertionError, match="trained again"):
        soft.run(cfg.override({"lr": cfg.lr / 2}), tmp_path / "work")
