#!/usr/bin/env python
"""Build the documentation site offline, and check it.

    python tools/docs.py build [--out _docs] [--proc _proc] [--quarto auto|yes|no]
    python tools/docs.py check [--out _docs]

With a Quarto binary on PATH (`--quarto auto`), `nbdev_docs` builds the site as nbdev intends. Without one, the
site comes from nbdev's own processing of the notebooks (the step `nbdev_docs` runs before Quarto: `show_doc`
cells added and executed, directives applied) rendered by MkDocs Material. MkDocs Material was chosen over pandoc
because it gives what a docs site needs from one offline install: a sidebar with sections, full-text search,
Pygments highlighting, and Python-Markdown's attribute lists, which read the `{target=...}` attributes that
nbdev's `show_doc` output carries. pandoc renders one standalone page at a time, with no navigation or search.

Library notebooks become one page each, in notebook order, grouped by layer. Paper notebooks are not executed
(they take minutes): their page shows the notebook's prose and code, then the committed figures and tables of
`figures/<paper>/`. `figures/REPORT.md` is a page of its own.
"""
from __future__ import annotations
import argparse, configparser, json, os, re, shutil, subprocess, sys, tempfile
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# the layers of the library, in the order of CONTRIBUTING.md; a module not named here goes under "Other"
LAYERS = [
    ("Foundation", ["core", "data", "loaders", "templates"]),
    ("LLM and training", ["llm", "kernels", "served", "lora"]),
    ("Models and evaluation", ["conventional", "metrics", "stats"]),
    ("Methods", ["tallrec", "itdr", "curriculum", "mixing", "aggregation"]),
    ("Reproduction", ["reproduce", "cli", "bench"]),
]
_DIRECTIVE = re.compile(r"^\s*#\s*\|\s*([\w-]+):?\s*(.*)$")


def _config() -> configparser.SectionProxy:
    cfg = configparser.ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini", encoding="utf-8")
    return cfg["DEFAULT"]


def page_name(nb: Path) -> str:
    "`06_metrics.ipynb` → `metrics` (nbdev's own page names)."
    return re.sub(r"^\d+[a-z]?_", "", nb.stem)


def library_notebooks(nbs: Path) -> list[Path]:
    return sorted(p for p in nbs.glob("*.ipynb") if p.stem != "index")


def paper_notebooks(nbs: Path) -> list[Path]:
    return sorted((nbs / "paper").glob("*.ipynb"))


def _directives(src: str) -> tuple[dict, str]:
    "Split a code cell's leading `#| key: value` lines from its body."
    found, body = {}, []
    lines = src.splitlines()
    i = 0
    while i < len(lines) and (m := _DIRECTIVE.match(lines[i])):
        found[m.group(1)] = m.group(2).strip()
        i += 1
    body = lines[i:]
    return found, "\n".join(body).strip("\n")


def _only_docs_cells():
    """nbdev executes every cell that contains an import, so a test cell that imports and then uses a fixture of an
    earlier (unexecuted) test cell fails the docs build. Keep nbdev's rule for export, import-only and `show_doc`
    cells, and leave test cells that mix imports with other code unexecuted (nbdev itself warns about those)."""
    import ast, warnings
    import nbdev.processors as P
    if getattr(P._do_eval, "_docs_only", False): return
    original = P._do_eval
    def _do_eval(cell):
        if not original(cell): return None
        if cell.directives_.keys() & {"export", "exports", "exporti", "exec_doc"}: return True
        trees = cell.parsed_()
        if P._show_docs(trees): return True
        mixed = any(not isinstance(node, (ast.Import, ast.ImportFrom)) for node in trees)
        return None if mixed else True
    _do_eval._docs_only = True
    P._do_eval = _do_eval
    warnings.filterwarnings("ignore", message="Found cells containing imports")


def process_notebooks(nbs: Path, proc: Path) -> list[Path]:
    "Run nbdev's docs processing (`show_doc` cells added and executed) on each library notebook, one at a time."
    from nbdev.serve import _proc_file
    from nbdev import serve_drv
    _only_docs_cells()
    proc.mkdir(parents=True, exist_ok=True)
    done = []
    for nb in [nbs / "index.ipynb", *library_notebooks(nbs)]:
        job = _proc_file(nb, proc, nbs)
        dst = proc / nb.name
        if job is not None:
            try: serve_drv.main(job)
            except Exception as e:
                raise SystemExit(f"{nb.relative_to(ROOT)}: nbdev's docs processing failed: {str(e)[:1500]}")
        done.append(dst)
    return done


def _output_markdown(out: dict, assets: Path, stem: str, n: int) -> str:
    data = out.get("data", {})
    text = lambda v: "".join(v) if isinstance(v, list) else str(v)
    if out.get("output_type") == "stream": return f"```\n{text(out.get('text', '')).rstrip()}\n```"
    if out.get("output_type") == "error": return f"```\n{out.get('ename')}: {out.get('evalue')}\n```"
    if "text/markdown" in data: return text(data["text/markdown"])
    if "image/png" in data:
        import base64
        assets.mkdir(parents=True, exist_ok=True)
        (assets / f"{stem}_{n}.png").write_bytes(base64.b64decode(text(data["image/png"])))
        return f"![output](assets/{stem}_{n}.png)"
    if "text/html" in data: return text(data["text/html"])
    if "text/plain" in data: return f"```\n{text(data['text/plain']).rstrip()}\n```"
    return ""


def notebook_markdown(nb_path: Path, assets: Path, host_links: tuple[str, set]) -> tuple[str, str]:
    "A processed (or plain) notebook as one Markdown page; returns (title, markdown)."
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    stem, parts, title = page_name(nb_path), [], page_name(nb_path)
    n_out = 0
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        kind = cell["cell_type"]
        if kind == "raw":
            if m := re.search(r"^title:\s*(.+)$", src, re.M): title = m.group(1).strip()
            if m := re.search(r"^description:\s*((?:.+\n?)(?:\s{2,}.+\n?)*)", src, re.M):
                parts.append("> " + " ".join(m.group(1).split()).strip("'\""))
            continue
        if kind == "markdown":
            if "AUTOGENERATED! DO NOT EDIT" in src: continue
            parts.append(src)
            continue
        directives, body = _directives(src)
        if "hide" in directives or directives.get("include", "").lower() == "false": continue
        if "default_exp" in directives and not body: continue
        if body and directives.get("echo", "").lower() != "false": parts.append(f"```python\n{body}\n```")
        if directives.get("output", "").lower() == "false": continue
        for out in cell.get("outputs", []):
            n_out += 1
            md = _output_markdown(out, assets, stem, n_out)
            if md: parts.append(md)
    text = "\n\n".join(parts) + "\n"
    # nbdev's anchors are the documented name in lower case, dots kept (`recdata.histories`)
    text = re.sub(r"^(#{2,4}) ([A-Za-z_][\w.]*)[ \t]*$", lambda m: f"{m.group(1)} {m.group(2)} {{#{m.group(2).lower()}}}",
                  text, flags=re.M)
    return title, _local_links(text, host_links)


def constants_markdown(module: str) -> str:
    "A section listing the module's exported constants (nbdev documents only functions and classes)."
    import importlib
    mod = importlib.import_module(f"{_config().get('lib_name')}.{module}")
    rows = []
    for name in getattr(mod, "__all__", []):
        obj = getattr(mod, name)
        if callable(obj): continue
        value = repr(obj)
        value = (value if len(value) <= 160 else value[:157] + "...").replace("|", "\\|")
        rows.append(f"| <span id=\"{name.lower()}\">`{name}`</span> | `{value}` |")
    return "" if not rows else "\n\n## Exported constants\n\n| name | value |\n|---|---|\n" + "\n".join(rows) + "\n"


def _local_links(text: str, host_links: tuple[str, set]) -> str:
    "Links to the published site (`doc_host/doc_baseurl/page.html#x`) point at this site's pages."
    base, pages = host_links
    # nbdev links every backticked name it indexes, private helpers too, which have no documentation to point at
    text = re.sub(r"\[([^\]]+)\]\(" + re.escape(base) + r"/[\w-]+\.html#_[\w.]*\)", r"\1", text)
    def sub(m):
        page, anchor = m.group(1), m.group(2) or ""
        return f"{page}.md{anchor}" if page in pages else m.group(0)
    return re.sub(re.escape(base) + r"/([\w-]+)\.html(#[\w.-]+)?", sub, text)


def paper_markdown(nb_path: Path, figures: Path, site: Path, host_links) -> tuple[str, str]:
    "A paper notebook's prose and code, then the committed figures and tables it wrote."
    _, md = notebook_markdown(nb_path, site / "assets", host_links)
    paper = nb_path.stem
    title = next((l[2:].strip() for l in md.splitlines() if l.startswith("# ")), paper)
    results = figures / paper
    extra = [f"## Committed results (`figures/{paper}/`)"]
    if not results.is_dir():
        extra.append("No committed results yet: run `make reproduce` (or `llmrec reproduce --only " + paper + "`).")
    else:
        dest = site / "figures" / paper
        dest.mkdir(parents=True, exist_ok=True)
        for png in sorted(results.glob("*.png")):
            shutil.copy2(png, dest / png.name)
            pdf = png.with_suffix(".pdf")
            if pdf.exists(): shutil.copy2(pdf, dest / pdf.name)
            link = f" ([pdf](figures/{paper}/{pdf.name}))" if pdf.exists() else ""
            extra.append(f"### {png.stem}{link}\n\n![{png.stem}](figures/{paper}/{png.name})")
        for table in sorted(results.glob("*.md")):
            extra.append(f"### Table `{table.stem}`\n\n{_demote(table.read_text(encoding='utf-8'))}")
        report = figures / "REPORT.md"
        if report.exists() and re.search(rf"^## {re.escape(paper)}\s*$", report.read_text(encoding="utf-8"), re.M):
            extra.append(f"The claims tested on these results, with effects and p-values, are in the "
                         f"[reproduction report](../report.md#{paper}).")
    return title, md + "\n\n" + "\n\n".join(extra) + "\n"


def _demote(md: str) -> str:
    "Headings inside an included table file sit below the page's own."
    return re.sub(r"^(#+) ", lambda m: "#" * min(len(m.group(1)) + 3, 6) + " ", md, flags=re.M)


def _module_of(nb: Path) -> str | None:
    for cell in json.loads(nb.read_text(encoding="utf-8"))["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if m := re.search(r"^#\s*\|\s*default_exp\s+(\S+)", src, re.M): return m.group(1)
    return None


def build_mkdocs(nbs: Path, proc: Path, out: Path, figures: Path = ROOT / "figures") -> Path:
    "Write the Markdown pages and `mkdocs.yml` under `proc/site_src`, then build the site into `out`."
    cfg = _config()
    src = proc / "site_src"
    if src.exists(): shutil.rmtree(src)
    (src / "assets").mkdir(parents=True)
    libs = library_notebooks(nbs)
    pages = {page_name(p) for p in libs} | {"index"}
    host = (cfg.get("doc_host", "") + cfg.get("doc_baseurl", "")).rstrip("/")
    host_links = (host, pages)
    _, home = notebook_markdown(proc / "index.ipynb", src / "assets", host_links)
    # README-relative links (figures/..., nbs/...) resolve inside the site
    home = home.replace("](figures/REPORT.md)", "](report.md)")
    for png in re.findall(r"\]\((figures/[^)]+\.png)\)", home):
        (src / png).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / png, src / png)
    (src / "index.md").write_text(home, encoding="utf-8")
    groups: dict[str, list] = {name: [] for name, _ in LAYERS}
    groups["Other"] = []
    for nb in libs:
        title, md = notebook_markdown(proc / nb.name, src / "assets", host_links)
        module = _module_of(nb) or page_name(nb)
        if _module_of(nb): md += constants_markdown(module)
        (src / f"{page_name(nb)}.md").write_text(md, encoding="utf-8")
        layer = next((name for name, mods in LAYERS if module in mods), "Other")
        groups[layer].append({title: f"{page_name(nb)}.md"})
    papers = []
    (src / "paper").mkdir()
    for nb in paper_notebooks(nbs):
        title, md = paper_markdown(nb, figures, src / "paper", host_links)
        (src / "paper" / f"{nb.stem}.md").write_text(md, encoding="utf-8")
        papers.append({title: f"paper/{nb.stem}.md"})
    if (figures / "REPORT.md").exists():
        report = (figures / "REPORT.md").read_text(encoding="utf-8")
        (src / "report.md").write_text(report, encoding="utf-8")
    nav = [{"Home": "index.md"}] + [{k: v} for k, v in groups.items() if v] + [{"Paper notebooks": papers}]
    if (src / "report.md").exists(): nav.append({"Reproduction report": "report.md"})
    mk = {
        "site_name": cfg.get("title", "docs"), "site_description": cfg.get("description", ""),
        "docs_dir": str(src), "site_dir": str(out.resolve()), "use_directory_urls": False, "nav": nav,
        "theme": {"name": "material", "features": ["navigation.sections", "navigation.top", "search.highlight",
                                                    "content.code.copy"],
                  "font": False, "palette": {"primary": "indigo"}},
        "plugins": ["search"],
        "markdown_extensions": ["attr_list", "md_in_html", "tables", "admonition", "toc",
                                {"pymdownx.highlight": {"use_pygments": True}}, "pymdownx.superfences"],
    }
    (proc / "mkdocs.yml").write_text(json.dumps(mk, indent=1), encoding="utf-8")   # YAML is a superset of JSON
    if out.exists(): shutil.rmtree(out)
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q", "-f", str(proc / "mkdocs.yml")], check=True)
    return out


def build(out: Path, proc: Path, quarto: str = "auto") -> Path:
    nbs = ROOT / _config().get("nbs_path", "nbs")
    if quarto == "yes" or (quarto == "auto" and shutil.which("quarto")):
        subprocess.run([str(Path(sys.executable).parent / "nbdev_docs")], check=True, cwd=ROOT)
        return ROOT / _config().get("doc_path", "_docs")
    os.environ.setdefault("LLMREC_PROGRESS", "0")
    process_notebooks(nbs, proc)
    return build_mkdocs(nbs, proc, out)


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__(); self.refs, self.ids = [], set()
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a: self.ids.add(a["id"])
        if tag == "a" and a.get("href"): self.refs.append(("link", a["href"]))
        if tag == "img" and a.get("src"): self.refs.append(("image", a["src"]))


def check(out: Path, nbs: Path = ROOT / "nbs") -> list[str]:
    """Problems with a built site: a library notebook without a page, an exported name missing from its module's
    page (callables with their signature), a referenced image that does not exist, a broken internal link."""
    import importlib
    problems = []
    for nb in library_notebooks(nbs):
        page = out / f"{page_name(nb)}.html"
        if not page.exists(): problems.append(f"{nb.name}: no page {page.name}"); continue
        module = _module_of(nb)
        if not module: continue
        text = re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8"))
        mod = importlib.import_module(f"{_config().get('lib_name')}.{module}")
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if callable(obj):
                if not re.search(rf"(def|class) {re.escape(name)}\b", text):
                    problems.append(f"{page.name}: no signature of {module}.{name}")
            elif not re.search(rf"\b{re.escape(name)}\b", text):
                problems.append(f"{page.name}: {module}.{name} is not mentioned")
    parsed = {}
    for page in out.rglob("*.html"):
        if page.name == "404.html": continue     # MkDocs writes it with root-absolute links for any depth
        p = _Refs(); p.feed(page.read_text(encoding="utf-8")); parsed[page.resolve()] = p
    for page, p in parsed.items():
        for kind, ref in p.refs:
            if re.match(r"^[a-z]+:", ref) or ref.startswith("//"): continue    # external (http:, mailto:, data:)
            path, _, anchor = ref.partition("#")
            target = (page.parent / path).resolve() if path else page
            if target.is_dir(): target = target / "index.html"
            rel = page.relative_to(out.resolve())
            if not target.exists(): problems.append(f"{rel}: broken {kind} {ref}"); continue
            if anchor and target.suffix == ".html" and target in parsed and anchor not in parsed[target].ids:
                problems.append(f"{rel}: link {ref} names a missing anchor")
    return problems


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["build", "check"])
    ap.add_argument("--out", type=Path, default=ROOT / "_docs")
    ap.add_argument("--proc", type=Path, default=ROOT / "_proc")
    ap.add_argument("--quarto", choices=["auto", "yes", "no"], default="auto")
    ap.add_argument("--no-check", action="store_true", help="build only")
    a = ap.parse_args(argv)
    if a.command == "build":
        site = build(a.out, a.proc, a.quarto)
        print(f"site written to {site}")
        if a.no_check: return
    problems = check(a.out)
    for p in problems: print(p)
    if problems: sys.exit(f"{len(problems)} problem(s) in the site at {a.out}")
    print(f"site at {a.out} checked: every library notebook has a page, no missing signature, image or link")


if __name__ == "__main__":
    main()
