#!/usr/bin/env python
"""Build the documentation site offline, and check it.

    python tools/docs.py build [--out _docs] [--proc _proc] [--quarto no|auto|yes]
    python tools/docs.py check [--out _docs]

The site comes from nbdev's own processing of the notebooks (the step `nbdev_docs` runs before Quarto: `show_doc`
cells added and executed, directives applied) rendered by MkDocs Material. `--quarto yes` (or `auto`, with a
Quarto binary on PATH) runs `nbdev_docs` instead; that site lacks the guides under `docs/`, and `nbdev_docs` run
without Quarto on PATH tries to install Quarto with sudo and the project with the first `pip` on PATH, so it is
never the default. MkDocs Material was chosen over pandoc because it gives what a docs site needs from one
offline install: a sidebar with sections, full-text search, Pygments highlighting, and Python-Markdown's attribute
lists, which read the `{target=...}` attributes that nbdev's `show_doc` output carries. pandoc renders one
standalone page at a time, with no navigation or search.

The home page is `nbs/index.ipynb` (the README's source) and the guides are the Markdown pages under `docs/`; the
links these pages make for the repository (`figures/REPORT.md`, `nbs/...ipynb`, `docs/...md`, images) point at
the site's own pages and copies, and links to other repository files at the repository online. LaTeX between `$`
signs is typeset by MathJax when the `django-static-mathjax` wheel (a copy of MathJax 3) is installed: the site
serves that copy itself, so it needs no network.

Library notebooks become one page each, in notebook order, grouped by topic. Paper notebooks are not executed
(they take minutes): their page shows the notebook's prose and code, then the committed figures and tables of
`figures/<paper>/`. `figures/REPORT.md` is a page of its own.
"""
from __future__ import annotations
import argparse, configparser, importlib.util, json, os, posixpath, re, shutil, subprocess, sys, tempfile
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# the sidebar's sections of library pages, by topic (the import order of the modules is `core.LAYERS`); a module
# not named here goes under "Other"
SECTIONS = [
    ("Foundation", ["core", "runs", "data", "loaders", "templates", "grounding"]),
    ("LLM and training", ["llm.base", "llm.kernels", "llm.loading", "llm.transformers_engine", "llm.vllm_engine",
                          "llm.served", "llm.scoring", "lora"]),
    ("Models and evaluation", ["conventional", "metrics", "stats", "report"]),
    ("Methods", ["tallrec", "itdr", "curriculum", "soft", "mixing", "molorec", "aggregation", "llama4rec", "baselines"]),
    ("Reproduction", ["reproduce", "cli", "bench"]),
]
_DIRECTIVE = re.compile(r"^\s*#\s*\|\s*([\w-]+):?\s*(.*)$")
GUIDES = ROOT / "docs"
# figures/REPORT.md's page: `report.md` is the page of the `report` module's notebook
REPORT_PAGE = "reproduction-report.md"
# the guides in reading order; a guide not named here follows in name order
GUIDE_ORDER = ["library", "your-data", "gpu", "vllm", "benchmarks"]


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


def front_matter(src: str) -> dict:
    """The YAML front matter (`---` ... `---`) of a raw cell, parsed: nbdev writes it with YAML's escapes and folded
    lines (`\\xD7` for ×), which only a YAML parser reads back as the text it was."""
    import yaml
    m = re.match(r"\s*---[ \t]*\n(.*?)\n---[ \t]*(\n|$)", src, re.S)
    if not m: return {}
    try: meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError: return {}
    return meta if isinstance(meta, dict) else {}


def notebook_markdown(nb_path: Path, assets: Path, host_links: tuple[str, set]) -> tuple[str, str]:
    "A processed (or plain) notebook as one Markdown page; returns (title, markdown)."
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    stem, parts, title = page_name(nb_path), [], page_name(nb_path)
    n_out = 0
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        kind = cell["cell_type"]
        if kind == "raw":
            meta = front_matter(src)
            if meta.get("title"): title = str(meta["title"]).strip()
            if meta.get("description"): parts.append("> " + " ".join(str(meta["description"]).split()))
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
                         f"[reproduction report](../{REPORT_PAGE}#{paper}).")
    return title, md + "\n\n" + "\n\n".join(extra) + "\n"


def _demote(md: str) -> str:
    "Headings inside an included table file sit below the page's own."
    return re.sub(r"^(#+) ", lambda m: "#" * min(len(m.group(1)) + 3, 6) + " ", md, flags=re.M)


def _module_of(nb: Path) -> str | None:
    for cell in json.loads(nb.read_text(encoding="utf-8"))["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if m := re.search(r"^#\s*\|\s*default_exp\s+(\S+)", src, re.M): return m.group(1)
    return None


def site_pages(nbs: Path, figures: Path, guides: Path) -> dict[str, str]:
    "{repository path: site page} for every page the site builds from a repository file."
    pages = {"README.md": "index.md", "nbs/index.ipynb": "index.md"}
    if (figures / "REPORT.md").exists(): pages["figures/REPORT.md"] = REPORT_PAGE
    for nb in library_notebooks(nbs): pages[f"nbs/{nb.name}"] = f"{page_name(nb)}.md"
    for nb in paper_notebooks(nbs):
        pages[f"nbs/paper/{nb.name}"] = pages[f"figures/{nb.stem}"] = f"paper/{nb.stem}.md"
    for md in sorted(guides.glob("*.md")): pages[f"docs/{md.name}"] = f"docs/{md.name}"
    return pages


def repository_links(md: str, page: str, src: Path, pages: dict[str, str]) -> str:
    """Point the relative links of `md`, a page written for the repository at path `page` (the README, a guide), at
    the site: a file with a page of its own at that page, an image at a copy under `src`, any other existing file or
    folder at the repository online. Links to nothing are left alone, for `check` to report."""
    cfg = _config()
    online = f"{cfg.get('git_url', '').rstrip('/')}/{{kind}}/{cfg.get('branch', 'main')}/{{path}}"
    here = posixpath.dirname(pages[page])
    def target(m):
        ref = m.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", ref) or ref.startswith(("#", "/")): return m.group(0)
        path, hash_, anchor = ref.partition("#")
        repo_path = posixpath.normpath(posixpath.join(posixpath.dirname(page), path))
        file = ROOT / repo_path
        if repo_path in pages: site = pages[repo_path]
        elif file.is_file() and file.suffix.lower() in (".png", ".svg", ".jpg", ".jpeg", ".gif", ".pdf"):
            (src / repo_path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, src / repo_path)
            site = repo_path
        elif file.exists():
            return "](" + online.format(kind="tree" if file.is_dir() else "blob", path=repo_path) + hash_ + anchor + ")"
        else: return m.group(0)
        return "](" + posixpath.relpath(site, here or ".") + hash_ + anchor + ")"
    # fenced code is left as it is
    parts = re.split(r"(^```.*?^```[ \t]*$)", md, flags=re.M | re.S)
    return "".join(p if i % 2 else re.sub(r"\]\(([^)\s]+)\)", target, p) for i, p in enumerate(parts))


def guide_pages(guides: Path) -> list[Path]:
    "The Markdown guides under `guides`, in `GUIDE_ORDER` and then by name."
    rank = {name: i for i, name in enumerate(GUIDE_ORDER)}
    return sorted(guides.glob("*.md"), key=lambda p: (rank.get(p.stem, len(rank)), p.stem))


def mathjax_folder() -> Path | None:
    "The `es5` folder of the MathJax 3 copy that the `django-static-mathjax` wheel ships, when it is installed."
    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.origin: return None
    es5 = Path(spec.origin).parent / "static" / "mathjax" / "es5"
    return es5 if (es5 / "tex-chtml-full.js").exists() else None


# arithmatex's generic mode leaves math as \( \) and \[ \] inside elements of class `arithmatex`
MATHJAX_CONFIG = """window.MathJax = {
  tex: {inlineMath: [["\\\\(", "\\\\)"]], displayMath: [["\\\\[", "\\\\]"]], processEscapes: true, processEnvironments: true},
  options: {ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex"}
};
"""


def add_mathjax(src: Path) -> list[str]:
    "Copy MathJax (the TeX input, HTML output and its fonts) into the site; returns the scripts to load, in order."
    es5 = mathjax_folder()
    if es5 is None:
        print("django-static-mathjax is not installed: LaTeX stays as written (pip install django-static-mathjax)")
        return []
    dest = src / "assets" / "mathjax"
    fonts = "output/chtml/fonts/woff-v2"
    shutil.copytree(es5 / fonts, dest / fonts)
    shutil.copy2(es5 / "tex-chtml-full.js", dest / "tex-chtml-full.js")
    (src / "assets" / "mathjax-config.js").write_text(MATHJAX_CONFIG, encoding="utf-8")
    return ["assets/mathjax-config.js", "assets/mathjax/tex-chtml-full.js"]


def build_mkdocs(nbs: Path, proc: Path, out: Path, figures: Path = ROOT / "figures", guides: Path = GUIDES) -> Path:
    "Write the Markdown pages and `mkdocs.yml` under `proc/site_src`, then build the site into `out`."
    cfg = _config()
    src = proc / "site_src"
    if src.exists(): shutil.rmtree(src)
    (src / "assets").mkdir(parents=True)
    libs = library_notebooks(nbs)
    pages = {page_name(p) for p in libs} | {"index"}
    host = (cfg.get("doc_host", "") + cfg.get("doc_baseurl", "")).rstrip("/")
    host_links = (host, pages)
    repo_pages = site_pages(nbs, figures, guides)
    _, home = notebook_markdown(proc / "index.ipynb", src / "assets", host_links)
    (src / "index.md").write_text(repository_links(home, "README.md", src, repo_pages), encoding="utf-8")
    guide_nav = []
    (src / "docs").mkdir()
    for md in guide_pages(guides):
        text = md.read_text(encoding="utf-8")
        title = next((l[2:].strip() for l in text.splitlines() if l.startswith("# ")), md.stem)
        (src / "docs" / md.name).write_text(repository_links(text, f"docs/{md.name}", src, repo_pages), encoding="utf-8")
        guide_nav.append({title: f"docs/{md.name}"})
    groups: dict[str, list] = {name: [] for name, _ in SECTIONS}
    groups["Other"] = []
    for nb in libs:
        title, md = notebook_markdown(proc / nb.name, src / "assets", host_links)
        module = _module_of(nb) or page_name(nb)
        if _module_of(nb): md += constants_markdown(module)
        (src / f"{page_name(nb)}.md").write_text(md, encoding="utf-8")
        section = next((name for name, mods in SECTIONS if module in mods), "Other")
        groups[section].append({title: f"{page_name(nb)}.md"})
    papers = []
    (src / "paper").mkdir()
    for nb in paper_notebooks(nbs):
        title, md = paper_markdown(nb, figures, src / "paper", host_links)
        (src / "paper" / f"{nb.stem}.md").write_text(md, encoding="utf-8")
        papers.append({title: f"paper/{nb.stem}.md"})
    if (figures / "REPORT.md").exists():
        report = (figures / "REPORT.md").read_text(encoding="utf-8")
        (src / REPORT_PAGE).write_text(repository_links(report, "figures/REPORT.md", src, repo_pages), encoding="utf-8")
    nav = [{"Home": "index.md"}] + ([{"Guides": guide_nav}] if guide_nav else [])
    nav += [{k: v} for k, v in groups.items() if v] + [{"Paper notebooks": papers}]
    if (src / REPORT_PAGE).exists(): nav.append({"Reproduction report": REPORT_PAGE})
    scripts = add_mathjax(src)
    extensions = ["attr_list", "md_in_html", "tables", "admonition", "toc",
                  {"pymdownx.highlight": {"use_pygments": True}}, "pymdownx.superfences"]
    if scripts: extensions.append({"pymdownx.arithmatex": {"generic": True}})
    mk = {
        "site_name": cfg.get("title", "docs"), "site_description": cfg.get("description", ""),
        "docs_dir": str(src), "site_dir": str(out.resolve()), "use_directory_urls": False, "nav": nav,
        "theme": {"name": "material", "features": ["navigation.sections", "navigation.top", "search.highlight",
                                                    "content.code.copy"],
                  "font": False, "palette": {"primary": "indigo"}},
        "plugins": ["search"],
        "markdown_extensions": extensions,
        "extra_javascript": scripts,
    }
    (proc / "mkdocs.yml").write_text(json.dumps(mk, indent=1), encoding="utf-8")   # YAML is a superset of JSON
    if out.exists(): shutil.rmtree(out)
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q", "-f", str(proc / "mkdocs.yml")], check=True)
    return out


def build(out: Path, proc: Path, quarto: str = "no") -> Path:
    nbs = ROOT / _config().get("nbs_path", "nbs")
    if quarto == "yes" or (quarto == "auto" and shutil.which("quarto")):
        if not shutil.which("quarto"): raise SystemExit("--quarto yes: no quarto binary on PATH")
        readme = (ROOT / "README.md").read_bytes()
        try: subprocess.run([str(Path(sys.executable).parent / "nbdev_docs")], check=True, cwd=ROOT)
        finally: (ROOT / "README.md").write_bytes(readme)   # nbdev_docs rewrites it with Quarto; tools/readme.py owns it
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
        if tag == "script" and a.get("src"): self.refs.append(("script", a["src"]))


def check(out: Path, nbs: Path = ROOT / "nbs") -> list[str]:
    """Problems with a built site: a library notebook without a page, an exported name missing from its module's
    page (callables with their signature), a referenced image or script that does not exist, a broken internal link."""
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
    ap.add_argument("--quarto", choices=["no", "auto", "yes"], default="no",
                    help="yes: nbdev_docs and Quarto (no guides); auto: that where a quarto binary is on PATH")
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
