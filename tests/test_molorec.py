"MoLoRec as a library run: the config and its profiles, the notebook's parameters, resuming from the run folder."
import json
from pathlib import Path

import numpy as np
import pytest

from llmrec_nb import mixing, molorec, runs
from llmrec_nb.core import DataFormatError
from llmrec_nb.report import load_profile, notebook_parameters

from llmrec_nb.report import notebook_defaults

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "nbs" / "paper" / "molorec.ipynb"


def parameters_cell(nb: Path) -> dict:
    return notebook_defaults(nb)


def test_profiles_are_overrides_of_the_paper_config():
    paper = molorec.Config()
    assert (paper.model, paper.dataset, paper.general_datasets, paper.overlap_by) == \
        ("Qwen/Qwen2-7B-Instruct", "ml-1m:/data/ml-1m", ["ml-10m:/data/ml-10m"], "events")
    assert (paper.lora_r, paper.lora_alpha, paper.lora_dropout, paper.n_neg, paper.top_n, paper.ks[:2]) == (16, 32, 0.05, 29, 5, [1, 3])
    assert (paper.epochs_general, paper.epochs_specific, paper.train_seeds()) == (2, 4, [0, 1, 2])
    for profile in ("smoke", "quick", "paper"):
        molorec.Config.from_profile(profile).check()
    quick = molorec.Config.from_profile("quick")
    assert (quick.general_datasets, quick.n_test, quick.model, quick.train_seeds()) == ([], 24, "smollm2-135m", [0])


@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_notebook_under_a_profile_runs_that_profiles_config(profile):
    """Papermill sets a profile's values over the notebook's (quick) defaults: every setting the quick profile changes
    must be set again by the other profiles, or the notebook and `llmrec run molorec` would run different configs."""
    cell = parameters_cell(NOTEBOOK)
    injected = notebook_parameters(load_profile(profile), "molorec", profile, "")
    assert molorec.Config.from_namespace({**cell, **injected}) == molorec.Config.from_profile(profile)


def test_bad_override_names_the_source_and_key():
    with pytest.raises(DataFormatError, match=r"my.yaml, section molorec, field 'n_tset': unknown setting 'n_tset' \(expected one of n_test"):
        molorec.Config().override({"n_tset": 10}, "my.yaml, section molorec")
    with pytest.raises(DataFormatError, match=r"field 'tta_lrs': got 'fast' \(str\)"):
        molorec.Config().override({"tta_lrs": "fast"})
    with pytest.raises(DataFormatError, match=r"field 'baselines'.*expected some of BPR-MF, GRU4Rec, SASRec"):
        molorec.Config(baselines=["SASRec", "LightGCN"]).check()


def test_notebook_parameters_are_the_quick_profile():
    "Run All in JupyterLab runs the quick profile: the parameters cell holds exactly its values, every setting listed."
    cell = parameters_cell(NOTEBOOK)
    assert cell.pop("profile") == "quick" and cell.pop("out_dir") is None and cell.pop("work_dir") is None
    assert cell == molorec.Config.from_profile("quick").as_dict()


@pytest.fixture
def fixed_code(monkeypatch):
    "Units are keyed by the library's code too: hold it fixed, so that only the settings decide what is reused."
    monkeypatch.setattr(runs, "code_fingerprint", lambda: "fixed")


def small(**kw) -> molorec.Config:
    "The smoke profile cut to one seed and no conventional models: every kind of unit, in seconds."
    return molorec.Config.from_profile("smoke", seeds=[0], baselines=[], n_unlabeled_grid=[2], **kw)


def test_rerun_reuses_finished_units(tmp_path, monkeypatch, fixed_code):
    cfg = small()
    stale = tmp_path / "work" / "adapters" / "general_s0-0123456789ab"     # an earlier setting's training folder
    stale.mkdir(parents=True)
    first = molorec.run(cfg, tmp_path / "work")
    assert not stale.exists() and len(list(stale.parent.glob("general_s0-*"))) == 1
    assert not list(stale.parent.glob("*/*/checkpoint-*")) and len(list(stale.parent.glob("*/*/best"))) == 1   # G's best epoch kept
    def no_work(*a, **k): raise AssertionError("a finished unit was computed again")
    with monkeypatch.context() as m:
        for name in ("train_adapter", "evaluate_rankings", "entropy_tta", "general_pull", "grid_search"):
            m.setattr(mixing, name, no_work)
        again = molorec.run(cfg, tmp_path / "work")
    for sc in molorec.SCENARIOS:
        assert molorec.main_numbers(again, sc).equals(molorec.main_numbers(first, sc))
    assert again.few_shot == first.few_shot and again.tta == first.tta and again.curve == first.curve
    assert {c["id"]: c["effect"] for c in molorec.claims(again)} == {c["id"]: c["effect"] for c in molorec.claims(first)}
    monkeypatch.setattr(mixing, "train_adapter", no_work)
    # a changed TTA setting recomputes the units downstream of it and reuses the trained adapters
    tta = molorec.run(cfg.override({"tta_lrs": [0.1]}), tmp_path / "work")
    assert {r["lr"] for r in tta.tta} == {0.1} and tta.scores["warm"]["MoLoRec-S"] == first.scores["warm"]["MoLoRec-S"]
    # a changed training setting is another adapter: it trains
    with pytest.raises(AssertionError, match="computed again"):
        molorec.run(cfg.override({"lrs": [0.005]}), tmp_path / "work")


def two_seed_results(users=("u1", "u2", "u3", "u4")) -> molorec.Results:
    "Results as `run` leaves them for two seeds, with made-up numbers: the tables, figures and claims without a model."
    rng = np.random.default_rng(0)
    cfg = molorec.Config(seeds=[0, 1], ks=[1, 3], few_shot_fracs=[0.5], n_unlabeled_grid=[2, 4], n_boot=200)
    per_user = lambda: [rng.integers(0, 2, len(users)).astype(float).tolist() for _ in cfg.seeds]
    scores = {sc: {row: {**{m: per_user() for m in cfg.metrics()}, "valid": per_user()} for row in ("SASRec", *molorec.Results.ROWS)}
              for sc in molorec.SCENARIOS}
    tta = [{"seed": s, "scenario": sc, "lr": 0.5, "passes": 1, "steps_planned": 1, "steps": 1, "skipped": 0, "n_prompts": 4,
            "prompts_used": 4, "losses": [1.0], "entropy_before": 1.0, "entropy_after": None,
            "module_weights": {"q": [0.4 + 0.2 * s, 0.6 - 0.2 * s], "v": [0.5, 0.5]}, "mean_weights": [0.5, 0.5], "seconds": 1.0}
           for s in cfg.seeds for sc in molorec.SCENARIOS]
    labels = ("TALLRec", "2nd fine-tune", "MoLoRec")
    few_scores = {(sc, 0.5, label): per_user() for sc in molorec.SCENARIOS for label in labels}
    few = [{"seed": s, "scenario": sc, "fraction": 0.5, "n_train": 2,
            **{k: v for label in labels for k, v in ((label, np.mean(few_scores[(sc, 0.5, label)][s])), (f"{label} valid", 1.0))},
            "MoLoRec mean w_g": 0.5, "MoLoRec TTA steps": 1} for s in cfg.seeds for sc in molorec.SCENARIOS]
    curve = [{"seed": s, "scenario": "warm", "n_unlabeled": n, "n_used": n, "steps": 1, "skipped": 0, "NDCG@1": 0.25 * s, "mean_w_g": 0.5}
             for s in cfg.seeds for n in cfg.n_unlabeled_grid]
    return molorec.Results(cfg, {"train": 10}, {"instruction": "i", "input": "x", "output": "y"},
                           [{"by": "events", "removed": 3}], {sc: list(users) for sc in molorec.SCENARIOS}, scores,
                           [{"adapter": "general_s0", "best_step": None}], [{"w_g": 0.5, "NDCG@1": 0.1, "seed": 0}],
                           [{"lr": 0.5, "valid_score": 0.1, "valid_entropy_before": None, "seed": 0}], tta, few,
                           {sc: list(users) for sc in molorec.SCENARIOS}, few_scores, list(users),
                           {sc: per_user() for sc in molorec.SCENARIOS}, curve, {}, 1.0)


def test_tables_and_claims_average_over_seeds(tmp_path):
    res = two_seed_results()
    s_warm = np.asarray(res.scores["warm"]["MoLoRec-S"]["NDCG@1"])
    assert np.allclose(res.user_means("warm", "MoLoRec-S"), s_warm.mean(0))
    assert molorec.learned_weights(res).set_index("module")["w_g_warm"].tolist() == pytest.approx([0.5, 0.5])
    few, by_seed = molorec.few_shot_tables(res)
    assert len(few) == 2 and len(by_seed) == 4 and "seed" not in few
    assert few.set_index("scenario").loc["warm", "MoLoRec"] == pytest.approx(by_seed.query("scenario == 'warm'")["MoLoRec"].mean())
    assert molorec.tta_table(res)["entropy_after"].isna().all()      # JSON's null back as NaN
    claims = {c["id"]: c for c in molorec.claims(res)}
    assert set(claims) == {"molorec_beats_specific_warm", "molorec_beats_general_warm", "molorec_beats_specific_cold",
                           "cold_leans_on_general", "second_round_forgets"}
    assert claims["molorec_beats_specific_warm"]["n"] == 4
    assert (claims["second_round_forgets"]["n"], claims["second_round_forgets"]["n_effective"]) == (8, 4)   # 2 scenarios × 4 users
    report = molorec.save(res, tmp_path / "out", "test")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(summary["tables"]) == ["overlap", "table1_warm", "table2_cold", "beside_paper", "table3_few_shot", "table3_few_shot_by_seed",
                                       "learned_weights", "pull_towards_general", "ndcg1_vs_prompts", "training",
                                       "tta_lr_validation", "grid_validation", "tta"]
    assert summary["figures"] == ["weights_warm_vs_cold", "ndcg1_vs_prompts"] and len(report.claims) == 5
    assert {r["model"]: r["valid_rate"] for r in summary["tables"]["table1_warm"]}["SASRec"] == pytest.approx(
        np.mean(res.scores["warm"]["SASRec"]["valid"]))
