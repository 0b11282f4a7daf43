#!/usr/bin/env python
"""Open the built docs site and JupyterLab in headless Chromium, the way a reader would.

    python tools/browser_check.py [--site _docs] [--shots runs/browser] [--no-lab]

Every page of the site is served on 127.0.0.1 and loaded; a console error, an uncaught page error, a failed request
or an image that does not load fails the check. Screenshots of the home page, one API page and one paper page are
saved under `--shots`. Then JupyterLab is started on `nbs/` (token, free port), one paper notebook is opened and
screenshotted, and the server is shut down.
"""
from __future__ import annotations
import argparse, contextlib, functools, http.server, os, shutil, socket, subprocess, sys, threading, time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name): return path
    sys.exit("no Chromium on PATH: install Debian's `chromium` package (make docs-check does)")


@contextlib.contextmanager
def serve(folder: Path):
    "Serve `folder` on a free localhost port for the length of the block."
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True); thread.start()
    try: yield f"http://127.0.0.1:{server.server_address[1]}"
    finally: server.shutdown(); server.server_close()


@contextlib.contextmanager
def jupyter_lab(notebook_dir: Path, token: str = "llmrec-check"):
    "A JupyterLab server on a free localhost port (root allowed, no browser); stopped, with its kernels, at the end."
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--allow-root", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebook_dir}",
           "--ServerApp.open_browser=False", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2); break
            except OSError:
                if time.time() > deadline: raise RuntimeError("jupyter lab did not answer within 90 s")
                time.sleep(0.5)
        yield url, token
    finally:
        with contextlib.suppress(OSError):
            req = urllib.request.Request(f"{url}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(req, timeout=5)
        try: proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9); proc.wait()


def check_site(page, base: str, site: Path, shots: Path) -> list[str]:
    problems = []
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if p.name != "404.html")
    for rel in pages:
        errors = []
        on_console = lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None
        on_error = lambda e: errors.append(f"page error: {e}")
        # a request cut short by the next navigation (net::ERR_ABORTED) is not a failure of the page
        on_failed = lambda r: None if "ERR_ABORTED" in (r.failure or "") else errors.append(f"request failed: {r.url} ({r.failure})")
        page.on("console", on_console); page.on("pageerror", on_error); page.on("requestfailed", on_failed)
        page.goto(f"{base}/{rel}", wait_until="load")
        broken = page.evaluate("() => Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        errors += [f"image did not load: {src}" for src in broken]
        page.remove_listener("console", on_console); page.remove_listener("pageerror", on_error)
        page.remove_listener("requestfailed", on_failed)
        problems += [f"{rel}: {e}" for e in errors]
    for name, rel in [("docs_home", "index.html"), ("docs_api_lora", "lora.html"), ("docs_paper_tallrec", "paper/tallrec.html")]:
        if (site / rel).exists():
            page.goto(f"{base}/{rel}", wait_until="load")
            page.screenshot(path=str(shots / f"{name}.png"), full_page=False)
    print(f"{len(pages)} pages loaded")
    return problems


def check_lab(page, shots: Path, notebook: str = "paper/tallrec.ipynb") -> list[str]:
    with jupyter_lab(ROOT / "nbs") as (url, token):
        page.goto(f"{url}/lab/tree/{notebook}?token={token}", wait_until="load")
        try:
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            page.wait_for_timeout(1500)
        except Exception as e:
            page.screenshot(path=str(shots / "jupyterlab.png"))
            return [f"JupyterLab did not show {notebook}: {e}"]
        page.screenshot(path=str(shots / "jupyterlab.png"))
        n = page.locator(".jp-Notebook .jp-Cell").count()
        print(f"JupyterLab opened {notebook} ({n} cells)")
    return []


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", type=Path, default=ROOT / "_docs")
    ap.add_argument("--shots", type=Path, default=ROOT / "runs" / "browser")
    ap.add_argument("--no-lab", action="store_true")
    a = ap.parse_args(argv)
    if not (a.site / "index.html").exists(): sys.exit(f"{a.site}: no built site (run make docs)")
    from playwright.sync_api import sync_playwright
    a.shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        with serve(a.site) as base: problems = check_site(page, base, a.site, a.shots)
        if not a.no_lab: problems += check_lab(page, a.shots)
        browser.close()
    for p_ in problems: print(p_)
    print(f"screenshots in {a.shots}")
    if problems: sys.exit(f"{len(problems)} problem(s) in the browser check")


if __name__ == "__main__":
    main()
