"MoLoRec mixing: exact mixed forward, folding, save/reload, entropy TTA, validation-only lr choice, candidate-only decoding (tiny model); the paper notebook's smoke profile."
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec_nb.data import load_synthetic, sample_candidates
from llmrec_nb.llm import load_llm, encode
from llmrec_nb.lora import lora_layers, load_adapter, save_adapter
from llmrec_nb.templates import render_prompt
from llmrec_nb.mixing import (LoraMixture, entropy_tta, mean_answer_entropy, tta_with_validated_lr, grid_search,
                              user_disjoint_domains, molorec_splits, histories_before, listwise_instructions,
                              generate_rankings, ranking_outcomes, RankedListProcessor, _relative_name)

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
    res = entropy_tta(llm, mix, prompts, lr=0.5, steps=4, batch_size=3, gen_tokens=12)
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
    lr, res, table = tta_with_validated_lr(llm, mix, valid, test, lrs, valid_score, steps=2, batch_size=3, gen_tokens=12,
                                           measure=False)
    assert len(seen) == len(lrs) and lr == float(table.set_index("lr")["valid_score"].idxmax()) and res.lr == lr
    on_test = {}
    for l in lrs:                   # what choosing on test (preferring the opposite) would give
        mix.reset(); entropy_tta(llm, mix, test, lr=l, steps=2, batch_size=3, gen_tokens=12, measure=False)
        on_test[l] = -mix.mean_weights()[0]
    assert max(on_test, key=on_test.get) != lr

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

def test_paper_notebook_smoke(tmp_path):
    from llmrec_nb.reproduce import run_papers
    runs = run_papers("smoke", only=["molorec"], out=tmp_path / "out", runs_dir=tmp_path / "runs", verbose=False)
    assert runs[0].ok, runs[0].error
    import json
    s = json.loads((tmp_path / "out" / "molorec" / "summary.json").read_text())
    assert {c["id"] for c in s["claims"]} == {"molorec_beats_specific_warm", "molorec_beats_general_warm",
                                              "molorec_beats_specific_cold", "cold_leans_on_general", "second_round_forgets"}
    for name in ("table1_warm", "table2_cold", "table3_few_shot"): assert (tmp_path / "out" / "molorec" / f"{name}.md").exists()
    for name in ("weights_warm_vs_cold", "ndcg1_vs_prompts"):
        assert (tmp_path / "out" / "molorec" / f"{name}.png").exists() and (tmp_path / "out" / "molorec" / f"{name}.pdf").exists()
