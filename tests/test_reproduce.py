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
        assert all(isinstance(rows, list) for rows in s["tables"].values())
        assert any(s["tables"].values()), f"{paper}: every table is empty"
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


def test_data_stats_json_for_bundled_ml100k():
    res = run_cli("data", "stats", "ml-100k", "--json")
    assert res.returncode == 0, res.stderr
    stats = json.loads(res.stdout)
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100000)
    assert abs(stats["density"] - 100000 / (943 * 1682)) < 1e-12


def test_data_stats_reads_official_files_and_reports_bad_lines(tmp_path):
    good = tmp_path / "ml"; good.mkdir()
    (good / "u.data").write_text("1\t10\t4\t881250949\n2\t10\t2\t881250950\n1\t11\t5\t881250951\n")
    flags = "|".join(["0"] * 19)
    (good / "u.item").write_text(f"10|Alien (1979)|01-Jan-1979||http://x|{flags}\n11|Heat (1995)|01-Jan-1995||http://y|{flags}\n",
                                 encoding="latin-1")
    (good / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    res = run_cli("data", "stats", "ml-100k", "--path", str(good), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["interactions"] == 3
    (good / "u.data").write_text("1\t10\t4\t881250949\n2\t10\tfour\t881250950\n")
    res = run_cli("data", "stats", "ml-100k", "--path", str(good))
    assert res.returncode == 2
    assert "u.data" in res.stderr and "line 2" in res.stderr


def test_unknown_dataset_lists_known_ones():
    res = run_cli("data", "stats", "nope")
    assert res.returncode == 2 and "unknown dataset 'nope'" in res.stderr and "ml-100k" in res.stderr


def test_bench_json_stays_parseable_when_the_benchmark_prints(monkeypatch, capsys):
    import llmrec_nb.bench as bench
    from llmrec_nb.cli import main
    def noisy(name, **kw):
        print({"loss": 1.0})        # what the Trainer prints while a training benchmark runs
        return {"name": name, "speedup": 2.0, "baseline_seconds": 2.0, "engine_seconds": 1.0, "agreement": {}}
    monkeypatch.setattr(bench, "run_benchmark", noisy)
    assert main(["bench", "training", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["speedup"] == 2.0 and "loss" in out.err
