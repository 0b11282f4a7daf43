"""A small OpenAI-compatible server on 127.0.0.1 for the served backend's tests and offline demos (test code: it is
not part of the library). Around a local `LLM` it answers /v1/models, /v1/completions and /v1/chat/completions from
that model; without one it answers every completion with "ok"; `fail(...)` queues faults."""
from __future__ import annotations
import json, threading, urllib.parse
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from llmrec_nb.llm import LLM


class _StubHTTPServer(ThreadingHTTPServer):
    daemon_threads = False     # handler threads are joined on close
    block_on_close = True

class StubServer:
    """An OpenAI-compatible server on 127.0.0.1:`port` (0: a free one) in a thread, answering from a local `llm`
    (None: "ok", no log-probabilities); `fail` queues faults; `api_key` (when set) is required as a bearer token."""
    def __init__(self, llm: LLM | None = None, model: str = "stub", api_key: str | None = None, port: int = 0,
                 top_k_max: int | None = None):
        self.llm, self.model, self.api_key, self.port, self.top_k_max = llm, model, api_key, port, top_k_max
        self.received: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self._faults: deque = deque()
        self._lock, self._model_lock = threading.Condition(), threading.Lock()
        self._release = threading.Event()
        self._seen: deque = deque(maxlen=16)      # rows of recent prompts: a shared prefix goes through the output layer once
        self._server = self._thread = self._port = None

    def fail(self, status: int | None = None, headers: dict | None = None, body: bytes | str | None = None,
             stall: float = 0.0, hold: int = 0, times: int = 1) -> "StubServer":
        """Answer the next `times` requests with `status` (and `headers`) or the raw `body`, after `stall` seconds or
        once `hold` requests have been in flight at once (5 s at most); with neither status nor body, answer normally."""
        body = body.encode() if isinstance(body, str) else body
        with self._lock: self._faults.extend([dict(status=status, headers=headers or {}, body=body, stall=stall, hold=hold)] * times)
        return self

    @property
    def url(self) -> str: return f"http://127.0.0.1:{self._port}/v1"

    def __enter__(self):
        self._release.clear()
        self._server = _StubHTTPServer(("127.0.0.1", self.port), self._handler())
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="llmrec-stub-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc): self.close()

    def close(self):
        "Stop serving and join every thread (stalled requests are released first)."
        if self._server is None: return
        self._release.set()
        with self._lock: self._lock.notify_all()
        self._server.shutdown(); self._server.server_close(); self._thread.join()
        self._server = self._thread = None

    def _handler(self):
        stub = self
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args): pass
            def do_GET(self): self._serve(None)
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try: body = json.loads(raw)
                except ValueError: return self._send(400, {"error": {"message": "the request body is not JSON"}})
                self._serve(body)
            def _send(self, status, obj=None, raw=None, headers=None):
                data = raw if raw is not None else json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    for k, v in (headers or {}).items(): self.send_header(k, v)
                    self.send_header("Content-Type", "application/json"); self.send_header("Content-Length", str(len(data)))
                    self.end_headers(); self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError): pass    # the client gave up (a timeout)
            def _serve(self, body):
                with stub._lock:
                    stub.received.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                    fault = stub._faults.popleft() if stub._faults else None
                    stub.in_flight += 1; stub.max_in_flight = max(stub.max_in_flight, stub.in_flight); stub._lock.notify_all()
                try: reply = self._reply(body, fault)
                finally:   # before the answer goes out: a client's next request cannot overlap this one
                    with stub._lock: stub.in_flight -= 1
                self._send(*reply)
            def _reply(self, body, fault):
                if stub.api_key and self.headers.get("Authorization") != f"Bearer {stub.api_key}":
                    return 401, {"error": {"message": "invalid API key"}}
                if fault:
                    if fault["hold"]:
                        with stub._lock: stub._lock.wait_for(lambda: stub.max_in_flight >= fault["hold"] or stub._release.is_set(), 5.0)
                    if fault["stall"]: stub._release.wait(fault["stall"])
                    if fault["status"] or fault["body"] is not None:
                        return (fault["status"] or 200, {"error": {"message": f"stub fault {fault['status']}"}}, fault["body"],
                                fault["headers"])
                return stub._answer(urllib.parse.urlsplit(self.path).path, body)
        return Handler

    def _answer(self, route: str, body) -> tuple[int, dict]:
        if route == "/v1/models": return 200, {"object": "list", "data": [{"id": self.model, "object": "model"}]}
        if route not in ("/v1/completions", "/v1/chat/completions") or body is None:
            return 404, {"error": {"message": f"no route {route}"}}
        if body.get("model") != self.model: return 404, {"error": {"message": f"the model {body.get('model')!r} does not exist"}}
        chat = route.endswith("chat/completions")
        if chat: prompt = body.get("messages")
        else: prompt = body.get("prompt")
        one_prompt = isinstance(prompt, str) or (isinstance(prompt, list) and prompt and all(type(t) is int for t in prompt))
        if (chat and not isinstance(prompt, list)) or (not chat and not one_prompt):
            return 400, {"error": {"message": "the stub takes one prompt (a string or token ids) or one message list per request"}}
        if self.llm is None:
            text = "ok"
            choice = {"index": 0, "logprobs": None, "finish_reason": "length"}
            choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
            return 200, {"object": "chat.completion" if chat else "text_completion", "model": self.model, "choices": [choice],
                         "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        with self._model_lock: return 200, (self._chat(body) if chat else self._completion(body))

    def _rows(self, ids: list[int], k: int = 1):
        """Per position of `ids`: the log-probability of the token that follows it in `ids` (nan at the end) and the `k`
        likeliest next tokens (ids, log-probabilities), and the last position's whole log-probability row. With k=1,
        rows of a prefix seen recently are reused: only new positions go through the output layer."""
        import torch
        from llmrec_nb.llm.transformers_engine import _accepts
        from llmrec_nb.llm.base import common_prefix as _common_prefix
        ids, k, n, start, reuse = list(ids), max(1, int(k)), len(ids), 0, None
        model = self.llm.model
        if k == 1 and _accepts(model, "logits_to_keep"):
            for entry in self._seen:
                c = _common_prefix(entry["ids"], ids)
                if c - 1 > start: start, reuse = c - 1, entry    # rows before c-1 are the same; row c-1 needs the new next token
        kw = {"logits_to_keep": n - start} if reuse is not None else {}
        with torch.inference_mode():
            logits = model(torch.tensor([ids], device=self.llm.device), **kw).logits[0].float().cpu()
        lp = logits - logits.logsumexp(-1, keepdim=True)
        topv, topi = lp.topk(min(k, lp.shape[-1]), dim=-1)
        lp_next = lp.gather(-1, torch.tensor(ids[start + 1:] + [0])[:, None])[:, 0]
        lp_next[-1] = float("nan")
        if reuse is not None:
            lp_next = torch.cat([reuse["lp_next"][:start], lp_next])
            topv, topi = torch.cat([reuse["topv"][:start], topv]), torch.cat([reuse["topi"][:start], topi])
        if k == 1: self._seen.appendleft({"ids": ids, "lp_next": lp_next, "topv": topv, "topi": topi})
        return lp_next, topv, topi, lp[-1]

    def _greedy(self, ids, max_tokens: int, k: int = 1):
        """The prompt's rows (`_rows`) and the greedy new tokens as `(token, log-probability, top-k pairs)`."""
        seq, prompt, new = list(ids), None, []
        for step in range(max(1, max_tokens)):
            lp_next, topv, topi, last = self._rows(seq)
            if prompt is None: prompt = (lp_next, topv, topi)
            nxt = int(topi[-1, 0])
            new.append((nxt, float(last[nxt]), self._pairs(last, k)))
            seq.append(nxt)
            if nxt == self.llm.tokenizer.eos_token_id: break
        return prompt, new

    def _pairs(self, row, k: int) -> list[tuple[str, float]]:
        "The `k` likeliest tokens of one log-probability row, as (text, log-probability) pairs."
        k = min(int(k or 0), row.numel(), self.top_k_max or row.numel())
        if k <= 0: return []
        v, i = row.topk(k)
        return list(zip(self.llm.tokenizer.batch_decode(i[:, None].tolist()), v.tolist()))

    def _completion(self, body) -> dict:
        from llmrec_nb.llm import encode
        tok, prompt = self.llm.tokenizer, body["prompt"]
        max_tokens, echo, k = int(body.get("max_tokens", 16)), bool(body.get("echo")), body.get("logprobs")
        ids = list(prompt) if isinstance(prompt, list) else encode(tok, [prompt])[0]
        text = tok.decode(ids) if isinstance(prompt, list) else prompt
        (lp_next, topv, topi), new = self._greedy(ids, max_tokens, int(k or 0))
        logprobs = None
        if k is not None:
            toks, lps, tops = [t for t, _, _ in new], [lp for _, lp, _ in new], [dict(p) for _, _, p in new]
            if echo:
                if int(k) > 1: _, topv, topi, _ = self._rows(ids, int(k))     # the prompt's alternatives beyond the first
                names = tok.batch_decode(topi[:-1, :int(k)].reshape(-1, 1).tolist()) if int(k) else []
                kk = int(k)
                prompt_tops = [dict(zip(names[r * kk:(r + 1) * kk], topv[r, :kk].tolist())) for r in range(len(ids) - 1)]
                toks, lps, tops = ids + toks, [None] + lp_next[:-1].tolist() + lps, [None] + prompt_tops + tops
            texts = tok.batch_decode([[t] for t in toks])
            offsets = np.cumsum([0] + [len(t) for t in texts[:-1]]).tolist()
            logprobs = {"tokens": texts, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}
        gen = tok.decode([t for t, _, _ in new], skip_special_tokens=True)
        choice = {"index": 0, "text": (text if echo else "") + gen, "logprobs": logprobs, "finish_reason": "length"}
        usage = {"prompt_tokens": len(ids), "completion_tokens": len(new), "total_tokens": len(ids) + len(new)}
        return {"object": "text_completion", "model": self.model, "choices": [choice], "usage": usage}

    def _chat(self, body) -> dict:
        from llmrec_nb.llm import encode
        tok = self.llm.tokenizer
        ids = encode(tok, [tok.apply_chat_template(body["messages"], tokenize=False, add_generation_prompt=True)])[0]
        _, new = self._greedy(ids, int(body.get("max_tokens", 16)), int(body.get("top_logprobs") or 0))
        content = [{"token": tok.decode([t]), "logprob": lp, "top_logprobs": [{"token": s, "logprob": v} for s, v in pairs]}
                   for t, lp, pairs in new]
        message = {"role": "assistant", "content": tok.decode([t for t, _, _ in new], skip_special_tokens=True)}
        return {"object": "chat.completion", "model": self.model,
                "usage": {"prompt_tokens": len(ids), "completion_tokens": len(new), "total_tokens": len(ids) + len(new)},
                "choices": [{"index": 0, "message": message, "logprobs": {"content": content} if body.get("logprobs") else None,
                             "finish_reason": "length"}]}


