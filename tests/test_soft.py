"SOFT as a library run: the config and its profiles, the notebook's parameters, resuming from the run folder."
import json
from pathlib import Path

import pytest

from llmrec_nb import curriculum, soft
from llmrec_nb.core import DataFormatError

from llmrec_nb.report import notebook_defaults

ROOT = Path(__file__).resolve().parents[1]


def parameters_cell(nb: Path) -> dict:
    return notebook_defaults(nb)


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


def test_cli_run_writes_what_the_notebook_writes(tmp_path, smoke_out):
    "`llmrec run soft` (no papermill) gives the summary the paper notebook gave under papermill in the smoke run."
    import subprocess, sys
    cli = subprocess.run([sys.executable, "-m", "llmrec_nb.cli", "run", "soft", "--profile", "smoke", "--out", str(tmp_path / "cli"),
                          "--work", str(tmp_path / "work-cli")], capture_output=True, text=True, cwd=ROOT)
    assert cli.returncode == 0, cli.stderr[-2000:]
    a, b = (json.loads(f.read_text()) for f in (tmp_path / "cli" / "summary.json", smoke_out / "soft" / "summary.json"))
    key = lambda s: [(c["id"], c["effect"], c["p"], c["n"], c["ci_low"], c["ci_high"]) for c in s["claims"]]
    assert key(a) == key(b)
    assert a["tables"]["main"] == b["tables"]["main"] and a["tables"]["alpha_grid"] != [] and a["figures"] == b["figures"]
