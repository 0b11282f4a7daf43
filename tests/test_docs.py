"The docs site builds offline, and every page, signature, image and internal link is there."
import os, subprocess, sys
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
    if (ROOT / "figures" / "REPORT.md").exists(): assert (site / "report.html").exists()


def test_check_finds_a_broken_link_and_a_missing_signature(site, tmp_path):
    import shutil
    broken = tmp_path / "site"
    shutil.copytree(site, broken)
    page = broken / "metrics.html"
    page.write_text(page.read_text().replace("</body>", '<a href="nowhere.html">x</a><img src="gone.png"></body>')
                    .replace('<span class="nf">auc</span>', '<span class="nf">a_u_c</span>'))
    problems = docs.check(broken)
    assert any("broken link nowhere.html" in p for p in problems)
    assert any("broken image gone.png" in p for p in problems)
    assert any("metrics.auc" in p for p in problems)
