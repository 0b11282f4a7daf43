"The docs site builds offline with every page, signature, image and link; the README and the guides under docs/ hold up."
import os, re, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import docs  # noqa: E402


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("docs")
    env = {**os.environ, "LLMREC_PROGRESS": "0", "NO_MKDOCS_2_WARNING": "1"}
    subprocess.run([sys.executable, str(ROOT / "tools" / "docs.py"), "build", "--quarto", "no", "--out", str(tmp / "site"),
                    "--proc", str(tmp / "proc"), "--no-check"], check=True, env=env, cwd=ROOT, capture_output=True, timeout=900)
    return tmp / "site"


def test_site_has_no_missing_page_signature_image_or_link(site):
    assert docs.check(site) == []


def test_site_has_the_home_page_paper_pages_and_report(site):
    assert (site / "index.html").exists() and (site / "search" / "search_index.json").exists()
    for nb in docs.paper_notebooks(ROOT / "nbs"):
        page = (site / "paper" / f"{nb.stem}.html").read_text()
        if (ROOT / "figures" / nb.stem).is_dir():
            assert "Committed results" in page
            assert all(f"figures/{nb.stem}/{png.name}" in page for png in (ROOT / "figures" / nb.stem).glob("*.png"))
    if (ROOT / "figures" / "REPORT.md").exists(): assert (site / docs.REPORT_PAGE.replace(".md", ".html")).exists()


def test_check_finds_a_broken_link_and_a_missing_signature(site, tmp_path):
    import shutil
    broken = tmp_path / "site"
    shutil.copytree(site, broken)
    page = broken / "metrics.html"
    page.write_text(page.read_text().replace("</body>", '<a href="nowhere.html">x</a><img src="gone.png"></body>')
                    .replace('<span class="nf">auc</span>', '<span class="nf">a_u_c</span>')
                    .replace("</head>", '<script src="assets/gone.js"></script></head>'))
    problems = docs.check(broken)
    assert any("broken link nowhere.html" in p for p in problems)
    assert any("broken image gone.png" in p for p in problems)
    assert any("metrics.auc" in p for p in problems)
    assert any("broken script assets/gone.js" in p for p in problems)


# ---- the README (written from nbs/index.ipynb) and the guides under docs/

README = ROOT / "README.md"
GUIDES = sorted((ROOT / "docs").glob("*.md"))


def fenced(md: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", md, flags=re.M | re.S)


def relative_links(md: str) -> list[str]:
    text = re.sub(r"^```.*?^```", "", md, flags=re.M | re.S)
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"^[a-z]+:|#", t)]


def test_readme_is_a_short_front_door():
    text = README.read_text()
    assert len(text) < 8000, f"README.md has {len(text)} characters: details belong in docs/"
    for command in ("make reproduce", "make test", "make docs"):
        assert command in text
    assert text.count("on 2 CPU cores") >= 2 and "in seconds" not in text
    assert re.search(r"!\[[^\]]+\]\(figures/[\w/.-]+\.png\)", text) and "figures/REPORT.md" in text
    for var in ("LLMREC_CACHE", "LLMREC_FIGURES", "LLMREC_PROGRESS", "LLMREC_ISA", "LLMREC_FAST_CPU"):
        assert f"`{var}`" in text
    assert "`LLMREC_SLOW=1`" in text
    cite = text[text.index("## Citing"):]
    for paper in ("TALLRec", "ITDR", "SOFT", "MoLoRec", "Llama4Rec"):
        assert f"**{paper}**" in cite
    assert {f"docs/{g.name}" for g in GUIDES} <= set(relative_links(text)), "every guide is linked from the README"


@pytest.mark.parametrize("page", [README, *GUIDES], ids=lambda p: p.name)
def test_relative_links_name_existing_files(page):
    missing = [t for t in relative_links(page.read_text()) if not (page.parent / t.partition("#")[0]).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


@pytest.mark.parametrize("page", [README, *GUIDES], ids=lambda p: p.name)
def test_example_reproduce_commands_keep_off_the_committed_figures(page):
    commands = [l for block in fenced(page.read_text(), "sh") for l in block.splitlines() if "llmrec reproduce" in l]
    assert all("--out runs/" in l for l in commands), f"{page.name}: `llmrec reproduce` without --out runs/... writes into figures/"


def readme_python() -> str:
    blocks = fenced(README.read_text(), "python")
    assert len(blocks) == 1, "the README has one Python example"
    return blocks[0]


def test_readme_python_example_calls_existing_names_with_valid_arguments():
    "Every dotted name the example takes from an imported module exists and each call binds to its signature."
    import ast, importlib, inspect
    tree = ast.parse(readme_python())
    modules = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for a in node.names: modules[a.asname or a.name] = importlib.import_module(f"{node.module}.{a.name}")
    assert modules, "the example imports from llmrec_nb"
    def resolve(node):
        if isinstance(node, ast.Name): return modules.get(node.id)
        if isinstance(node, ast.Attribute) and (owner := resolve(node.value)) is not None:
            assert hasattr(owner, node.attr), f"{ast.unparse(node)} does not exist"
            return getattr(owner, node.attr)
        return None
    calls = 0
    for node in ast.walk(tree):
        target = resolve(node.func) if isinstance(node, ast.Call) else None
        if callable(target):
            inspect.signature(target).bind(*node.args, **{k.arg: k.value for k in node.keywords})
            calls += 1
        elif isinstance(node, ast.Attribute): resolve(node)
    assert calls >= 4
    for profile in re.findall(r"from_profile\(\"(\w+)\"", readme_python()):
        modules["soft"].Config.from_profile(profile)     # the profile exists and fits the settings


@pytest.mark.skipif(not os.environ.get("LLMREC_SLOW"), reason="slow: set LLMREC_SLOW=1 (minutes on 2 cores)")
def test_readme_python_example_runs_at_smoke_size(tmp_path, monkeypatch):
    code = readme_python().replace('from_profile("quick")', 'from_profile("smoke")')
    code = code.replace("soft.run(cfg)", f"soft.run(cfg, work_dir={str(tmp_path / 'work')!r})")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "runs" / "my-soft" / "summary.json").exists()


def test_front_matter_is_read_as_yaml():
    raw = ('---\ndescription: "TALLRec: few-shot LoRA tuning\\\n  \\ and the train-domain\\\n  \\ \\xD7 test-domain grid."\n'
           'title: tallrec\n\n---\n\n')
    meta = docs.front_matter(raw)
    assert meta == {"description": "TALLRec: few-shot LoRA tuning and the train-domain × test-domain grid.", "title": "tallrec"}
    assert docs.front_matter("no front matter") == {}


def test_repository_links_point_into_the_site(tmp_path):
    pages = docs.site_pages(ROOT / "nbs", ROOT / "figures", ROOT / "docs")
    md = ("[r](figures/REPORT.md#tallrec) [n](nbs/10_tallrec.ipynb) [p](nbs/paper/soft.ipynb) [f](figures/soft/) "
          "![i](figures/tallrec/auc_vs_k.png) [c](CONTRIBUTING.md) [x](no/such/file.md) [w](https://example.org)\n\n"
          "```sh\n[kept](figures/REPORT.md)\n```\n")
    out = docs.repository_links(md, "README.md", tmp_path, pages)
    assert f"[r]({docs.REPORT_PAGE}#tallrec) [n](tallrec.md) [p](paper/soft.md) [f](paper/soft.md)" in out
    assert "![i](figures/tallrec/auc_vs_k.png)" in out and (tmp_path / "figures" / "tallrec" / "auc_vs_k.png").exists()
    assert "[c](https://github.com/llmrec-nb/llmrec_nb/blob/main/CONTRIBUTING.md)" in out
    assert "[x](no/such/file.md) [w](https://example.org)" in out and "[kept](figures/REPORT.md)" in out
    pages["docs/a.md"] = "docs/a.md"
    assert docs.repository_links("[g](gpu.md) [h](../README.md) [m](../nbs/06_metrics.ipynb)", "docs/a.md", tmp_path, pages) == \
        "[g](gpu.md) [h](../index.md) [m](../metrics.md)"


def test_site_has_the_guides_a_clean_description_and_typeset_math(site):
    for guide in GUIDES: assert (site / "docs" / guide.name.replace(".md", ".html")).exists()
    home = (site / "index.html").read_text()
    intro = next(l for l in README.read_text().splitlines() if l and not l.startswith(("<!--", "#", ">")))
    assert " ".join(intro.split()[:6]) in home, "the home page keeps the README's first paragraph"
    assert all(f'href="docs/{g.stem}.html"' in home for g in GUIDES)
    tallrec = (site / "tallrec.html").read_text()
    assert "train-domain × test-domain" in tallrec and "\\xD7" not in tallrec and "\\ \\ " not in tallrec
    if docs.mathjax_folder() is None: pytest.skip("django-static-mathjax is not installed: no MathJax in the site")
    assert '<span class="arithmatex">\\(i \\ge 10\\)</span>' in tallrec
    assert 'src="assets/mathjax/tex-chtml-full.js"' in tallrec
    assert (site / "assets" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2" / "MathJax_Main-Regular.woff").exists()


def library_examples() -> list[str]:
    return fenced((ROOT / "docs" / "library.md").read_text(), "python")


def test_every_paper_has_a_python_example_that_binds():
    "docs/library.md has one example per paper; every name it uses exists and every call binds to its signature."
    import ast, importlib, inspect
    examples = library_examples()
    papers = [re.search(r"from llmrec_nb import (\w+)", e).group(1) for e in examples]
    assert sorted(papers) == ["itdr", "llama4rec", "molorec", "soft", "tallrec"], papers
    for code, paper in zip(examples, papers):
        assert len(code.strip().splitlines()) <= 10, f"the {paper} example is over 10 lines"
        module = importlib.import_module(f"llmrec_nb.{paper}")
        tree, calls = ast.parse(code), 0
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                target = None
                if isinstance(owner, ast.Name) and owner.id == paper: target = getattr(module, node.func.attr)
                elif isinstance(owner, ast.Attribute) and isinstance(owner.value, ast.Name) and owner.value.id == paper:
                    target = getattr(getattr(module, owner.attr), node.func.attr)
                if target is not None:
                    inspect.signature(target).bind(*node.args, **{k.arg: k.value for k in node.keywords})
                    calls += 1
        assert calls >= 3, paper
        for profile in re.findall(r'from_profile\("(\w+)"', code): module.Config.from_profile(profile)
