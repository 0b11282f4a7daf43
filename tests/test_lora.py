"LoRA training: masking, bad input, checkpoints and resume, scores during training, exact adapter merging (tiny model); rule learning (slow)."
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from llmrec_nb.llm import load_llm, score_binary
from llmrec_nb.lora import (LoraTrainConfig, train_lora, encode_instruction, collate_right_padded, response_loss,
                            save_adapter, load_adapter, merge_adapters, delta_weight, lora_layers, adapter_names, AdapterMixer)
from llmrec_nb.templates import Instruction, render_prompt

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

def test_weighted_merge_is_exact_and_survives_save_load(tmp_path):
    from peft import LoraConfig, get_peft_model
    llm = load_llm("tiny")
    torch.manual_seed(1)
    m = get_peft_model(llm.model, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False), adapter_name="a")
    m.add_adapter("b", LoraConfig(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    save_adapter(m, tmp_path / "a", "a"); save_adapter(m, tmp_path / "b", "b")
    fresh = load_llm("tiny")
    load_adapter(fresh, tmp_path / "a", "a"); load_adapter(fresh, tmp_path / "b", "b")
    assert adapter_names(fresh.model) == ["a", "b"]
    merge_adapters(fresh.model, ["a", "b"], [0.25, 0.75], "ab")
    for name, layer in lora_layers(fresh.model, ["a", "b", "ab"]).items():
        want = 0.25 * delta_weight(layer, "a") + 0.75 * delta_weight(layer, "b")
        assert torch.allclose(delta_weight(layer, "ab"), want, atol=1e-6), name
    with pytest.raises(ValueError, match="unknown adapter"): merge_adapters(fresh.model, ["a", "zz"], [0.5, 0.5])
    with pytest.raises(ValueError, match="weights"): merge_adapters(fresh.model, ["a", "b"], [1.0])

def test_mixer_gradients_reach_only_the_weights():
    from peft import LoraConfig, get_peft_model
    llm = load_llm("tiny")
    m = get_peft_model(llm.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False), adapter_name="g")
    m.add_adapter("s", LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    mixer = AdapterMixer(m, ["g", "s"])
    opt = torch.optim.Adam(mixer.parameters(), lr=0.1)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    for _ in range(3):
        opt.zero_grad()
        m(input_ids=ids).logits.float().pow(2).mean().backward()
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
