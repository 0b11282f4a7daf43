"""The served (OpenAI-compatible HTTP) backend: retries, timeouts, concurrency, the cache and the API key against an
in-process stub server; scores and ITDR answers equal to the transformers backend through it; a real `vllm serve` on
127.0.0.1 when one is available (LLMREC_VLLM_SERVER, or vllm installed and LLMREC_SLOW=1: make test-vllm)."""
import contextlib, json, logging, os, shutil, signal, socket, subprocess, sys, threading, time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("LLMREC_PROGRESS", "0")
from llmrec_nb.core import LlmrecError, run_manifest
from llmrec_nb.llm import generate, load_llm, rank_candidates, score_binary, score_candidates
from llmrec_nb.llm.served import OpenAIClient, ResponseCache, list_models, load_served
from stub_server import StubServer

SECRET = "sk-test-7f3a9c0e5b1d"


@pytest.fixture
def no_threads_left():
    ours = lambda: {t for t in threading.enumerate() if t.name != "tqdm_monitor"}   # tqdm's one monitor lives on
    before = ours()
    yield
    assert ours() == before, "a server or worker thread is still running"


def quick_client(url, **kw):
    waits = []
    return OpenAIClient(url, api_key_env=None, backoff=0.25, sleep=waits.append, **kw), waits


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- error paths, against the stub without a model (no torch needed) ----

def test_429_5xx_and_malformed_json_are_retried_with_backoff(no_threads_left):
    with StubServer() as stub:
        assert list_models(stub.url, api_key_env=None) == ["stub"] and stub.received[0]["path"] == "/v1/models"
        client, waits = quick_client(stub.url, max_backoff=10)
        stub.fail(429, {"Retry-After": "3"}).fail(502).fail(503).fail(body=b'{"choices": [')
        assert client.request("models")["data"][0]["id"] == "stub"
        assert waits == [3.0, 0.5, 1.0, 2.0]          # Retry-After wins, then 0.25 s · 2^attempt
        assert (client.stats["requests"], client.stats["retries"], len(stub.received)) == (5, 4, 6)
        stub.fail(429, {"Retry-After": "600"})
        client.request("models")
        assert waits[-1] == 10                        # Retry-After is capped at max_backoff


def test_a_stalled_request_times_out_is_retried_and_released(no_threads_left):
    with StubServer() as stub:
        client, waits = quick_client(stub.url, timeout=1.5)
        stub.fail(stall=60)                           # the server holds the first request; closing it releases it
        assert client.request("models")["data"][0]["id"] == "stub"
        assert client.stats["retries"] == 1 and len(waits) == 1 and len(stub.received) == 2


def test_client_errors_are_not_retried_and_say_why(no_threads_left, monkeypatch):
    with StubServer(model="m") as stub:
        client, waits = quick_client(stub.url)
        stub.fail(400)
        with pytest.raises(LlmrecError, match="HTTP 400: stub fault 400"): client.request("models")
        assert client.stats["requests"] == 1 and waits == []
        with pytest.raises(LlmrecError, match="'other' does not exist"):
            client.request("completions", {"model": "other", "prompt": "x"})
    monkeypatch.delenv("LLMREC_TEST_KEY", raising=False)
    with StubServer(api_key=SECRET) as stub:
        client, _ = quick_client(stub.url)
        client.api_key_env = "LLMREC_TEST_KEY"
        with pytest.raises(LlmrecError, match=r"HTTP 401.*check the API key in \$LLMREC_TEST_KEY"): client.request("models")


def test_retries_end_with_a_clear_error(no_threads_left):
    with StubServer() as stub:
        client, waits = quick_client(stub.url, max_retries=2)
        stub.fail(503, times=3)
        with pytest.raises(LlmrecError, match=r"HTTP 503.*gave up after 3 attempts"): client.request("models")
        assert waits == [0.25, 0.5]
    dead, waits = quick_client(f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    with pytest.raises(LlmrecError, match="cannot reach the server"): dead.request("models")
    assert len(waits) == 1


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_is_bounded_and_answers_keep_their_order(concurrency, no_threads_left):
    with StubServer() as stub:
        client = OpenAIClient(stub.url, api_key_env=None, concurrency=concurrency)
        stub.fail(hold=concurrency, times=concurrency)    # the first requests wait until `concurrency` are in flight
        bodies = [{"model": "stub", "prompt": f"p{i}", "max_tokens": 1, "echo": True} for i in range(8)]
        answers = client.request_many("completions", bodies)
        assert stub.max_in_flight == concurrency
        assert [a["choices"][0]["text"] for a in answers] == ["ok"] * 8
        assert sorted(r["body"]["prompt"] for r in stub.received) == sorted(b["prompt"] for b in bodies)


def test_a_failing_request_fails_the_batch_without_hanging(no_threads_left):
    with StubServer() as stub:
        client = OpenAIClient(stub.url, api_key_env=None, concurrency=4)
        bodies = [{"model": "stub", "prompt": f"p{i}"} for i in range(6)] + [{"model": "nope", "prompt": "x"}]
        with pytest.raises(LlmrecError, match="does not exist"): client.request_many("completions", bodies)


def test_the_api_key_is_sent_and_written_nowhere(tmp_path, monkeypatch, caplog, no_threads_left):
    monkeypatch.setenv("LLMREC_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    with StubServer(model="m", api_key=SECRET) as stub:
        llm = load_served("m", stub.url, api_key_env="LLMREC_TEST_KEY", cache=tmp_path / "cache", backoff=0.0)
        stub.fail(429, {"Retry-After": "0"})
        assert generate(llm, ["Q: ", "R: "]) == ["ok", "ok"]
        assert {r["headers"].get("Authorization") for r in stub.received} == {f"Bearer {SECRET}"}
        stub.fail(400, body=json.dumps({"error": {"message": f"the key {SECRET} is not allowed here"}}))
        with pytest.raises(LlmrecError) as quoted: generate(llm, ["S: "])
        assert SECRET not in str(quoted.value) and "the key [API key] is not allowed" in str(quoted.value)
        manifest = json.dumps(run_manifest({"served_url": stub.url, "served_api_key_env": "LLMREC_TEST_KEY"}))
    assert '"served"' in manifest and stub.url in manifest
    written = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    assert '"ok"' in written                                 # the answers are cached ...
    for text in (written, manifest, repr(llm), repr(llm.model), caplog.text):
        assert SECRET not in text                            # ... but the key is nowhere
    assert "retrying" in caplog.text


@contextlib.contextmanager
def http_server(answer):
    "A server on 127.0.0.1 (its own port, so its own origin) in a thread; `answer(handler)` -> (status, headers, body)."
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_GET(self): self._reply()
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._reply()
        def _reply(self):
            status, headers, body = answer(self)
            self.send_response(status)
            for k, v in {**headers, "Content-Length": str(len(body))}.items(): self.send_header(k, v)
            self.end_headers(); self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        daemon_threads, block_on_close = False, True

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try: yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown(); server.server_close(); thread.join()


@pytest.mark.parametrize("status", [302, 307])
def test_redirects_are_refused_so_the_key_stays_with_the_server(status, tmp_path, monkeypatch, no_threads_left):
    monkeypatch.setenv("LLMREC_TEST_KEY", SECRET)
    reached = []                              # the Authorization header of each request that reached the other origin
    foreign = json.dumps({"object": "list", "data": [{"id": "foreign"}],
                          "choices": [{"index": 0, "text": "foreign answer", "logprobs": None}]}).encode()
    def elsewhere(h):
        reached.append(h.headers.get("Authorization"))
        return 200, {"Content-Type": "application/json"}, foreign
    with http_server(elsewhere) as other:
        with http_server(lambda h: (status, {"Location": f"{other}{h.path}"}, b"")) as home:
            client = OpenAIClient(f"{home}/v1", api_key_env="LLMREC_TEST_KEY", max_retries=0, cache=ResponseCache(tmp_path))
            for route, payload in (("completions", {"model": "m", "prompt": "Q: "}), ("models", None)):   # POST, GET
                with pytest.raises(LlmrecError) as e: client.request(route, payload)
                msg = str(e.value)
                assert f"{home}/v1/{route}: HTTP {status} redirect to {other}/v1/{route} not followed" in msg and "\n" not in msg, msg
                assert SECRET not in msg
    assert reached == []                      # not even a request without the key left for the other origin
    assert not list(tmp_path.rglob("*.json")) and client.stats["requests"] == 2


def test_the_key_is_redacted_from_every_answer_before_it_is_cut(monkeypatch, caplog, no_threads_left):
    monkeypatch.setenv("LLMREC_TEST_KEY", SECRET)
    caplog.set_level(logging.WARNING, logger="llmrec_nb.llm.served")
    with StubServer(api_key=SECRET) as stub:
        client, waits = quick_client(stub.url, max_retries=3)
        client.api_key_env = "LLMREC_TEST_KEY"
        stub.fail(200, body=f"<html>bad gateway for {SECRET}</html>")       # not JSON: retried, and the warning quotes it
        stub.fail(200, body="x" * 185 + f" echo {SECRET}")                    # the key straddles the 200-character cut
        stub.fail(502, body="y" * 490 + f" {SECRET}", times=2)               # ... and the 500-character one
        with pytest.raises(LlmrecError, match="HTTP 502") as e: client.request("models")
    assert len(waits) == 3 and caplog.text.count("retrying") == 3
    for text in (str(e.value), caplog.text):
        assert SECRET[:8] not in text and "[API key]" in text, text


def test_a_secret_in_the_query_string_is_sent_but_shown_and_stored_nowhere(tmp_path, caplog, no_threads_left):
    secret = "q-secret-5e6f7a8b9c"
    caplog.set_level(logging.WARNING, logger="llmrec_nb.llm.served")
    umask = os.umask(0o022)                   # what most systems use: files would be 0644 unless made private
    try:
        with StubServer(model="m") as stub:
            url = f"{stub.url}?api-key={secret}&api-version=2024-06-01"
            llm = load_served("m", url, api_key_env=None, cache=tmp_path / "cache", backoff=0.0)
            stub.fail(503)
            assert generate(llm, ["a", "b"]) == ["ok", "ok"]
            stub.fail(400, body=f"unknown api-key {secret}")                  # a server quoting the secret back
            with pytest.raises(LlmrecError, match=r"/v1/completions\?api-key=\*\*\*&api-version=\*\*\*: HTTP 400: unknown api-key \*\*\*") as e:
                generate(llm, ["c"])
            manifest = json.dumps(run_manifest({}))
        assert all(r["path"].endswith(f"?api-key={secret}&api-version=2024-06-01") for r in stub.received)   # still sent
    finally:
        os.umask(umask)
    entries = sorted((tmp_path / "cache").rglob("*.json"))
    assert len(entries) == 2
    assert {json.loads(p.read_text())["endpoint"] for p in entries} == {f"{stub.url}/completions?api-key=***&api-version=***"}
    assert {p.stat().st_mode & 0o777 for p in entries} == {0o600} and {p.parent.stat().st_mode & 0o777 for p in entries} == {0o700}
    written = "".join(p.read_text() for p in entries)
    for text in (written, str(e.value), caplog.text, manifest, repr(llm), repr(llm.model)):
        assert secret not in text, text
    assert "retrying" in caplog.text


def test_the_cache_answers_reruns_and_is_keyed_by_request(tmp_path, no_threads_left):
    with StubServer(model="m") as stub:
        llm = load_served("m", stub.url, api_key_env=None, cache=tmp_path)
        first = generate(llm, ["a", "b"], max_new_tokens=4)
        assert generate(llm, ["b", "a"], max_new_tokens=4) == first[::-1] and len(stub.received) == 2
        assert llm.model.client.stats["cache_hits"] == 2
        generate(llm, ["a"], max_new_tokens=5)                # another parameter: another request
        assert len(stub.received) == 3
        entries = sorted(tmp_path.rglob("*.json"))
        assert len(entries) == 3 and all(json.loads(p.read_text())["request"]["model"] == "m" for p in entries)
        entries[0].write_text("{ damaged")                   # a damaged entry is asked for again
        generate(llm, ["a", "b"], max_new_tokens=4); generate(llm, ["a"], max_new_tokens=5)
        assert len(stub.received) == 4
        uncached = load_served("m", stub.url, api_key_env=None, cache=False)
        generate(uncached, ["a"], max_new_tokens=4); generate(uncached, ["a"], max_new_tokens=4)
        assert len(stub.received) == 6


def test_a_server_without_logprobs_gets_a_clear_error(no_threads_left):
    with StubServer(model="m") as stub:
        llm = load_served("m", stub.url, api_key_env=None, cache=False)
        for call in (lambda: score_candidates(llm, "Q: ", ["a", "b"]), lambda: score_binary(llm, ["Q: "])):
            with pytest.raises(LlmrecError, match=rf"{stub.url}/completions \(model 'm'\) returned no log-probabilities"): call()
        chat = load_served("m", stub.url, api="chat", api_key_env=None, cache=False)
        with pytest.raises(LlmrecError, match="returned no top log-probabilities"): score_binary(chat, ["Q: "])
        with pytest.raises(LlmrecError, match="api='completions'"): score_candidates(chat, "Q: ", ["a"])
        with pytest.raises(LlmrecError, match="beam search"): generate(llm, ["Q: "], num_beams=2)


def test_load_llm_dispatches_to_the_served_backend(monkeypatch, no_threads_left):
    with StubServer(model="served-model") as stub:
        llm = load_llm(None, backend="openai", base_url=stub.url.removesuffix("/v1"), api_key_env=None, cache=False)
        assert (llm.name, llm.tokenizer, type(llm.backend).__name__) == ("served-model", None, "ServedBackend")
        assert "backend=ServedBackend" in repr(llm)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(LlmrecError, match="needs base_url"): load_llm("m", backend="openai")
    with pytest.raises(ValueError, match="api_key_env"): load_llm("m", backend="openai", base_url="http://k:secret@127.0.0.1:1/v1")
    with pytest.raises(ValueError, match="'openai'"): load_llm("m", backend="grpc")


# ---- scores through the stub around the tiny model equal the transformers backend ----

@pytest.fixture(scope="module")
def tiny():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_llm("tiny")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_server(tiny):
    with StubServer(tiny, model="tiny") as stub:
        yield stub


@pytest.fixture(scope="module")
def chat_prompt(tiny):
    return tiny.tokenizer.apply_chat_template([{"role": "user", "content": "Will the user like Heat (1995)?"}],
                                              tokenize=False, add_generation_prompt=True)


@pytest.mark.parametrize("reduce,eos", [("sum", False), ("mean", True)])
def test_served_scores_equal_the_transformers_backend(tiny, tiny_server, chat_prompt, reduce, eos):
    served = load_served("tiny", tiny_server.url, api_key_env=None, cache=False, concurrency=3)
    prompts = [chat_prompt, "Liked it?\nAnswer: ", "### Response:\n"]
    cands = ["Heat (1995)", "Amélie (2001)", "X"]
    np.testing.assert_allclose(score_binary(served, prompts), score_binary(tiny, prompts), atol=1e-5)
    np.testing.assert_allclose(score_candidates(served, prompts[1], cands, reduce=reduce, eos=eos),
                               score_candidates(tiny, prompts[1], cands, reduce=reduce, eos=eos), atol=1e-4)
    a, b = rank_candidates(served, prompts[:2], [cands, cands[:1]]), rank_candidates(tiny, prompts[:2], [cands, cands[:1]])
    assert (np.isinf(a) == np.isinf(b)).all()
    np.testing.assert_allclose(a[np.isfinite(b)], b[np.isfinite(b)], atol=1e-4)
    with pytest.raises(ValueError, match="same token"): score_binary(served, prompts, "Yes", "Yes")


def test_itdr_answers_through_the_server_equal_local_ones(tiny, tiny_server, tmp_path):
    from llmrec_nb.loaders import load_dataset
    from llmrec_nb.itdr import build_itdr, predict
    ds = build_itdr([load_dataset("synthetic", n_users=40, n_items=60)], max_per_task=4, seed=0, history_len=3)
    one_each = list({x.task: x for x in ds.splits["test"]}.values())
    served = load_served("tiny", tiny_server.url, api_key_env=None, cache=tmp_path)
    for scoring in (True, False):
        assert predict(served, one_each, scoring=scoring, max_new_tokens=6) == predict(tiny, one_each, scoring=scoring, max_new_tokens=6)
    sent = len(tiny_server.received)
    predict(served, one_each, scoring=True, max_new_tokens=6)
    assert len(tiny_server.received) == sent                  # a rerun comes from the cache


# ---- a server process: started in its own process group and stopped with everything it started ----

@contextlib.contextmanager
def server_process(cmd, base_url, ready_timeout=600.0, log=None):
    "Run `cmd` in a new process group, wait until `base_url` lists its models, and stop the whole group on exit."
    proc = subprocess.Popen(cmd, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None: raise RuntimeError(f"{cmd[0]} exited with {proc.returncode} before it served")
            try:
                list_models(base_url, api_key_env=None, timeout=5, max_retries=0)
                break
            except LlmrecError:
                if time.monotonic() > deadline: raise TimeoutError(f"{base_url} did not answer within {ready_timeout:g} s")
                time.sleep(0.5)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGTERM)
        try: proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGKILL)   # whatever it left in its group


FAKE_SERVER = r"""
import json, subprocess, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(sys.argv[2], "w").write(str(child.pid))
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = json.dumps({"data": [{"id": "fake"}]}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _gone(pid, seconds=10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[-1].startswith("Z"): return True   # a zombie waiting for its reaper has ended
        except FileNotFoundError: return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and /proc: Linux")
def test_a_server_process_is_stopped_with_its_children(tmp_path):
    port, pid_file = free_port(), tmp_path / "child.pid"
    with server_process([sys.executable, "-c", FAKE_SERVER, str(port), str(pid_file)], f"http://127.0.0.1:{port}/v1", 60) as proc:
        assert list_models(f"http://127.0.0.1:{port}", api_key_env=None) == ["fake"]
        child = int(pid_file.read_text())
    assert proc.poll() is not None and _gone(child)


# ---- a real vLLM server on 127.0.0.1 ----

@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    url = os.environ.get("LLMREC_VLLM_SERVER")
    if url:
        yield url
        return
    import importlib.util
    if not (importlib.util.find_spec("vllm") and os.environ.get("LLMREC_SLOW")):
        pytest.skip("needs a vLLM OpenAI server on 127.0.0.1 (LLMREC_VLLM_SERVER=http://127.0.0.1:8000/v1) "
                    "or vllm installed with LLMREC_SLOW=1 (make test-vllm)")
    from llmrec_nb.llm import bundled_gguf, dequantised_cache
    folder = dequantised_cache(bundled_gguf("smollm2-135m"), "smollm2-135m")
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "serve.log"
    # the server module itself: the `vllm serve` command of vLLM's CPU build fails before it starts a server
    for k, v in (("HF_HUB_OFFLINE", "1"), ("VLLM_NO_USAGE_STATS", "1"), ("VLLM_CPU_KVCACHE_SPACE", "1")):
        os.environ.setdefault(k, v)   # inherited by the server: local folders only, a CPU-sized KV cache
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder), "--host", "127.0.0.1",
           "--port", str(port), "--served-model-name", "smollm2-135m", "--dtype", "float32", "--max-model-len", "2048"]
    with open(log, "w") as out, server_process(cmd, f"http://127.0.0.1:{port}/v1", ready_timeout=900, log=out):
        yield f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def real(vllm_server, tmp_path_factory):
    model = os.environ.get("LLMREC_VLLM_MODEL") or list_models(vllm_server, api_key_env=None)[0]
    tokenizer = os.environ.get("LLMREC_VLLM_TOKENIZER") or ("smollm2-135m" if model == "smollm2-135m" else None)
    return load_served(model, vllm_server, tokenizer=tokenizer, cache=tmp_path_factory.mktemp("served-cache"))


def _question(llm):
    from llmrec_nb.templates import Instruction, render_prompt
    return render_prompt(Instruction("Answer Yes or No.", "Is Paris in France?"), llm.tokenizer)


def test_real_server_matches_the_transformers_backend(real):
    if real.name != "smollm2-135m": pytest.skip("the comparison needs the bundled SmolLM2 served as smollm2-135m")
    hf = load_llm("smollm2-135m", dtype="float32")
    p = [_question(hf)]
    np.testing.assert_allclose(score_binary(real, p), score_binary(hf, p), atol=2e-2)
    for reduce in ("sum", "mean"):
        np.testing.assert_allclose(score_candidates(real, p[0], ["Yes.", "No.", "Paris"], reduce=reduce),
                                   score_candidates(hf, p[0], ["Yes.", "No.", "Paris"], reduce=reduce), atol=5e-2)
    assert generate(real, p, max_new_tokens=5) == generate(hf, p, max_new_tokens=5)


def test_real_server_scores_reruns_and_text_prompts(real):
    if real.tokenizer is None: pytest.skip("set LLMREC_VLLM_TOKENIZER to the served model's tokenizer")
    p = [_question(real), "The capital of France is"]
    py = score_binary(real, p)
    assert ((py > 0) & (py < 1)).all()
    cands = [" Paris", " Lyon", " a city in Europe"]
    s = score_candidates(real, p[1], cands)
    texts = generate(real, p, max_new_tokens=8)
    sent = real.model.client.stats["requests"]
    assert (score_binary(real, p) == py).all() and (score_candidates(real, p[1], cands) == s).all()
    assert generate(real, p, max_new_tokens=8) == texts and real.model.client.stats["requests"] == sent
    as_text = load_served(real.name, real.model.client.base_url, tokenizer=real.tokenizer, prompt_tokens=False, cache=False)
    np.testing.assert_allclose(score_candidates(as_text, p[1], cands), s, atol=1e-3)
