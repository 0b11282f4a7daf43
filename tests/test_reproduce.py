"""The smoke profile end to end: every paper notebook runs, writes its summary and the report gathers the claims."""
import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
LLMREC = [str(Path(sys.executable).parent / "llmrec")]


def run_cli(*args, **kw):
    return subprocess.run([*LLMREC, *args], capture_output=True, text=True, cwd=ROOT, **kw)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    runs = tmp_path_factory.mktemp("runs")
    res = run_cli("reproduce", "--profile", "smoke", "--out", str(out), "--runs", str(runs), timeout=1200)
    return res, out


def test_smoke_profile_runs_every_paper_notebook(smoke):
    res, out = smoke
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    papers = sorted(p.stem for p in (ROOT / "nbs" / "paper").glob("*.ipynb"))
    assert papers, "no paper notebooks"
    for paper in papers:
        s = json.loads((out / paper / "summary.json").read_text())
        assert set(s) >= {"paper", "profile", "tables", "claims"}
        assert s["paper"] == paper and s["profile"] == "smoke"
        assert s["tables"] and all(isinstance(rows, list) and rows for rows in s["tables"].values())
        for c in s["claims"]:
            assert set(c) >= {"id", "text", "holds", "effect", "p"} and isinstance(c["holds"], bool)
        for fig in s.get("figures", []):
            assert (out / paper / f"{fig}.png").stat().st_size > 1000 and (out / paper / f"{fig}.pdf").exists()
        m = json.loads((out / paper / "manifest.json").read_text())
        assert m["params"]["profile"] == "smoke" and m["params_hash"] and m["wall_seconds"] is not None


def test_report_lists_every_claim(smoke):
    res, out = smoke
    report = (out / "REPORT.md").read_text()
    for s in out.glob("*/summary.json"):
        for c in json.loads(s.read_text())["claims"]:
            assert f"`{c['id']}`" in report


def test_unknown_profile_and_notebook_are_clear_errors(tmp_path):
    res = run_cli("reproduce", "--profile", "nope", "--out", str(tmp_path))
    assert res.returncode == 2 and "unknown profile 'nope'" in res.stderr
    res = run_cli("reproduce", "--profile", "smoke", "--only", "nope", "--out", str(tmp_path))
    assert res.returncode == 2 and "no paper notebook named nope" in res.stderr


def test_failing_notebook_is_reported_and_others_run(tmp_path):
    import nbformat
    from llmrec_nb.reproduce import run_papers
    nbs = tmp_path / "nbs"; nbs.mkdir()
    for name, body in (("good", "r = PaperReport('good', profile, out_dir)\nr.claim('c', 'ok', True, 1.0, 0.01)\nr.save()"),
                       ("bad", "raise ValueError('planted failure')")):
        nb = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell('profile = "quick"\nout_dir = None'); params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbformat.v4.new_code_cell("from llmrec_nb.reproduce import PaperReport\n" + body)]
        nbformat.write(nb, nbs / f"{name}.ipynb")
    (tmp_path / "p.yaml").write_text("common: {}\n")
    runs = run_papers(str(tmp_path / "p.yaml"), out=tmp_path / "out", runs_dir=tmp_path / "runs", nbs_dir=nbs, verbose=False)
    by_name = {r.name: r for r in runs}
    assert by_name["good"].ok and not by_name["bad"].ok and "planted failure" in by_name["bad"].error
    report = (tmp_path / "out" / "REPORT.md").read_text()
    assert "failed: bad" in report and "`c`" in report
