"LoRA training: masking, truncation, loss averaging and mixing, gradient accumulation, bad input, checkpoints and resume, scores during training, exact adapter merging (tiny model); rule learning (slow)."
import importlib.util, json, math, os, re
from pathlib import Path

import numpy as np
import pytest
import torch

from llmrec_nb.llm import load_llm, score_binary
from llmrec_nb.lora import (LoraTrainConfig, train_lora, encode_instruction, collate_right_padded, response_loss,
                            save_adapter, load_adapter, merge_adapters, delta_weight, lora_layers, adapter_names, AdapterMixer,
                            peft_quietly)
from llmrec_nb.llm import continuation_ids, encode, bundled_tokenizer
from llmrec_nb.templates import Instruction, render_prompt, tallrec_instruction, next_item_instruction, TALLREC_ANSWERS

slow = pytest.mark.skipif(not os.environ.get("LLMREC_SLOW"), reason="slow: set LLMREC_SLOW=1")
torch.set_num_threads(1)
FAST = dict(lr=1e-2, epochs=1, batch_size=4, style="alpaca", dropout=0.0, seed=0)

def toy(n, seed=0, answer=None):
    rng = np.random.default_rng(seed)
    words = ["apple", "cherry", "grape", "melon", "pear", "plum", "kiwi", "lemon"]
    out = []
    for i in range(n):
        ws = list(rng.choice(words, 4)); pos = i % 2 == 0
        if pos: ws[rng.integers(4)] = "banana"
        out.append(Instruction("Is there a banana?", " ".join(ws), answer or ("Yes." if pos else "No."), id=f"t{i}",
                               meta={"label": int(pos)}))
    return out

@pytest.fixture(scope="module")
def tok():
    return load_llm("tiny").tokenizer

def test_prompt_tokens_carry_no_loss(tok):
    inst = toy(1)[0]
    f = encode_instruction(tok, inst, "chat")
    prompt_len = len(tok(render_prompt(inst, tok), add_special_tokens=False)["input_ids"])
    assert f["labels"][:prompt_len] == [-100] * prompt_len
    assert f["labels"][prompt_len:] == f["input_ids"][prompt_len:]
    assert f["input_ids"][-1] == tok.eos_token_id
    assert tok.decode(f["input_ids"][prompt_len:-1]).strip() == "Yes."

def test_sparse_and_dense_logits_agree(tok):
    llm = load_llm("tiny")
    b = collate_right_padded([encode_instruction(tok, i, "alpaca") for i in toy(5)], tok.pad_token_id)
    with torch.no_grad():
        a = response_loss(llm.model, b["input_ids"], b["attention_mask"], b["labels"], True)
        d = response_loss(llm.model, b["input_ids"], b["attention_mask"], b["labels"], False)
    assert torch.allclose(a, d, atol=1e-4)

def _long_tallrec(n_liked=40, n_disliked=12, label=True, k=0):
    return tallrec_instruction([f"Liked movie number {i} (1990)" for i in range(n_liked)],
                               [f"Disliked movie number {i} (1991)" for i in range(n_disliked)], f"Target {k} (1995)",
                               label, id=f"u:{k}", meta={"label": int(label)})

def test_long_prompts_lose_oldest_history_the_same_way_in_training_and_scoring(tok, monkeypatch):
    from llmrec_nb import tallrec
    inst = _long_tallrec()
    whole = encode_instruction(tok, inst)
    assert whole["dropped"] == 0
    f = encode_instruction(tok, inst, max_length=300)
    assert f["dropped"] > 0 and len(f["input_ids"]) <= 300
    n_prompt = f["labels"].count(-100)
    text = tok.decode(f["input_ids"][:n_prompt])
    full = render_prompt(inst, tok)
    assert text.startswith(full[:full.index(inst.instruction)]) and inst.instruction in text   # chat header + instruction
    assert "Liked movie number 39" in text and "Liked movie number 0 " not in text and "Target 0 (1995)" in text
    assert f["labels"][n_prompt:] == whole["labels"][whole["labels"].count(-100):]                # the response is whole
    # scoring with the same max_length feeds exactly the prompt training saw
    seen = {}
    monkeypatch.setattr(tallrec, "score_binary", lambda llm, prompts, pos, neg, batch_size: seen.update(p=prompts, a=(pos, neg)))
    class _L: tokenizer = tok
    with pytest.warns(UserWarning, match="1 of 2 TALLRec prompts"):
        tallrec.score(_L(), [inst, _long_tallrec(3, 1)], max_length=300)
    assert encode(tok, seen["p"][:1])[0] == f["input_ids"][:n_prompt]
    assert seen["p"][1] == render_prompt(_long_tallrec(3, 1), tok)
    with pytest.raises(ValueError, match="no history entry"): encode_instruction(tok, inst, max_length=60)

def test_train_result_counts_truncated_prompts(tmp_path):
    data = [_long_tallrec(k=k) for k in range(3)] + toy(3)
    with pytest.warns(UserWarning, match="3 of 6 training prompts"):
        res = train_lora(load_llm("tiny"), data, config=LoraTrainConfig(**{**FAST, "style": "chat", "max_length": 300, "max_steps": 1}),
                         output_dir=tmp_path)
    assert res.truncated == 3
    assert json.loads((tmp_path / "train_result.json").read_text())["truncated_prompts"] == 3

@pytest.fixture(scope="module")
def yes_no_tokenizers():
    "The tiny model's tokenizer, the bundled SmolLM2 one (loaded without the model), and one that merges `Yes.` into a token."
    class _Words:        # a word-level stand-in: "Yes." is one token, distinct from "Yes"
        eos_token, eos_token_id, pad_token_id, bos_token, chat_template = "</s>", 1, 0, None, None
        def __call__(self, text, add_special_tokens=True):
            import re
            return {"input_ids": [2 + (sum(map(ord, w)) % 997) for w in re.findall(r"\w+\.?|[^\w\s]|\s+", text)]}
    return {"tiny": load_llm("tiny").tokenizer, "smollm2": bundled_tokenizer("smollm2-135m"), "words": _Words()}

@pytest.mark.parametrize("name", ["tiny", "smollm2", "words"])
@pytest.mark.parametrize("style", ["chat", "alpaca"])
def test_yes_no_scoring_reads_the_first_token_of_the_trained_answer(yes_no_tokenizers, monkeypatch, name, style):
    from llmrec_nb import tallrec
    tok = yes_no_tokenizers[name]
    seen = {}
    monkeypatch.setattr(tallrec, "score_binary", lambda llm, prompts, pos, neg, batch_size: seen.update(p=prompts, a=(pos, neg)))
    class _L: tokenizer = tok
    insts = [tallrec_instruction(["Alien (1979)"], ["Cats (1998)"], "Heat (1995)", label) for label in (True, False)]
    tallrec.score(_L(), insts, style=style)
    for inst, prompt, answer in zip(insts, seen["p"], seen["a"]):
        f = encode_instruction(tok, inst, style)
        first_label = next(l for l in f["labels"] if l != -100)
        assert answer == inst.output and continuation_ids(tok, prompt, answer)[0] == first_label   # as score_binary reads it
    if name == "words":      # where "Yes" and "Yes." differ, the bare words would score a token training never saw
        assert continuation_ids(tok, seen["p"][0], "Yes")[0] != continuation_ids(tok, seen["p"][0], "Yes.")[0]

LONG = " ".join(f"plum{i}" for i in range(12))

def _mixed_sets():
    """Answers of 3 and 25+ tokens in each dataset, with unequal example weights: on the random tiny model every token
    costs about log(vocab), so it is the lengths and the weights that make the averagings differ."""
    ex = lambda i, inp, out, w: Instruction("Answer.", inp, out, id=i, meta={"weight": w})
    main = [ex("m0", "apple banana", "Yes.", 3.0), ex("m1", "kiwi", LONG, 0.5)]
    aux = [ex("a0", "x", "pear melon kiwi lemon grape " * 3, 1.0), ex("a1", "y", "No.", 2.0)]
    return main, aux

def _token_nlls(model, tok, insts):
    "Each example's response-token NLLs, computed by hand with one full forward pass per example."
    out = []
    for i in insts:
        f = encode_instruction(tok, i, "alpaca")
        ids = torch.tensor([f["input_ids"]])
        with torch.no_grad(): lp = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
        tgt = torch.tensor(f["labels"][1:])
        out.append(-lp[torch.arange(len(tgt)), tgt.clamp(min=0)][tgt != -100])
    return out

def _token_mean(nlls, weights): return float(sum(w * t.sum() for w, t in zip(weights, nlls)) / sum(len(t) for t in nlls))
def _example_mean(nlls, weights): return float(np.mean([w * float(t.mean()) for w, t in zip(weights, nlls)]))
_W = lambda insts: [i.meta["weight"] for i in insts]

@pytest.mark.parametrize("average,lam", [("token", 0.3), ("example", 0.3), ("token", 1.0), ("example", 0.0)])
def test_mix_lambda_is_the_share_of_the_loss_from_the_aux_data(tmp_path, average, lam):
    main, aux = _mixed_sets()
    llm = load_llm("tiny")
    nll_main, nll_aux = _token_nlls(llm.model, llm.tokenizer, main), _token_nlls(llm.model, llm.tokenizer, aux)
    L, other = (_token_mean, _example_mean) if average == "token" else (_example_mean, _token_mean)
    want = (1 - lam) * L(nll_main, _W(main)) + lam * L(nll_aux, _W(aux))       # SOFT's (1-λ) L(D) + λ L(D̂)
    # one step on a batch holding both datasets whole: the first logged loss is that of the untrained adapter (B = 0)
    cfg = LoraTrainConfig(**{**FAST, "batch_size": 4, "max_steps": 1, "group_by_length": False, "loss_average": average})
    res = train_lora(llm, main, aux=aux, mix_lambda=lam, config=cfg, output_dir=tmp_path)
    assert res.log["loss"].iloc[0] == pytest.approx(want, rel=1e-4)
    assert abs((1 - lam) * other(nll_main, _W(main)) + lam * other(nll_aux, _W(aux)) - want) > 1.0   # the other averaging differs
    # a source weighted 0 is not run at all: the tokens processed are those of the other source only
    n_tokens = lambda insts: sum(len(encode_instruction(llm.tokenizer, i, "alpaca")["input_ids"]) for i in insts)
    assert res.tokens == {0.0: n_tokens(main), 1.0: n_tokens(aux)}.get(lam, n_tokens(main) + n_tokens(aux))

def test_token_average_is_exact_under_gradient_accumulation(tmp_path):
    main, aux = _mixed_sets()
    data = main + aux
    runs = {}
    for bs, ga in ((4, 1), (2, 2)):
        cfg = LoraTrainConfig(**{**FAST, "batch_size": bs, "grad_accum": ga, "max_steps": 1, "group_by_length": False})
        runs[bs] = train_lora(load_llm("tiny"), data, config=cfg, output_dir=tmp_path / str(bs)).log.iloc[0]
    assert runs[2]["loss"] == pytest.approx(runs[4]["loss"], rel=1e-5)
    assert runs[2]["grad_norm"] == pytest.approx(runs[4]["grad_norm"], rel=1e-4)
    llm = load_llm("tiny")
    nll, w = _token_nlls(llm.model, llm.tokenizer, data), _W(data)
    whole = _token_mean(nll, w)
    assert runs[4]["loss"] == pytest.approx(whole, rel=1e-4)
    # however the four examples split into two micro-batches, averaging their own token means gives another number
    for a, b, c, d in ((0, 1, 2, 3), (0, 2, 1, 3), (0, 3, 1, 2)):
        per_micro = np.mean([_token_mean([nll[a], nll[b]], [w[a], w[b]]), _token_mean([nll[c], nll[d]], [w[c], w[d]])])
        assert abs(per_micro - whole) > 0.1       # vs. agreement to 1e-5 above

def test_bad_input(tmp_path):
    llm = load_llm("tiny")
    with pytest.raises(ValueError, match="empty"): train_lora(llm, [], output_dir=tmp_path)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_lora(load_llm("tiny"), toy(4), aux=toy(4), mix_lambda=2.0, config=LoraTrainConfig(**FAST), output_dir=tmp_path / "m")
    with pytest.raises(ValueError, match="empty response"):
        train_lora(load_llm("tiny"), [Instruction("q", "x", "")], config=LoraTrainConfig(**FAST), output_dir=tmp_path / "e")

def test_checkpoints_resume_and_outputs(tmp_path):
    cfg = LoraTrainConfig(**{**FAST, "save_steps": 1, "epochs": 1})
    r1 = train_lora(load_llm("tiny"), toy(8), config=cfg, output_dir=tmp_path)
    assert r1.global_step == 2 and (tmp_path / "checkpoint-2").exists()
    assert (tmp_path / "loss_curve.csv").exists() and (tmp_path / "loss_curve.png").exists()
    assert (tmp_path / "train_result.json").exists()
    # the run is complete: resuming does no further step
    r2 = train_lora(load_llm("tiny"), toy(8), config=cfg, output_dir=tmp_path)
    assert r2.global_step == 2 and r2.tokens == 0

def test_onednn_routing_leaves_training_unchanged(tmp_path, monkeypatch):
    cfg = LoraTrainConfig(**FAST)
    fast = train_lora(load_llm("tiny"), toy(8), config=cfg, output_dir=tmp_path / "fast")
    monkeypatch.setenv("LLMREC_FAST_CPU", "0")
    plain = train_lora(load_llm("tiny"), toy(8), config=cfg, output_dir=tmp_path / "plain")
    np.testing.assert_allclose(fast.log["loss"].to_numpy(), plain.log["loss"].to_numpy(), rtol=1e-4)

def test_scoring_during_and_after_training_sees_the_current_adapter(tmp_path, monkeypatch):
    # the Trainer's default optimiser (fused AdamW) updates the adapter without bumping its version counter: scores taken
    # between steps and after training must still come from the current weights, as the plain kernels compute them
    llm, data = load_llm("tiny"), toy(16)
    prompts = [render_prompt(i, llm.tokenizer, style="alpaca") for i in toy(6, seed=1)]
    seen = []
    def eval_fn(model):
        seen.append(score_binary(llm, prompts))
        monkeypatch.setenv("LLMREC_FAST_CPU", "0")
        try: plain = score_binary(llm, prompts)
        finally: monkeypatch.delenv("LLMREC_FAST_CPU")
        np.testing.assert_allclose(seen[-1], plain, atol=1e-5)
        return float(seen[-1].mean())
    cfg = LoraTrainConfig(**{**FAST, "eval_steps": 1, "target_modules": ("q_proj", "v_proj", "o_proj", "gate_proj", "down_proj")})
    train_lora(llm, data, config=cfg, output_dir=tmp_path, eval_fn=eval_fn)
    assert len(seen) >= 3 and not np.allclose(seen[0], seen[-1], atol=1e-6)    # the adapter moved between evaluations
    after = score_binary(llm, prompts)
    monkeypatch.setenv("LLMREC_FAST_CPU", "0")
    np.testing.assert_allclose(after, score_binary(llm, prompts), atol=1e-5)

CONFIGS = {"a": (4, 16), "b": (8, 8)}      # (r, alpha): different ranks and scalings
IDS = torch.tensor([[5, 6, 7, 8, 9]])

def _two_adapters(rslora=False, seed=1):
    from peft import LoraConfig, get_peft_model
    llm = load_llm("tiny")
    torch.manual_seed(seed)
    cfg = lambda r, a: LoraConfig(r=r, lora_alpha=a, target_modules=["q_proj", "v_proj"], init_lora_weights=False, use_rslora=rslora)
    with peft_quietly(): llm.model = get_peft_model(llm.model, cfg(*CONFIGS["a"]), adapter_name="a")
    llm.model.add_adapter("b", cfg(*CONFIGS["b"]))
    return llm

def _logits_by_hand(model, weights, rslora=False):
    "A fresh base with Σ_k w_k (alpha_k / r_k or / √r_k) B_k A_k added to each adapted weight, built from the configs."
    base = load_llm("tiny").model
    for name, layer in lora_layers(model, ["a", "b"]).items():
        lin = base.get_submodule(name.removeprefix("base_model.model."))
        with torch.no_grad():
            for w, k in zip(weights, "ab"):
                r, alpha = CONFIGS[k]
                lin.weight += w * alpha / (math.sqrt(r) if rslora else r) * layer.lora_B[k].weight @ layer.lora_A[k].weight
    with torch.no_grad(): return base(input_ids=IDS).logits

@pytest.mark.parametrize("rslora", [False, True])
def test_weighted_merge_is_exact_and_reloads_exactly(tmp_path, rslora):
    llm = _two_adapters(rslora)
    save_adapter(llm.model, tmp_path / "a", "a"); save_adapter(llm.model, tmp_path / "b", "b")
    fresh = load_llm("tiny")
    load_adapter(fresh, tmp_path / "a", "a"); load_adapter(fresh, tmp_path / "b", "b")
    assert adapter_names(fresh.model) == ["a", "b"]
    merge_adapters(fresh.model, ["a", "b"], [0.25, 0.75], "ab")
    with torch.no_grad(): merged = fresh.model(input_ids=IDS).logits
    torch.testing.assert_close(merged, _logits_by_hand(fresh.model, [0.25, 0.75], rslora), atol=1e-5, rtol=0)
    for name, layer in lora_layers(fresh.model, ["a", "b", "ab"]).items():
        want = 0.25 * delta_weight(layer, "a") + 0.75 * delta_weight(layer, "b")
        assert torch.allclose(delta_weight(layer, "ab"), want, atol=1e-6), name
    # saved and loaded onto a fresh base, the merged adapter gives the same logits (its config scales it by exactly 1)
    save_adapter(fresh.model, tmp_path / "ab", "ab")
    cfg = json.loads((tmp_path / "ab" / "adapter_config.json").read_text())
    assert cfg["lora_alpha"] == cfg["r"] and not cfg["use_rslora"]
    again = load_llm("tiny"); load_adapter(again, tmp_path / "ab", "ab")
    with torch.no_grad(): torch.testing.assert_close(again.model(input_ids=IDS).logits, merged, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="unknown adapter"): merge_adapters(fresh.model, ["a", "zz"], [0.5, 0.5])
    with pytest.raises(ValueError, match="weights"): merge_adapters(fresh.model, ["a", "b"], [1.0])

def test_merge_while_a_mixer_is_attached_is_exact(tmp_path):
    llm = _two_adapters()
    m = llm.model
    mixer = AdapterMixer(m, ["a", "b"], init=[0.4, 0.6])
    want = _logits_by_hand(m, [0.4, 0.6])
    with torch.no_grad(): torch.testing.assert_close(m(input_ids=IDS).logits, want, atol=1e-5, rtol=0)   # sets w·s on every layer
    merge_adapters(m, ["a", "b"], mixer.module_weights(), "ab")
    with torch.no_grad(): torch.testing.assert_close(m(input_ids=IDS).logits, want, atol=1e-5, rtol=0)
    save_adapter(m, tmp_path / "ab", "ab")
    again = load_llm("tiny"); load_adapter(again, tmp_path / "ab", "ab")
    with torch.no_grad(): torch.testing.assert_close(again.model(input_ids=IDS).logits, want, atol=1e-5, rtol=0)
    mixer.remove()
    layer = next(iter(lora_layers(m, ["a", "b"]).values()))
    assert layer.scaling["a"] == CONFIGS["a"][1] / CONFIGS["a"][0] and layer.scaling["b"] == CONFIGS["b"][1] / CONFIGS["b"][0]

def test_mixer_gradients_reach_only_the_weights():
    from peft import LoraConfig, get_peft_model
    llm = load_llm("tiny")
    with peft_quietly(): m = get_peft_model(llm.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False), adapter_name="g")
    m.add_adapter("s", LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    mixer = AdapterMixer(m, ["g", "s"])
    opt = torch.optim.Adam(mixer.parameters(), lr=0.1)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    for _ in range(3):
        opt.zero_grad()
        m(input_ids=ids).logits.float().pow(2).mean().backward()
        # neither the base weights nor either LoRA receive a gradient: only the mixer's logits do
        assert all(p.grad is None and not p.requires_grad for p in m.parameters())
        assert any("lora_A.g" in n for n, _ in m.named_parameters()) and any("lora_B.s" in n for n, _ in m.named_parameters())
        assert mixer.logits.grad is not None and mixer.logits.grad.abs().sum() > 0
        opt.step()
    w = np.array(list(mixer.module_weights().values()))
    assert np.allclose(w.sum(1), 1) and not np.allclose(w, 0.5)
    mixer.remove()

@slow
def test_learns_a_rule_on_smollm2(tmp_path):
    llm = load_llm("smollm2-135m")
    test = toy(32, seed=1); y = np.array([i.meta["label"] for i in test])
    p = lambda: score_binary(llm, [render_prompt(i, llm.tokenizer) for i in test])
    gap = lambda q: q[y == 1].mean() - q[y == 0].mean()
    before = gap(p())
    res = train_lora(llm, toy(64), config=LoraTrainConfig(lr=1e-3, epochs=3, batch_size=8), output_dir=tmp_path)
    assert res.log["loss"].iloc[-3:].mean() < 0.5 * res.log["loss"].iloc[:3].mean()
    assert gap(p()) > before


# --- reruns into the same output folder: fingerprints, incomplete checkpoints, interrupted saves ---------------------

def test_rerun_with_other_data_or_settings_is_refused_and_overwrite_starts_afresh(tmp_path):
    from dataclasses import replace
    from llmrec_nb.lora import RunMismatchError
    from safetensors.torch import load_file
    cfg = LoraTrainConfig(**{**FAST, "save_steps": 1, "max_steps": 2})
    train_lora(load_llm("tiny"), toy(8), config=cfg, output_dir=tmp_path)
    for name in ("checkpoint-1", "checkpoint-2", "final"): assert (tmp_path / name / "llmrec_run.json").exists(), name
    result_before = (tmp_path / "train_result.json").read_text()
    adapter_before = load_file(tmp_path / "final" / "adapter_model.safetensors")
    changes = {"lr 0.01 (now 0.001)": (toy(8), replace(cfg, lr=1e-3), None),
               "style 'alpaca' (now 'chat')": (toy(8), replace(cfg, style="chat"), None),
               "other train data": (toy(8, seed=1), cfg, None),
               "other valid data": (toy(8), cfg, toy(4, seed=2))}
    for what, (data, config, valid) in changes.items():
        with pytest.raises(RunMismatchError, match=re.escape(what)):
            train_lora(load_llm("tiny"), data, valid, config=config, output_dir=tmp_path)
    assert (tmp_path / "train_result.json").read_text() == result_before     # a refused run writes nothing
    # options that change neither the adapter nor the batches may differ: the finished run is resumed, no step is left
    again = train_lora(load_llm("tiny"), toy(8), config=replace(cfg, save_steps=5, logging_steps=2), output_dir=tmp_path)
    assert again.global_step == 2 and again.tokens == 0
    afresh = train_lora(load_llm("tiny"), toy(8, seed=1), config=replace(cfg, lr=1e-3), output_dir=tmp_path, resume=False)
    assert afresh.global_step == 2 and afresh.tokens > 0
    result = json.loads((tmp_path / "train_result.json").read_text())
    assert result["config"]["lr"] == 1e-3 and result["resumed_from"] is None
    after = load_file(tmp_path / "final" / "adapter_model.safetensors")
    assert any(not torch.equal(adapter_before[k], after[k]) for k in after)


class _CrashAt:
    "A trainer callback that raises after optimiser step `step`, as a crash would (before that step's checkpoint)."
    def __new__(cls, step):
        from transformers import TrainerCallback
        class Crash(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if state.global_step == step: raise RuntimeError("simulated crash")
        return Crash()


def test_a_half_written_checkpoint_is_skipped(tmp_path):
    cfg = LoraTrainConfig(**{**FAST, "save_steps": 1, "epochs": 2})       # 8 examples, batches of 4: 4 steps
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_lora(load_llm("tiny"), toy(8), config=cfg, output_dir=tmp_path, callbacks=[_CrashAt(3)])
    half = tmp_path / "checkpoint-3"          # what a kill -9 during its save leaves: some files, no trainer state
    half.mkdir(); (half / "adapter_model.safetensors").write_bytes(b"\0" * 10)
    with pytest.warns(UserWarning, match="checkpoint-3: skipped"):
        res = train_lora(load_llm("tiny"), toy(8), config=cfg, output_dir=tmp_path)
    assert res.global_step == 4
    assert json.loads((tmp_path / "train_result.json").read_text())["resumed_from"] == "checkpoint-2"


def test_a_kill_while_saving_the_final_adapter_leaves_the_previous_one(tmp_path, monkeypatch):
    import llmrec_nb.lora as lora
    from safetensors.torch import load_file, save_file
    cfg = LoraTrainConfig(**{**FAST, "max_steps": 2})
    train_lora(load_llm("tiny"), toy(8), config=cfg, output_dir=tmp_path)
    before = load_file(tmp_path / "final" / "adapter_model.safetensors")
    def killed_half_way(model, path, name=None):
        Path(path).mkdir(parents=True, exist_ok=True)
        save_file({k: torch.zeros_like(v) for k, v in before.items()}, str(Path(path) / "adapter_model.safetensors"))
        raise KeyboardInterrupt                 # the weights are written, the rest is not
    monkeypatch.setattr(lora, "save_adapter", killed_half_way)
    with pytest.raises(KeyboardInterrupt):      # the same run again: resumed at its end, it saves final/ once more
        train_lora(load_llm("tiny"), toy(8), config=cfg, output_dir=tmp_path)
    after = load_file(tmp_path / "final" / "adapter_model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert (tmp_path / "final" / "llmrec_run.json").exists() and (tmp_path / "final" / "adapter_config.json").exists()


def test_a_run_resumed_mid_epoch_ends_with_the_uninterrupted_adapter(tmp_path):
    from safetensors.torch import load_file
    words = "apple river stone cloud tiger lemon piano forest".split()
    data = [Instruction("Repeat.", " ".join(words[:1 + i % 8]), words[i % 8] + " x" * (i % 5), id=str(i)) for i in range(24)]
    cfg = LoraTrainConfig(**{**FAST, "epochs": 3, "save_steps": 2, "dropout": 0.05})     # group_by_length: the default
    ref = train_lora(load_llm("tiny"), data, config=cfg, output_dir=tmp_path / "ref")
    with pytest.raises(RuntimeError, match="simulated crash"):   # 6 steps an epoch: killed in the second, resumed at 8
        train_lora(load_llm("tiny"), data, config=cfg, output_dir=tmp_path / "run", callbacks=[_CrashAt(9)])
    resumed = train_lora(load_llm("tiny"), data, config=cfg, output_dir=tmp_path / "run")
    assert json.loads((tmp_path / "run" / "train_result.json").read_text())["resumed_from"] == "checkpoint-8"
    assert resumed.global_step == ref.global_step == 18
    a, b = load_file(ref.adapter_dir / "adapter_model.safetensors"), load_file(resumed.adapter_dir / "adapter_model.safetensors")
    for k in a: torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)


def test_failed_run_leaves_no_output_folder(tmp_path):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_lora(load_llm("tiny"), toy(4), aux=toy(4), mix_lambda=2.0, config=LoraTrainConfig(**FAST), output_dir=tmp_path / "m")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("spelling", ["all-linear", "all"])
def test_target_modules_all_linear(tmp_path, spelling):
    res = train_lora(load_llm("tiny"), toy(4), config=LoraTrainConfig(**{**FAST, "max_steps": 1, "target_modules": (spelling,)}),
                     output_dir=tmp_path)
    assert {n.rsplit(".", 1)[-1] for n in lora_layers(res.model)} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_bad_config_fails_before_any_work(tmp_path):
    from llmrec_nb.lora import LoraConfigError
    for change, match in ((dict(batch_size=0), "batch_size=0"), (dict(grad_accum=0), "grad_accum"),
                          (dict(loss_average="bogus"), "loss_average"), (dict(precision="bogus"), "precision"),
                          (dict(target_modules=("nope",)), "q_proj")):
        with pytest.raises(LoraConfigError, match=match):
            train_lora(load_llm("tiny"), toy(4), config=LoraTrainConfig(**{**FAST, **change}), output_dir=tmp_path / "x")
        assert not (tmp_path / "x").exists()


# --- the command line: one line on stderr, non-zero status, nothing left behind --------------------------------------

BAD = Path(__file__).parent / "fixtures" / "lora_bad"


def _cli_case(tmp_path, monkeypatch, case):
    "argv for a bad-input case, and what its one error line must contain."
    out = str(tmp_path / "out")
    train = lambda data, *more: ["train-lora", "--data", str(data), "--model", "tiny", "--out", out, *more]
    if case == "deep-json":
        (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    if case == "permission":
        read_text = Path.read_text
        def denied(path, *a, **kw):
            if path.name == "good.json": raise PermissionError(13, "Permission denied", str(path))
            return read_text(path, *a, **kw)
        monkeypatch.setattr(Path, "read_text", denied)
    if case == "history":
        (tmp_path / "history.json").write_text(json.dumps([{"instruction": "q", "output": "a", "history": [["hi", "hello"]]}]))
    if case in ("out-is-a-file", "itdr-out-is-a-file"): (tmp_path / "out").write_text("not a folder")
    if case == "unknown-model": monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return {
        "latin1": (train(BAD / "latin1.json"), "latin1.json, line 2: byte 0xe9 is not UTF-8"),
        "deep-json": (train(tmp_path / "deep.json"), "nested too deeply"),
        "null-output": (train(BAD / "null_output.json"), "line 3, field 'output': record 2: 'output' is null"),
        "list-output": (train(BAD / "list_output.json"), "field 'output': record 1: 'output' is ["),
        "history": (train(tmp_path / "history.json"), "field 'history': record 1: has a non-empty 'history'"),
        "empty": (train(BAD / "empty.json"), "holds no records"),
        "data-is-a-folder": (train(BAD), f"{BAD}: is a directory"),
        "permission": (train(BAD / "good.json"), "good.json: permission denied"),
        "out-is-a-file": (train(BAD / "good.json"), "out, field '--out': is a file"),
        "batch-size-0": (train(BAD / "good.json", "--batch-size", "0"), "--batch-size 0: expected an integer >= 1"),
        "precision": (train(BAD / "good.json", "--precision", "bogus"), "--precision bogus: expected"),
        "loss-average": (train(BAD / "good.json", "--loss-average", "bogus"), "--loss-average bogus: expected 'token' or 'example'"),
        "target-modules": (train(BAD / "good.json", "--target-modules", "nope"), "--target-modules nope: expected names of the model's linear layers"),
        "unknown-model": (["train-lora", "--data", str(BAD / "good.json"), "--model", "nobody/no-such-model", "--out", out],
                          "not a local folder"),
        "stats-missing-files": (["data", "stats", "ml-100k", "--path", str(BAD)], str(BAD)),
        "reproduce-jobs-0": (["reproduce", "--jobs", "0", "--out", out], "--jobs: expected an integer >= 1"),
        "itdr-out-is-a-file": (["itdr", "build", "--out", out, "--datasets", "synthetic"], "is a file"),
    }[case]

@pytest.mark.parametrize("case", ["latin1", "deep-json", "null-output", "list-output", "history", "empty",
                                  "data-is-a-folder", "permission", "out-is-a-file", "batch-size-0", "precision",
                                  "loss-average", "target-modules", "unknown-model", "stats-missing-files",
                                  "reproduce-jobs-0", "itdr-out-is-a-file"])
def test_cli_bad_input_is_one_line_and_a_failure(tmp_path, monkeypatch, capsys, case):
    from llmrec_nb.cli import main
    argv, expected = _cli_case(tmp_path, monkeypatch, case)
    try: code = main(argv)
    except SystemExit as e: code = e.code          # a usage error, from the argument parser
    err = capsys.readouterr().err
    assert code != 0 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert expected in err, err
    assert (tmp_path / "out").is_file() if case in ("out-is-a-file", "itdr-out-is-a-file") else not (tmp_path / "out").exists()


def _console(*argv, timeout=300):
    import subprocess, sys
    return subprocess.run([sys.executable, "-m", "llmrec_nb.cli", *argv], capture_output=True, text=True,
                          env={**os.environ, "LLMREC_PROGRESS": "0"}, timeout=timeout)


def test_cli_in_its_own_process_prints_one_line(tmp_path):
    run = _console("reproduce", "--jobs", "0", "--out", str(tmp_path / "out"), timeout=60)
    assert run.returncode == 2 and run.stderr == "llmrec reproduce: error: argument --jobs: expected an integer >= 1, not '0'\n"


@slow
def test_cli_in_its_own_process_prints_one_line_for_a_late_fault(tmp_path):
    "A fault found once the model is loaded: no traceback and no library warning around the one line."
    run = _console("train-lora", "--data", str(BAD / "good.json"), "--model", "tiny", "--out", str(tmp_path / "out"),
                   "--target-modules", "nope")
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "--target-modules nope" in run.stderr, run.stderr
    assert not (tmp_path / "out").exists()


def test_cli_resumes_a_rerun_or_refuses_one_with_other_settings(tmp_path, capsys):
    from llmrec_nb.cli import main, train_lora_options
    base = ["--data", str(BAD / "good.json"), "--model", "tiny", "--out", str(tmp_path / "out"), "--batch-size", "2",
            "--style", "alpaca", "--max-steps", "1"]
    assert train_lora_options(base).overwrite is False                                 # resuming is the default
    assert train_lora_options(base + ["--no-resume"]).overwrite is True                # the older spelling of --overwrite
    assert main(["train-lora", *base]) == 0
    capsys.readouterr()
    assert main(["train-lora", *base, "--lr", "1e-3"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "lr 0.0001 (now 0.001)" in err and "--overwrite" in err, err
    assert main(["train-lora", *base, "--resume"]) == 0                                # the same settings: resumed
    assert json.loads((tmp_path / "out" / "train_result.json").read_text())["resumed_from"] == "checkpoint-1"
    assert main(["train-lora", *base, "--lr", "1e-3", "--overwrite"]) == 0
    result = json.loads((tmp_path / "out" / "train_result.json").read_text())
    assert result["config"]["lr"] == 1e-3 and result["resumed_from"] is None


# --- what LLaMA-Factory and RecBole users expect: help texts, --config and overrides, dataset_info.json, TensorBoard ---

def test_every_option_of_train_lora_and_reproduce_says_what_it_does():
    from llmrec_nb.cli import build_parser, train_lora_parser
    reproduce = next(a for a in build_parser()._actions if a.dest == "command").choices["reproduce"]
    for parser in (train_lora_parser(), reproduce):
        assert parser.description, parser.prog
        for action in parser._actions:
            if action.dest == "help": continue
            assert action.help and not action.help.startswith("default"), (parser.prog, action.dest, action.help)
    text = " ".join(train_lora_parser().format_help().split())
    assert "--r R, --lora-rank R LoRA rank (default 8)" in text and "--report-to NAME [NAME ...] where training progress" in text


def test_train_lora_settings_come_from_a_yaml_file_then_the_command_line_then_overrides(tmp_path):
    from llmrec_nb.cli import train_lora_options
    cfg = tmp_path / "lora.yaml"
    cfg.write_text("model_name_or_path: tiny\noutput-dir: out\nlearning_rate: 1e-3\nlora_target: q_proj,v_proj,o_proj\n"
                   "per_device_train_batch_size: 4\nsave_steps: null\ngroup-by-length: false\nreport_to: none\n"
                   "dataset: itdr_train\ndataset_dir: itdr\noverwrite: true\n")
    o = train_lora_options(["--config", str(cfg), "--batch-size", "2", "epochs=3", "--set", "lr=2e-4"])
    assert (o.model, o.out, o.dataset, o.dataset_dir, o.overwrite) == ("tiny", "out", "itdr_train", "itdr", True)
    s = o.settings
    assert (s.lr, s.epochs, s.batch_size, s.target_modules, s.save_steps, s.group_by_length, s.report_to) == \
           (2e-4, 3.0, 2, ("q_proj", "v_proj", "o_proj"), None, False, ("none",))
    # names split at commas on the command line too, and a KEY=VALUE after a list option is an override, not a name
    o = train_lora_options(["--config", str(cfg), "--target-modules", "q_proj,k_proj", "v_proj", "r=4", "--resume"])
    assert (o.settings.target_modules, o.settings.r, o.overwrite) == (("q_proj", "k_proj", "v_proj"), 4, False)


@pytest.mark.parametrize("yaml_text,extra,expected", [
    ("lr: fast\n", [], "lora.yaml, field 'lr': expected a number, not 'fast'"),
    ("lerning_rate: 1e-3\n", [], "lora.yaml, field 'lerning_rate': unknown option 'lerning_rate' (expected one of learning_rate"),
    ("- lr\n", [], "lora.yaml: not a mapping of options"),
    ("r: [8\n", [], "lora.yaml: invalid YAML"),
    ("style: alpaca\n", ["r=eight"], "override r=eight, field 'r': expected an integer, not 'eight'"),
    ("style: alpaca\n", ["--set", "rr=2"], "override rr=2, field 'rr': unknown option 'rr'"),
    ("formatting: xml\n", [], "lora.yaml, field 'formatting': expected one of alpaca, sharegpt, not 'xml'"),
    ("out: null\n", [], "--out is required"),
])
def test_bad_settings_files_and_overrides_are_one_line(tmp_path, capsys, yaml_text, extra, expected):
    from llmrec_nb.cli import main
    (tmp_path / "lora.yaml").write_text(yaml_text)
    argv = ["train-lora", "--config", str(tmp_path / "lora.yaml"), "--data", str(BAD / "good.json"), "--model", "tiny", *extra]
    argv += [] if "out" in yaml_text else ["--out", str(tmp_path / "out")]
    try: code = main(argv)
    except SystemExit as e: code = e.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "out").exists()


def test_cli_trains_on_the_datasets_itdr_build_registers_and_on_sharegpt_json_lines(tmp_path, capsys):
    from llmrec_nb.cli import main
    from llmrec_nb.lora import run_fingerprint
    from llmrec_nb.templates import load_alpaca
    itdr = tmp_path / "itdr"
    assert main(["itdr", "build", "--out", str(itdr), "--datasets", "synthetic", "--max-per-task", "1"]) == 0
    common = ["--model", "tiny", "--batch-size", "4", "--style", "alpaca", "--max-steps", "1", "--max-length", "2048",
              "--report-to", "none"]
    spellings = {"file:name": ["--data", f"{itdr}/dataset_info.json:itdr_train"],
                 "dataset": ["--dataset", "itdr_train", "--dataset-dir", str(itdr)]}
    for name, data in spellings.items():
        assert main(["train-lora", *data, *common, "--out", str(tmp_path / name)]) == 0
    digest = lambda name: json.loads((tmp_path / name / "train_result.json").read_text())["fingerprint"]["data"]["train"]
    assert digest("file:name") == digest("dataset") == run_fingerprint(LoraTrainConfig(), load_alpaca(itdr / "itdr_train.json"))["data"]["train"]
    chats = [{"conversations": [{"from": "human", "value": i.instruction + "\n\n" + i.input}, {"from": "gpt", "value": i.output}]}
             for i in toy(6)]
    (tmp_path / "chats.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats))
    assert main(["train-lora", "--data", str(tmp_path / "chats.jsonl"), "--valid", str(tmp_path / "chats.jsonl"), *common,
                 "--out", str(tmp_path / "sharegpt")]) == 0
    result = json.loads((tmp_path / "sharegpt" / "train_result.json").read_text())
    assert result["global_step"] == 1 and len(result["evals"]) == 1


def test_a_system_prompt_reaches_the_training_prompt_and_the_run_fingerprint(tok):
    from dataclasses import replace
    from llmrec_nb.lora import run_fingerprint
    inst = toy(1)[0]
    briefed = replace(inst, system="Answer tersely.")
    f = encode_instruction(tok, briefed, "alpaca")
    assert tok.decode(f["input_ids"][:f["labels"].count(-100)]).lstrip().startswith("Answer tersely.\n\n### Instruction:")
    digest = lambda insts: run_fingerprint(LoraTrainConfig(), insts)["data"]["train"]
    assert digest([briefed]) != digest([inst]) and digest([replace(inst, system="")]) == digest([inst])


@pytest.mark.skipif(not importlib.util.find_spec("tensorboard"), reason="tensorboard is not installed")
def test_training_progress_goes_to_tensorboard_by_default(tmp_path):
    from dataclasses import replace
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cfg = LoraTrainConfig(**{**FAST, "max_steps": 2})
    assert cfg.report_to == ("tensorboard",)
    res = train_lora(load_llm("tiny"), toy(8), toy(4, seed=1), config=cfg, output_dir=tmp_path)
    (run,) = list((tmp_path / "runs").iterdir())
    events = EventAccumulator(str(run)).Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
    np.testing.assert_allclose([e.value for e in events.Scalars("train/loss")], res.log["loss"], rtol=1e-5)
    assert [e.value for e in events.Scalars("eval/metric")] == pytest.approx([e["metric"] for e in res.evals])
    # where progress is reported changes neither the adapter nor the batches: the finished run is resumed, not refused
    again = train_lora(load_llm("tiny"), toy(8), toy(4, seed=1), config=replace(cfg, report_to="none"), output_dir=tmp_path)
    assert again.global_step == 2 and again.tokens == 0
    train_lora(load_llm("tiny"), toy(8), config=replace(cfg, report_to="none"), output_dir=tmp_path, resume=False)
    assert not (tmp_path / "runs").exists()        # starting afresh replaces the earlier run's logs too


def test_report_to_wandb_runs_offline_or_is_refused_when_not_installed(tmp_path, monkeypatch, capsys):
    from llmrec_nb.cli import main
    argv = ["train-lora", "--data", str(BAD / "good.json"), "--model", "tiny", "--out", str(tmp_path / "out"),
            "--batch-size", "2", "--style", "alpaca", "--max-steps", "1", "--report-to", "wandb"]
    if importlib.util.find_spec("wandb") is None:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == "llmrec: error: --report-to wandb: expected integrations that are installed (wandb: not installed)\n"
        assert not (tmp_path / "out").exists()
        return
    monkeypatch.setenv("WANDB_MODE", "offline"); monkeypatch.setenv("WANDB_DIR", str(tmp_path)); monkeypatch.setenv("WANDB_SILENT", "true")
    assert main(argv) == 0 and (tmp_path / "wandb").is_dir()


def test_wrapping_a_model_for_training_shows_no_deprecation_notice_of_transformers(tmp_path):
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = train_lora(load_llm("tiny"), toy(4), config=LoraTrainConfig(**{**FAST, "max_steps": 1}), output_dir=tmp_path)
        load_adapter(load_llm("tiny"), res.adapter_dir)
        warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning)    # outside those calls it still shows
    notices = [str(w.message) for w in caught if "is_gradient_checkpointing" in str(w.message)]
    assert notices == ["`is_gradient_checkpointing` is deprecated"], notices


def test_a_rerun_reads_the_tokenised_data_back(tmp_path, monkeypatch):
    "The first run tokenises into `tokenised/` beside its checkpoints; a run over the same folder and data reads it back."
    import llmrec_nb.lora as lora
    cfg = LoraTrainConfig(**{**FAST, "max_steps": 1})
    first = train_lora(load_llm("tiny"), toy(6), valid=toy(2), config=cfg, output_dir=tmp_path)
    assert len(list((tmp_path / "tokenised").glob("tokenised-*.npz"))) == 2        # train and valid
    def no_tokenising(*a, **k): raise AssertionError("tokenised again")
    monkeypatch.setattr(lora, "encode_instructions", no_tokenising)
    again = train_lora(load_llm("tiny"), toy(6), valid=toy(2), config=cfg, output_dir=tmp_path, resume=False)
    assert again.global_step == first.global_step == 1


def test_a_bad_instruction_leaves_no_output_folder(tmp_path):
    bad = toy(3) + [Instruction("Say it", "x", "", id="empty")]
    with pytest.raises(ValueError, match="empty response"):
        train_lora(load_llm("tiny"), bad, config=LoraTrainConfig(**FAST), output_dir=tmp_path / "m")
    assert not (tmp_path / "m").exists()
