"""The vLLM backend on the bundled model against the transformers backend: yes/no scores, candidate scores (prompt
log-probabilities read through the prefix cache), greedy and beam generation, a LoRA adapter per request, a TALLRec
run with `backend: vllm`, and the throughput of both backends on the same prompts. Needs vLLM: `make test-vllm` builds `.venv-vllm` with the CPU build
and runs this file there; elsewhere it is skipped. One engine is started for the whole module (minutes on a CPU).
"""
import dataclasses, json, os, time
from pathlib import Path

import numpy as np
import pytest

# set before vLLM is imported: the engine reads them when it starts
os.environ.setdefault("HF_HUB_OFFLINE", "1")            # local folders only: no hub look-ups that time out offline
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")    # GiB of KV cache on a CPU (vLLM's default is far larger)

# the project's imports come first, so that the main test run (where vLLM is absent) still checks them
from llmrec_nb import tallrec
from llmrec_nb.core import LlmrecError
from llmrec_nb.loaders import load_dataset
from llmrec_nb.llm import VLLMBackend, encode, generate, load_llm, rank_candidates, score_binary, score_candidates
from llmrec_nb.metrics import auc
from llmrec_nb.templates import Instruction, render_prompt

vllm = pytest.importorskip("vllm", reason="needs vLLM: `make test-vllm` installs its CPU build into .venv-vllm")

N_PROMPTS = int(os.environ.get("LLMREC_VLLM_PROMPTS", 64))  # the same prompts for both backends: agreement and throughput
N_CANDIDATES = 10
NEW_TOKENS = 16
SUMMARY = Path(os.environ.get("LLMREC_VLLM_SUMMARY", "runs/test-vllm/summary.json"))


def timed(fn):
    t0 = time.perf_counter(); out = fn(); return out, time.perf_counter() - t0


@pytest.fixture(scope="module")
def summary():
    rows = {}
    yield rows
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(json.dumps(rows, indent=1))


@pytest.fixture(scope="module")
def data():
    d = load_dataset("ml-100k")
    split = tallrec.split_samples(tallrec.tallrec_samples(d, n_samples=2000))
    return d, tallrec.to_instructions(split["test"].iloc[:N_PROMPTS], d)


@pytest.fixture(scope="module")
def hf():
    return load_llm("smollm2-135m", dtype="float32")


@pytest.fixture(scope="module")
def vl(summary):
    llm, seconds = timed(lambda: load_llm("smollm2-135m", backend="vllm", dtype="float32", max_model_len=2048))
    summary["engine start (s)"] = round(seconds, 1)
    summary["vllm"] = vllm.__version__
    yield llm
    VLLMBackend.close(llm)


@pytest.fixture(scope="module")
def vl_lora(summary):
    "An engine started with LoRA: vLLM 0.32 cannot give it prompt log-probabilities, so it scores token by token."
    llm, seconds = timed(lambda: load_llm("smollm2-135m", backend="vllm", dtype="float32", max_model_len=2048, max_lora_rank=8))
    summary["engine start with LoRA (s)"] = round(seconds, 1)
    yield llm
    VLLMBackend.close(llm)


@pytest.fixture(scope="module")
def prompts(data, hf):
    return tallrec.prompts_of(hf, data[1])[0]


def test_device_and_tokenizer(vl, hf):
    from vllm.platforms import current_platform
    assert vl.device == current_platform.device_type
    text = ["Hello, how are you?", "The capital of France is"]
    assert encode(vl.tokenizer, text) == encode(hf.tokenizer, text)


def test_tiny():
    "`tiny` has 16-dim heads, which vLLM's CPU attention does not run: refused at once, before an engine starts."
    from vllm.platforms import current_platform
    if current_platform.is_cpu():
        t0 = time.perf_counter()
        with pytest.raises(LlmrecError, match="head size 16"): load_llm("tiny", backend="vllm")
        assert time.perf_counter() - t0 < 60
    else:  # a GPU runs it: the same scores as the transformers backend
        tiny, vt = load_llm("tiny"), load_llm("tiny", backend="vllm", gpu_memory_utilization=0.1)
        p = ["Is this a question?", "Another prompt"]
        np.testing.assert_allclose(score_binary(vt, p), score_binary(tiny, p), atol=1e-4)
        VLLMBackend.close(vt)


def test_yes_no_scores_agree(vl, hf, data, summary):
    test = data[1]
    labels = tallrec.labels_of(test)
    p_hf, t_hf = timed(lambda: tallrec.score(hf, test))
    p_vl, t_vl = timed(lambda: tallrec.score(vl, test))
    summary["yes/no AUC transformers, vLLM"] = [auc(labels, p_hf), auc(labels, p_vl)]
    summary["yes/no max |dP|"] = float(np.abs(p_hf - p_vl).max())
    summary["yes/no prompts/s transformers, vLLM"] = [len(test) / t_hf, len(test) / t_vl]
    assert len(set(labels)) == 2 and np.all((p_vl > 0) & (p_vl < 1))
    assert abs(auc(labels, p_hf) - auc(labels, p_vl)) <= 1e-3
    np.testing.assert_allclose(p_vl, p_hf, atol=1e-2)


def test_candidate_scores_agree_and_read_the_prefix_cache(vl, hf, data, prompts, summary, monkeypatch):
    d = data[0]
    cands = [list(d.items["title"].sample(N_CANDIDATES, random_state=i)) for i in range(len(prompts))]
    backend, cached = vl.backend, []
    run = backend._run
    def counting_run(llm, ids, params):
        outs = run(llm, ids, params)
        if getattr(params, "prompt_logprobs", None) is not None: cached.extend(o.num_cached_tokens or 0 for o in outs)
        return outs
    monkeypatch.setattr(backend, "_run", counting_run)
    r_hf, t_hf = timed(lambda: rank_candidates(hf, prompts, cands))
    r_vl, t_vl = timed(lambda: rank_candidates(vl, prompts, cands))
    same_order = np.mean([np.array_equal(np.argsort(-a, kind="stable"), np.argsort(-b, kind="stable")) for a, b in zip(r_hf, r_vl)])
    summary["candidate rankings identical"] = float(same_order)
    summary["candidate max |d log p|"] = float(np.abs(r_hf - r_vl).max())
    summary["candidate prompts/s transformers, vLLM"] = [len(prompts) / t_hf, len(prompts) / t_vl]
    summary["candidate requests reading the prefix cache"] = [int(np.sum(np.array(cached) > 0)), len(cached)]
    assert same_order >= 0.95
    np.testing.assert_allclose(r_vl, r_hf, atol=5e-2)
    assert np.mean(np.array(cached) > 0) > 0.5                   # the prompts came from the cache, not recomputed
    # the same requests again, now with every candidate in the cache: the same scores
    np.testing.assert_allclose(rank_candidates(vl, prompts[:4], cands[:4]), r_vl[:4], atol=1e-4)
    # one prompt through the public single-prompt call, `mean` and the end token too
    for kw in (dict(), dict(reduce="mean"), dict(eos=True)):
        np.testing.assert_allclose(score_candidates(vl, prompts[0], cands[0], **kw), score_candidates(hf, prompts[0], cands[0], **kw), atol=5e-2)


def test_rows_the_prefix_cache_skips_are_run_again(vl, hf, monkeypatch):
    "vLLM computes prompt log-probabilities from the first uncached token: a cache reaching into the continuation is not used."
    import torch
    block = vl.model.llm_engine.vllm_config.cache_config.block_size
    ids = encode(hf.tokenizer, [" ".join(f"Movie number {i} is a film I watched." for i in range(block))])[0]
    assert len(ids) > 2 * block + 3
    p, c = ids[:2 * block - 3], ids[2 * block - 3:2 * block + 3]   # a block boundary inside the continuation
    backend, runs = vl.backend, []
    run = backend._run
    monkeypatch.setattr(backend, "_run", lambda llm, i, params: runs.append(params.skip_reading_prefix_cache) or run(llm, i, params))
    first = backend._continuation_logprobs(vl, [p], [c])[0]
    second = backend._continuation_logprobs(vl, [p], [c])[0]      # two full blocks now cached: past the prompt's end
    assert runs == [False, False, True]                            # the second was run again without the cache
    with torch.no_grad(): lp = torch.log_softmax(hf.model(torch.tensor([p + c])).logits[0].float(), -1)
    ref = [lp[len(p) + j - 1, t].item() for j, t in enumerate(c)]
    np.testing.assert_allclose(first, ref, atol=1e-3)
    np.testing.assert_allclose(second, ref, atol=1e-3)


def _generation_prompts(data, tokenizer):
    return [render_prompt(Instruction("Name three more movies this user will like, one per line.", i.input), tokenizer)
            for i in data[1]]


def test_greedy_generation_agrees(vl, hf, data, summary):
    prompts = _generation_prompts(data, hf.tokenizer)
    g_hf, t_hf = timed(lambda: generate(hf, prompts, max_new_tokens=NEW_TOKENS))
    g_vl, t_vl = timed(lambda: generate(vl, prompts, max_new_tokens=NEW_TOKENS))
    same = np.mean([a == b for a, b in zip(g_hf, g_vl)])
    summary["greedy generations identical"] = float(same)
    summary[f"greedy generation prompts/s ({NEW_TOKENS} new tokens) transformers, vLLM"] = [len(prompts) / t_hf, len(prompts) / t_vl]
    assert all(g.strip() for g in g_vl)
    assert same >= 0.95


def test_beam_search(vl, hf, data, summary):
    prompts = _generation_prompts(data, hf.tokenizer)[:8]
    b_vl = generate(vl, prompts, max_new_tokens=8, num_beams=3, num_return_sequences=3)
    b_hf = generate(hf, prompts, max_new_tokens=8, num_beams=3, num_return_sequences=3)
    # three beams each (distinct token sequences; two may decode to the same text)
    assert len(b_vl) == len(prompts) and all(len(b) == 3 and all(t.strip() for t in b) for b in b_vl)
    summary["beam search: top beam identical"] = float(np.mean([a[0] == b[0] for a, b in zip(b_hf, b_vl)]))
    summary["beam search: same set of 3 beams"] = float(np.mean([set(a) == set(b) for a, b in zip(b_hf, b_vl)]))
    one = generate(vl, prompts[:2], max_new_tokens=8, num_beams=3)
    assert one == [b[0] for b in b_vl[:2]]


def test_lora_adapter_per_request(vl_lora, hf, data, prompts, summary, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from llmrec_nb.lora import load_adapter, save_adapter
    base = load_llm("smollm2-135m", dtype="float32")
    torch.manual_seed(0)
    peft_model = get_peft_model(base.model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                       init_lora_weights=False))
    save_adapter(peft_model, tmp_path / "adapter")
    adapted_hf = load_llm("smollm2-135m", dtype="float32")
    load_adapter(adapted_hf, tmp_path / "adapter")
    vl = vl_lora
    adapted_vl = dataclasses.replace(vl, adapter=str(tmp_path / "adapter"))
    few = prompts[:16]
    base_vl = score_binary(vl, few)
    assert not vl.backend._prompt_logprobs_work(vl)
    a_hf, a_vl = score_binary(adapted_hf, few), score_binary(adapted_vl, few)
    summary["LoRA yes/no max |dP| (adapter moves P by)"] = [float(np.abs(a_hf - a_vl).max()), float(np.abs(a_vl - base_vl).max())]
    assert np.abs(a_vl - base_vl).max() > 1e-2                     # the adapter changes the scores ...
    np.testing.assert_allclose(a_vl, a_hf, atol=1e-3)                # ... as PEFT applies it
    np.testing.assert_allclose(score_binary(vl, few), base_vl, atol=1e-6)  # the engine's base is untouched
    g_hf, g_vl = generate(adapted_hf, few[:8], max_new_tokens=8), generate(adapted_vl, few[:8], max_new_tokens=8)
    summary["LoRA greedy generations identical"] = float(np.mean([a == b for a, b in zip(g_hf, g_vl)]))
    assert np.mean([a == b for a, b in zip(g_hf, g_vl)]) >= 0.75
    cands = list(data[0].items["title"].sample(N_CANDIDATES, random_state=0))   # token by token, with the adapter
    np.testing.assert_allclose(score_candidates(adapted_vl, few[0], cands), score_candidates(adapted_hf, few[0], cands), atol=5e-2)


def test_tallrec_run_with_the_vllm_backend_scores_as_transformers(tmp_path, summary):
    """A paper run with `backend: vllm`: its LoRA adapters train on transformers, every test score comes from one vLLM
    engine with the adapter applied per request, and the scores are transformers' own."""
    cfg = tallrec.Config.from_profile("smoke", model="smollm2-135m", dtype="float32", ks=[4], seeds=[0], seq_baselines=["GRU4Rec"],
                                      full_data_reference=False, cross_domain=False, lr=0.01, epochs=3,
                                      backend_kw={"max_model_len": 2048})   # three steps at lr 0.01: an adapter that moves P
    plain = tallrec.run(cfg, tmp_path / "work")
    on_vllm, seconds = timed(lambda: tallrec.run(cfg.override({"backend": "vllm"}), tmp_path / "work"))  # adapters reused
    summary["TALLRec smoke run, scoring on vLLM (s, engine start included)"] = round(seconds, 1)
    for key in (("Zero-shot LLM", 0, 0), ("TALLRec", 4, 0)):
        diff = float(np.abs(on_vllm.scores[key] - plain.scores[key]).max())
        summary[f"TALLRec {key[0]} K={key[1]}: max |dP| vLLM vs transformers"] = diff
        assert diff < 1e-4, (key, diff)
    assert np.abs(on_vllm.scores[("TALLRec", 4, 0)] - on_vllm.scores[("Zero-shot LLM", 0, 0)]).max() > 1e-2   # the adapter was applied
