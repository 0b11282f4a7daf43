"JupyterLab, as a user starts it: it serves the notebooks and its kernel imports the library."
import asyncio, json, subprocess, sys, urllib.request, uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from browser_check import jupyter_lab  # noqa: E402


def _get(url: str):
    return json.load(urllib.request.urlopen(url, timeout=30))


async def _execute(ws_url: str, code: str, timeout: float = 120) -> tuple[str, str]:
    "Run `code` on a kernel through the server's websocket; (execute_reply status, stdout)."
    from tornado.websocket import websocket_connect
    ws = await websocket_connect(ws_url)
    msg_id, out = uuid.uuid4().hex, []
    ws.write_message(json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": "execute_request",
                   "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False}}))
    async def replies():
        while True:
            msg = json.loads(await ws.read_message())
            if msg.get("parent_header", {}).get("msg_id") != msg_id: continue
            if msg["msg_type"] == "stream": out.append(msg["content"]["text"])
            if msg["msg_type"] == "error": out.append(msg["content"]["evalue"])
            if msg["msg_type"] == "execute_reply": return msg["content"]["status"]
    try: status = await asyncio.wait_for(replies(), timeout)
    finally: ws.close()
    return status, "".join(out)


def test_jupyterlab_serves_the_notebooks_and_runs_the_library():
    with jupyter_lab(ROOT / "nbs") as (url, token):
        top = {c["name"] for c in _get(f"{url}/api/contents?token={token}")["content"]}
        library = {p.name for p in (ROOT / "nbs").glob("*.ipynb")}
        assert library <= top, f"missing from JupyterLab: {sorted(library - top)}"
        papers = {c["name"] for c in _get(f"{url}/api/contents/paper?token={token}")["content"]}
        assert {p.name for p in (ROOT / "nbs" / "paper").glob("*.ipynb")} <= papers
        assert urllib.request.urlopen(f"{url}/lab?token={token}", timeout=30).status == 200
        req = urllib.request.Request(f"{url}/api/kernels?token={token}", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
        kernel = json.load(urllib.request.urlopen(req, timeout=60))
        ws_url = f"{url.replace('http', 'ws')}/api/kernels/{kernel['id']}/channels?token={token}"
        status, out = asyncio.run(_execute(ws_url, "import llmrec_nb, llmrec_nb.data; print(llmrec_nb.__version__)"))
        assert status == "ok", out
        import llmrec_nb
        assert out.strip() == llmrec_nb.__version__
    # the server shut its kernel down with it: no process is left holding the kernel's connection file
    left = subprocess.run(["pgrep", "-f", f"kernel-{kernel['id']}"], capture_output=True, text=True).stdout.split()
    assert not left, f"kernel processes left behind: {left}"
