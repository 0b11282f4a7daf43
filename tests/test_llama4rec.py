"Llama4Rec as a library run: the config and its profiles, the notebook's parameters, resuming from the run folder."

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmrec_nb import aggregation as agg, conventional, llama4rec, lora
from llmrec_nb.core import DataFormatError
from llmrec_nb.report import load_profile

from llmrec_nb.report import notebook_defaults

ROOT = Path(__file__).resolve().parents[1]


def parameters_cell(nb: Path) -> dict:
    return notebook_defaults(nb)


def test_profiles_are_overrides_of_the_paper_config():
    paper = llama4rec.Config()
    assert (paper.model, paper.k_prime, paper.finetune, paper.full_lr, paper.rating_readout, paper.readout) == \
           ("meta-llama/Llama-2-7b-hf", 20, "full", 2e-5, "greedy", "generate")
    assert (paper.train_seeds(), paper.alpha_grid, len(paper.specs())) == ([0, 1, 2, 3, 4], [0.1, 0.3, 0.5, 0.7, 0.9], 3)
    for profile in ("smoke", "quick", "paper"):
        llama4rec.Config.from_profile(profile).check()
    quick = llama4rec.Config.from_profile("quick")
    assert (quick.datasets, quick.model, quick.finetune, quick.k_prime, quick.n_eval_users) == (None, "smollm2-135m", "lora", 10, 10)
    # the paper profile agrees with the paper's settings, but for where the model and the data live (and go)
    differ = {k for k, v in llama4rec.Config.from_profile("paper").as_dict().items() if v != paper.as_dict()[k]}
    assert differ <= {"model", "dataset", "dataset_kw", "device_map"}, differ


def test_bad_override_names_the_source_and_key():
    with pytest.raises(DataFormatError, match=r"my.yaml, section llama4rec, field 'k_prme': unknown setting 'k_prme' \(expected one of k_prime"):
        llama4rec.Config().override({"k_prme": 10}, "my.yaml, section llama4rec")
    with pytest.raises(DataFormatError, match=r"field 'full_lr': got 'small' \(str\) \(expected float\)"):
        llama4rec.Config().override({"full_lr": "small"})
    with pytest.raises(DataFormatError, match=r"field 'readout': got 'beam'"):
        llama4rec.Config(readout="beam").check()


def test_notebook_parameters_are_the_quick_profile():
    "Run All in JupyterLab runs the quick profile: the parameters cell holds exactly its values, every setting listed."
    cell = parameters_cell(ROOT / "nbs" / "paper" / "llama4rec.ipynb")
    assert cell.pop("profile") == "quick" and cell.pop("out_dir") is None and cell.pop("work_dir") is None
    assert cell == llama4rec.Config.from_profile("quick").as_dict()


def test_every_profile_means_the_same_to_the_notebook_and_the_library():
    """Papermill sets a profile's keys over the notebook's quick values, `Config.from_profile` over the paper's: each
    profile names every setting where the two differ, so `llmrec reproduce` and `llmrec run` run the same experiment."""
    cell = parameters_cell(ROOT / "nbs" / "paper" / "llama4rec.ipynb")
    for profile in ("smoke", "quick", "paper"):
        prof = load_profile(profile)
        notebook = {k: v for k, v in {**cell, **prof.get("common", {}), **prof["llama4rec"]}.items() if k in llama4rec.Config.names()}
        assert notebook == llama4rec.Config.from_profile(profile).as_dict(), profile


def small_smoke(**over):
    "The smoke profile with one backbone per family: every stage and every unit kind, in seconds."
    return llama4rec.Config.from_profile("smoke", direct_backbones=["LightGCN"], sequential_backbones=["SASRec"],
                                         rating_backbones=["DeepFM"], **over)


def test_rerun_reuses_finished_units(tmp_path, monkeypatch):
    cfg = small_smoke()
    first = llama4rec.run(cfg, tmp_path / "work")
    # the synthetic data and the random model leave validation grids flat: a claim whose outcome a tie decided says so
    found = {c["id"]: c for c in llama4rec.claims(first)}
    tie = any(r["topk"]["LightGCN"]["l4r"]["tie"] for r in first.runs[first.primary].values())
    assert (found["llama4rec_beats_base_direct"]["degenerate"] == "chosen by a tie") == tie
    assert all(c["degenerate"] in (None, "chosen by a tie") and c["n"] == cfg.n_eval_users for c in found.values())

    def recomputed(name):
        def fail(*a, **k): raise AssertionError(f"{name} ran again")
        return fail
    for mod, name in ((lora, "train_lora"), (agg, "finetune_all_weights"), (agg, "llm_topk_utilities"), (agg, "llm_ratings"),
                      (agg, "pairwise_triples"), (agg, "sequential_insertions"), (agg, "item_attributes")):
        monkeypatch.setattr(mod, name, recomputed(name))
    monkeypatch.setattr(conventional.Recommender, "fit", recomputed("fit"))
    again = llama4rec.run(cfg, tmp_path / "work")
    for names in (cfg.direct_backbones, cfg.sequential_backbones):
        assert llama4rec.topk_table(again, names)[0].equals(llama4rec.topk_table(first, names)[0])
    assert llama4rec.rating_table(again)[0].equals(llama4rec.rating_table(first)[0])
    assert llama4rec.claims(again) == llama4rec.claims(first)
    # another setting is another unit: the LLMs are tuned again (the backbones are not)
    with pytest.raises(AssertionError, match="train_lora ran again"):
        llama4rec.run(cfg.override({"lora_lr": cfg.lora_lr / 2}), tmp_path / "work")


def test_the_config_backend_answers_with_the_tuned_adapters(tmp_path):
    "backend: the LLMs are tuned once on transformers; every LLM answer comes from the named engine, and the tables agree."
    from engines import registered_engine
    cfg = small_smoke()
    first = llama4rec.run(cfg, tmp_path / "work")
    with registered_engine() as engine:
        routed = llama4rec.run(cfg.override({"backend": "by-path"}), tmp_path / "work")
    assert engine.seen and all(a is not None and Path(a, "adapter_config.json").exists() for a in engine.seen)
    for names in (cfg.direct_backbones, cfg.sequential_backbones):
        pd.testing.assert_frame_equal(llama4rec.topk_table(routed, names)[0], llama4rec.topk_table(first, names)[0], atol=1e-6)
    pd.testing.assert_frame_equal(llama4rec.rating_table(routed)[0], llama4rec.rating_table(first)[0], atol=1e-6)
    with pytest.raises(DataFormatError, match="field 'backend'"): small_smoke(finetune="full", backend="vllm").check()


def test_full_finetuning_copies_are_kept_released_and_read_back(tmp_path, monkeypatch):
    from llmrec_nb.llm import load_llm
    from llmrec_nb.runs import RunFolder
    cfg = small_smoke(finetune="full", full_lr=1e-2, lora_max_steps=1, lora_batch_size=2)
    ctx = llama4rec.prepare("synthetic", cfg)
    st = ctx.setting
    inst = [agg.rating_prompt(st, u, "valid", st.target["valid"][u], st.target_rating["valid"][u]) for u in st.users("valid")[:4]]
    folder = RunFolder(tmp_path / "work")
    llm = load_llm("tiny")
    tuned = llama4rec.TunedLLMs(llm, cfg, folder)
    base = llm.model
    tuned.tune("a", "tune/a", 0, inst, inst)
    tuned.use("a")
    weights = {n: w.detach().clone() for n, w in llm.model.named_parameters()}
    assert llm.model is not base and any(not np.allclose(w.numpy(), dict(base.named_parameters())[n].detach().numpy()) for n, w in weights.items())
    # a new run on the same folder reads the copy back instead of tuning
    again = llama4rec.TunedLLMs(load_llm("tiny"), cfg, folder)
    monkeypatch.setattr(agg, "finetune_all_weights", lambda *a, **k: (_ for _ in ()).throw(AssertionError("tuned again")))
    again.tune("a", "tune/a", 0, inst, inst)
    again.use("a")
    assert all(np.array_equal(w.detach().numpy(), weights[n].numpy()) for n, w in again.llm.model.named_parameters())
    # released: gone from memory and disk, the base model answers; needing it again tunes it again
    again.release(["a"])
    assert again.llm.model is again.base and not Path(again.records["a"]["path"]).exists()
    with pytest.raises(AssertionError, match="tuned again"):
        again.use("a")
