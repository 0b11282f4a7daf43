"MoLoRec mixing: exact mixed forward, folding, save/reload, entropy TTA (full passes, counted steps), the per-prompt pull, validation-only lr choice, content-based overlap removal, candidate-only decoding (tiny model); the paper notebook's smoke profile."
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import llmrec_nb.mixing as mixing
from llmrec_nb.data import RecData, load_synthetic, sample_candidates
from llmrec_nb.llm import load_llm, encode
from llmrec_nb.lora import lora_layers, load_adapter, save_adapter
from llmrec_nb.templates import render_prompt
from llmrec_nb.mixing import (LoraMixture, entropy_tta, mean_answer_entropy, tta_with_validated_lr, grid_search, general_pull,
                              user_disjoint_domains, remove_overlap, molorec_splits, histories_before, listwise_instructions,
                              generate_rankings, ranking_outcomes, _relative_name)
from llmrec_nb.llm.transformers_engine import RankedListProcessor

torch.set_num_threads(1)
IDS = torch.tensor([[5, 6, 7, 8, 9, 10, 11]])
CONFIGS = {  # (r, alpha, rsLoRA) of the general and the specific adapter
    "same": ((4, 8, False), (4, 8, False)),
    "different": ((4, 8, False), (2, 6, False)),
    "rslora": ((8, 16, True), (2, 3, False)),
}

def two_adapters(cfgs, seed=0):
    from peft import LoraConfig, get_peft_model
    llm = load_llm("tiny")
    torch.manual_seed(seed)
    (rg, ag, qg), (rs, as_, qs) = cfgs
    m = get_peft_model(llm.model, LoraConfig(r=rg, lora_alpha=ag, use_rslora=qg, target_modules=["q_proj", "v_proj"],
                                             init_lora_weights=False), adapter_name="general")
    m.add_adapter("specific", LoraConfig(r=rs, lora_alpha=as_, use_rslora=qs, target_modules=["q_proj", "v_proj"],
                                         init_lora_weights=False))
    llm.model = m.eval()
    return llm

def scale(r, alpha, rs): return alpha / math.sqrt(r) if rs else alpha / r

def reference_logits(llm, cfgs, w):
    "A plain base model with W + Σ_k w_k s_k B_k A_k written in (scalings from the config numbers above)."
    ref = load_llm("tiny").model
    mods = dict(ref.named_modules())
    sg, ss = scale(*cfgs[0]), scale(*cfgs[1])
    for i, (name, layer) in enumerate(lora_layers(llm.model, ["general", "specific"]).items()):
        dw = w[i][0] * sg * layer.lora_B["general"].weight @ layer.lora_A["general"].weight + \
             w[i][1] * ss * layer.lora_B["specific"].weight @ layer.lora_A["specific"].weight
        mods[_relative_name(name)].weight.data += dw.detach()
    with torch.no_grad(): return ref(input_ids=IDS).logits

@pytest.mark.parametrize("kind", list(CONFIGS))
def test_mixed_forward_folded_and_reloaded_agree(kind, tmp_path):
    cfgs = CONFIGS[kind]
    llm = two_adapters(cfgs)
    mix = LoraMixture(llm.model)
    w = np.random.default_rng(1).dirichlet([1, 1], size=len(mix.layers))
    mix.set_weights(w)
    with torch.no_grad(), mix.applied(): mixed = llm.model(input_ids=IDS).logits
    assert torch.allclose(mixed, reference_logits(llm, cfgs, w), atol=1e-5)
    # a weight of 1 on one adapter is PEFT running that adapter alone
    for wg, name in ((1.0, "general"), (0.0, "specific")):
        mix.set_weights(wg)
        with torch.no_grad(), mix.applied(): a = llm.model(input_ids=IDS).logits
        llm.model.set_adapter(name)
        with torch.no_grad(): b = llm.model(input_ids=IDS).logits
        assert torch.allclose(a, b, atol=1e-5)
    mix.set_weights(w)
    mix.save(tmp_path / "folded", "mixed")
    with torch.no_grad(): folded = llm.model(input_ids=IDS).logits
    assert torch.allclose(folded, mixed, atol=1e-5)
    fresh = load_llm("tiny")
    load_adapter(fresh, tmp_path / "folded", "molorec")
    with torch.no_grad(): assert torch.allclose(fresh.model(input_ids=IDS).logits, mixed, atol=1e-5)

def test_mixture_ignores_overwritten_layer_scaling():
    cfgs = CONFIGS["different"]
    llm = two_adapters(cfgs)
    for layer in lora_layers(llm.model, ["general"]).values():
        layer.scaling["general"] = 123.0          # a stale value must not leak into the mixture
    mix = LoraMixture(llm.model)
    mix.set_weights(0.4)
    with torch.no_grad(), mix.applied(): out = llm.model(input_ids=IDS).logits
    assert torch.allclose(out, reference_logits(llm, cfgs, [[0.4, 0.6]] * len(mix.layers)), atol=1e-5)

@pytest.fixture(scope="module")
def task():
    data = load_synthetic(n_users=40, n_items=60, n_per_user=20)
    _, spec = user_disjoint_domains(data, 0.5, seed=0)
    warm, _ = molorec_splits(spec.interactions, 0.2, seed=0)
    rows = warm.test.head(6)
    cands = sample_candidates(rows[["user", "item"]], spec.interactions, n_neg=5, seed=0)
    insts = listwise_instructions(rows, histories_before(pd.concat([warm.train, warm.valid]), rows, 3), cands, spec.title_of, top_n=3)
    return spec, insts

def test_tta_lowers_entropy_and_trains_the_mixing_logits_only(task):
    spec, insts = task
    llm = two_adapters(CONFIGS["different"])
    prompts = [render_prompt(i, llm.tokenizer) for i in insts]
    mix = LoraMixture(llm.model)
    before = {n: p.detach().clone() for n, p in llm.model.named_parameters()}
    grads = []
    mix.logits.register_hook(lambda g: grads.append(g.abs().sum().item()))
    res = entropy_tta(llm, mix, prompts, lr=0.5, passes=2, batch_size=3, gen_tokens=12)
    assert res.entropy_after < res.entropy_before
    assert grads and all(g > 0 for g in grads)
    assert all(p.grad is None and torch.equal(p, before[n]) for n, p in llm.model.named_parameters())
    assert abs(mean_answer_entropy(llm, mix, prompts, gen_tokens=12) - res.entropy_after) < 1e-6

def test_lr_is_chosen_on_validation_not_test(task):
    spec, insts = task
    llm = two_adapters(CONFIGS["different"])
    prompts = [render_prompt(i, llm.tokenizer) for i in insts]
    valid, test = prompts[:3], prompts[3:]
    mix = LoraMixture(llm.model)
    lrs = [0.0, 0.5]
    seen = []
    def valid_score():              # prefers whichever rate moved weight towards the general adapter
        seen.append(mix.mean_weights()[0]); return mix.mean_weights()[0]
    lr, res, table = tta_with_validated_lr(llm, mix, valid, test, lrs, valid_score, passes=2, batch_size=3, gen_tokens=12,
                                           measure=False)
    assert len(seen) == len(lrs) and lr == float(table.set_index("lr")["valid_score"].idxmax()) and res.lr == lr
    on_test = {}
    for l in lrs:                   # what choosing on test (preferring the opposite) would give
        mix.reset(); entropy_tta(llm, mix, test, lr=l, passes=2, batch_size=3, gen_tokens=12, measure=False)
        on_test[l] = -mix.mean_weights()[0]
    assert max(on_test, key=on_test.get) != lr

def recording_entropies(monkeypatch, no_titles=lambda batch_no: False):
    "Replace the entropy pass by a cheap differentiable stand-in that records each batch's prompts."
    seen = []
    def fake(llm, mixture, ids, *a, **k):
        seen.append([tuple(x) for x in ids])
        if no_titles(len(seen) - 1): return torch.zeros(len(ids)), []
        return mixture.logits[:, 0].sum() * torch.ones(len(ids)), list(range(len(ids)))
    monkeypatch.setattr(mixing, "_row_entropies", fake)
    return seen

def test_tta_passes_over_every_prompt(monkeypatch):
    llm = two_adapters(CONFIGS["same"])
    mix = LoraMixture(llm.model)
    prompts = [f"unlabeled prompt number {i}" for i in range(50)]
    index = {tuple(x): i for i, x in enumerate(encode(llm.tokenizer, prompts))}
    seen = recording_entropies(monkeypatch)
    res = entropy_tta(llm, mix, prompts, lr=0.1, passes=1, batch_size=8, measure=False)
    visited = [index[x] for batch in seen for x in batch]
    assert sorted(visited) == list(range(50))                  # all 50, each once (5 steps of 8 reached only 40)
    assert (res.steps_planned, res.steps, res.skipped, res.n_prompts, res.prompts_used) == (7, 7, 0, 50, 50)
    seen.clear()
    res = entropy_tta(llm, mix, prompts[:20], lr=0.1, passes=3, batch_size=8, measure=False)
    assert len(seen) == 9 and all(sorted(index[x] for b in seen[p * 3:p * 3 + 3] for x in b) == list(range(20)) for p in range(3))

def test_tta_counts_the_steps_it_skips(monkeypatch):
    llm = two_adapters(CONFIGS["same"])
    mix = LoraMixture(llm.model)
    recording_entropies(monkeypatch, no_titles=lambda b: b in (1, 3))
    res = entropy_tta(llm, mix, [f"prompt {i}" for i in range(10)], lr=0.1, passes=2, batch_size=4, measure=False)
    assert (res.steps_planned, res.steps, res.skipped, len(res.losses)) == (6, 4, 2, 4)

def test_general_pull_is_the_per_prompt_gradient(task):
    spec, insts = task
    llm = two_adapters(CONFIGS["different"])
    prompts = [render_prompt(i, llm.tokenizer) for i in insts]
    mix = LoraMixture(llm.model)
    together = general_pull(llm, mix, prompts, batch_size=3, gen_tokens=12)
    alone = np.concatenate([general_pull(llm, mix, [p], gen_tokens=12) for p in prompts])
    assert np.allclose(together, alone, atol=1e-5, equal_nan=True) and np.isfinite(together).any()
    j = int(np.flatnonzero(np.isfinite(together))[0])
    eps = 1e-3                                         # finite difference: shift G's logit in every module by ±eps
    def entropy_at(delta):
        with torch.no_grad(): mix.logits[:, 0] += delta
        try: return mean_answer_entropy(llm, mix, [prompts[j]], gen_tokens=12)
        finally:
            with torch.no_grad(): mix.logits[:, 0] -= delta
    assert abs(-(entropy_at(eps) - entropy_at(-eps)) / (2 * eps) - together[j]) < 1e-2 * max(1.0, abs(together[j]))

def releases(name, rows, titles):
    return RecData(name, pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]),
                   pd.DataFrame({"item": list(titles), "title": list(titles.values())}))

def test_remove_overlap_matches_content_not_ids():
    # user "1" and item "10" mean different things in each release; one rating event is recorded in both
    general = releases("ml-10m", [("1", "10", 4.0, 100), ("1", "11", 3.0, 200), ("7", "12", 5.0, 300)],
                       {"10": "Matrix, The (1999)", "11": "Heat (1995)", "12": "Alien (1979)"})
    specific = releases("ml-1m", [("1", "2", 5.0, 300), ("1", "3", 2.0, 50)], {"2": "Alien (1979)", "3": "Toy Story (1995)"})
    kept, info = remove_overlap(general, specific)
    assert sorted(zip(kept.interactions.user, kept.interactions.timestamp)) == [("1", 100), ("1", 200)]
    assert (info["by"], info["removed"], info["interactions_before"], info["interactions_after"]) == ("events", 1, 3, 2)
    assert remove_overlap(general, specific, by="none")[1]["removed"] == 0

def test_grid_search_keeps_the_best_validation_weight():
    llm = two_adapters(CONFIGS["same"])
    mix = LoraMixture(llm.model)
    best, table = grid_search(mix, lambda: {"NDCG@1": -abs(mix.mean_weights()[0] - 0.7), "NDCG@3": 0.0})
    assert abs(best - 0.7) < 1e-9 and len(table) == 11 and abs(mix.mean_weights()[0] - 0.7) < 1e-6

def test_constrained_decoder_never_emits_a_non_candidate(task):
    spec, insts = task
    for seed in (0, 1):
        llm = load_llm("tiny", seed=seed)
        texts = generate_rankings(llm, insts, spec.title_of, top_n=3, max_new_tokens=80, batch_size=4, constrained=True)
        for text, inst in zip(texts, insts):
            titles = {spec.title_of[c] for c in inst.meta["candidates"]}
            entries = text.splitlines()
            assert [e.split(". ", 1)[0] for e in entries] == ["1", "2", "3"], text
            names = [e.split(". ", 1)[1] for e in entries]
            assert set(names) <= titles and len(set(names)) == 3, text
        assert ranking_outcomes(texts, insts, spec.title_of, 3, (1, 3))["valid"].mean() == 1.0

def test_trie_masks_every_other_token():
    tok = load_llm("tiny").tokenizer
    proc = RankedListProcessor(tok, [["Heat (1995)", "Heat 2 (2001)"]], prompt_width=0, top_n=2)
    first = tok("1. Heat (1995)\n", add_special_tokens=False)["input_ids"]
    assert proc.allowed(0, []) == [first[0]]
    # after the first entry only the other title can follow, then the end token
    nxt = tok("2. Heat 2 (2001)", add_special_tokens=False)["input_ids"]
    assert proc.allowed(0, first + nxt) == [tok.eos_token_id]
    assert set(proc.allowed(0, first + nxt[:len(nxt) - 1])) == {nxt[-1]}

def test_paper_notebook_smoke(smoke_out):
    import json
    s = json.loads((smoke_out / "molorec" / "summary.json").read_text())
    claims = {c["id"]: c for c in s["claims"]}
    assert set(claims) == {"molorec_beats_specific_warm", "molorec_beats_general_warm",
                           "molorec_beats_specific_cold", "cold_leans_on_general", "second_round_forgets"}
    for c in claims.values():                      # every claim rests on a test over users, with its interval and n
        assert c["paper_source"] and (c["n"] or c["degenerate"]), c   # the tiny model lists no titles: no pull, and said so
        if c["n"]: assert c["ci_low"] is not None and c["ci_high"] is not None, c
    assert claims["molorec_beats_specific_warm"]["paper_effect"] == pytest.approx(0.5783 - 0.5460)
    forgets = claims["second_round_forgets"]                  # tested over users, not over (user, fraction, scenario) instances
    assert forgets["n_effective"] is not None and forgets["n_effective"] <= forgets["n"] and "users" in forgets["detail"]
    assert claims["cold_leans_on_general"]["paper_effect"] is None
    rows = {r["model"] for r in s["tables"]["table1_warm"]}
    assert "One LoRA on G+S data" in rows and not any("TALLRec" in r for r in rows)
    tta = pd.DataFrame(s["tables"]["tta"])
    assert {"steps", "skipped", "steps_planned", "prompts"} <= set(tta.columns) and set(tta["seed"]) == {0}   # smoke: one seed
    assert (tta["steps"] + tta["skipped"] == tta["steps_planned"]).all()
    assert s["tables"]["overlap"][0]["removed"] == 0
    for name in ("table1_warm", "table2_cold", "table3_few_shot"): assert (smoke_out / "molorec" / f"{name}.md").exists()
    for name in ("weights_warm_vs_cold", "ndcg1_vs_prompts"):
        assert (smoke_out / "molorec" / f"{name}.png").exists() and (smoke_out / "molorec" / f"{name}.pdf").exists()
