"""The smoke profile end to end: every paper notebook runs, writes its summary and the report gathers the claims."""
import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
LLMREC = [str(Path(sys.executable).parent / "llmrec")]


def run_cli(*args, **kw):
    return subprocess.run([*LLMREC, *args], capture_output=True, text=True, cwd=ROOT, **kw)


@pytest.fixture(scope="module")
def smoke(smoke_run):
    res, out, _ = smoke_run
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


def _without_timings(x):
    "A summary with every wall-clock measurement removed (keys naming seconds; the `max_seconds` setting stays)."
    if isinstance(x, dict): return {k: _without_timings(v) for k, v in x.items() if "seconds" not in k or k == "max_seconds"}
    if isinstance(x, list): return [_without_timings(v) for v in x]
    return x


def _assert_same(a, b, path="summary"):
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(set(a) ^ set(b))}"
        for k in a: _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)): _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, (int, float)):
        assert b == pytest.approx(a, rel=1e-6, abs=1e-6), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_baselines_smoke_runs_are_identical(tmp_path, smoke_out):
    "A second run of the baselines notebook gives the first's summary (timings aside): no clock or machine speed in the numbers."
    from llmrec_nb.reproduce import run_papers
    runs = run_papers("smoke", only=["baselines"], out=tmp_path / "out", runs_dir=tmp_path / "runs", verbose=False)
    assert runs[0].ok, runs[0].error
    summaries = [_without_timings(json.loads((d / "baselines" / "summary.json").read_text())) for d in (smoke_out, tmp_path / "out")]
    assert summaries[0]["tables"]["train_time"] and "stopped_by" in summaries[0]["tables"]["train_time"][0]
    assert all(r["max_seconds"] is None for r in summaries[0]["tables"]["train_time"])   # no time cap by default
    _assert_same(summaries[0], summaries[1])


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_no_profile_caps_training_by_the_clock(profile):
    from llmrec_nb.reproduce import load_profile
    assert load_profile(profile)["baselines"].get("max_seconds") is None


def test_smoke_profile_defaults_outside_the_committed_figures():
    from llmrec_nb.core import figures_dir
    from llmrec_nb.reproduce import default_out
    assert default_out("smoke") == ROOT / "runs" / "smoke" and default_out("smoke") != figures_dir()
    assert "--out" not in (ROOT / "Makefile").read_text().split("\nsmoke:")[1].split("\n\n")[0]


def test_report_holm_adjusts_each_papers_claims(tmp_path):
    from llmrec_nb.reproduce import NotebookRun, write_report
    claims = [{"id": f"c{i}", "text": f"claim {i}", "holds": True, "effect": 1.0, "p": p} for i, p in enumerate((0.01, 0.03, 0.04))]
    claims.append({"id": "order", "text": "same order", "holds": True, "effect": 1.0, "p": 0.3, "alpha": None})
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "summary.json").write_text(json.dumps({"paper": "x", "profile": "smoke", "tables": {}, "claims": claims}))
    (tmp_path / "y").mkdir()   # another paper: its claims are a family of their own
    (tmp_path / "y" / "summary.json").write_text(json.dumps({"paper": "y", "profile": "smoke", "tables": {},
                                                              "claims": [{**claims[2], "id": "lone"}]}))
    report = write_report(tmp_path, [NotebookRun("x", True, 1.0, ""), NotebookRun("y", True, 1.0, "")], "smoke").read_text()
    assert "| verdict | effect [95% CI] | paper | p | p (Holm) | MDE | n (eff.) | n needed |" in report
    rows = {l.split("|")[1].strip(): [c.strip() for c in l.split("|")[1:-1]] for l in report.splitlines() if l.startswith("| `")}
    verdict_p = lambda cid: [rows[cid][2]] + rows[cid][5:7]
    # Holm over c0, c1, c2: 0.01·3, max(0.03·2, 0.03), max(0.04·1, 0.06)
    assert verdict_p("`c0`") == ["**reproduced**", "0.01", "0.03"]
    assert verdict_p("`c1`") == ["inconclusive", "0.03", "0.06"]
    assert verdict_p("`c2`") == ["inconclusive", "0.04", "0.06"]
    assert verdict_p("`order`") == ["holds", "0.3", "—"]   # a descriptive p is not adjusted
    assert verdict_p("`lone`") == ["**reproduced**", "0.04", "0.04"]
    assert "**2 reproduced, 0 contradicted, 2 inconclusive of 4 tested claims; 1 descriptive checks (1 hold).**" in report
    assert "Ran this time: x, y." in report


def _write_summary(root, paper, claims, profile="quick", manifest=None):
    (root / paper).mkdir(parents=True, exist_ok=True)
    (root / paper / "summary.json").write_text(json.dumps({"paper": paper, "profile": profile, "tables": {}, "claims": claims}))
    if manifest: (root / paper / "manifest.json").write_text(json.dumps(manifest))


def test_report_gives_each_claim_a_verdict(tmp_path):
    "Constructed cases: a true effect on many users, the opposite, a tiny n, all-zero arms, and a descriptive check."
    import numpy as np
    from llmrec_nb.reproduce import NotebookRun, write_report
    from llmrec_nb.stats import claim_statistics, compare
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.2, 500)
    def claim(cid, a, b, **kw):
        c = compare(a, b, n_boot=500)
        return {"id": cid, "text": f"{cid} (NDCG@10)", "holds": bool(c["effect"] > 0 and c["p_ttest"] <= 0.05), "effect": c["effect"],
                "p": c["p_ttest"], **claim_statistics(c), **kw}
    claims = [claim("true_effect", base + rng.normal(0.05, 0.2, 500), base, paper_effect=0.05, paper_source="Table 1"),
              claim("opposite", base - 0.05 + rng.normal(0, 0.2, 500), base, paper_effect=0.05),
              claim("tiny_n", base[:6] + rng.normal(0.05, 0.2, 6), base[:6], paper_effect=0.05),
              claim("zeros", np.zeros(40), np.zeros(40), paper_effect=0.05),
              claim("short_of_paper", base + rng.normal(0.01, 0.2, 500), base, paper_effect=0.2),
              {"id": "size", "text": "943 users", "holds": True, "effect": 943.0, "p": None}]
    _write_summary(tmp_path, "toy", claims)
    report = write_report(tmp_path, [NotebookRun("toy", True, 1.0, "")], "quick").read_text()
    rows = {l.split("|")[1].strip(): [c.strip() for c in l.split("|")[1:-1]] for l in report.splitlines() if l.startswith("| `")}
    assert rows["`true_effect`"][2] == "**reproduced**"
    assert rows["`opposite`"][2] == "**contradicted** (significant in the opposite direction)"
    assert rows["`tiny_n`"][2] == "inconclusive"
    assert rows["`zeros`"][2] == "inconclusive (all zeros)"
    assert rows["`short_of_paper`"][2] == "**contradicted** (the CI excludes the paper's effect)"
    assert rows["`size`"][2] == "holds"
    assert "**1 reproduced, 2 contradicted, 2 inconclusive of 5 tested claims; 1 descriptive checks (1 hold).**" in report
    tiny = rows["`tiny_n`"]
    assert float(tiny[7]) > 0.05 and int(tiny[9].replace(",", "")) > 6   # MDE above the paper's effect; n needed above 6
    assert "`tiny_n`: n ≈" in report and "Paper effects: `true_effect`: Table 1" in report


def test_report_rebuilt_from_the_committed_summaries(tmp_path):
    "The committed summaries alone give a report: every claim with a verdict, which runs it keeps and from when, no notebook run."
    import shutil
    from llmrec_nb.reproduce import rebuild_report
    papers = sorted(p.parent.name for p in (ROOT / "figures").glob("*/summary.json"))
    for paper in papers: shutil.copytree(ROOT / "figures" / paper, tmp_path / paper)
    report = rebuild_report(tmp_path).read_text()
    assert "notebooks ran" not in report and "rebuilt from the summaries on disk" in report
    kept = report.split("Kept from earlier runs: ")[1].split("\n")[0]
    for paper in papers:
        created = json.loads((tmp_path / paper / "manifest.json").read_text())["created"][:10]
        assert f"{paper} (" in kept and created in kept
        for c in json.loads((tmp_path / paper / "summary.json").read_text())["claims"]:
            row = next(l for l in report.splitlines() if l.startswith(f"| `{c['id']}` |"))
            verdict = row.split("|")[3].strip()
            assert verdict.split(" (")[0].strip("*") in {"reproduced", "contradicted", "inconclusive", "holds", "does not hold"}
            assert "**no**" not in row


def test_paper_effect_registry_covers_every_committed_tested_claim():
    from llmrec_nb.reproduce import PAPER_EFFECTS, paper_effect
    for path in (ROOT / "figures").glob("*/summary.json"):
        for c in json.loads(path.read_text())["claims"]:
            if c.get("p") is None or c.get("alpha", 0.05) is None: continue
            assert c["id"] in PAPER_EFFECTS, f"{path.parent.name}/{c['id']} has no entry in PAPER_EFFECTS"
            effect, source = paper_effect(c)
            assert source, c["id"]


def test_old_summaries_get_ci_n_and_sd_derived():
    "A summary written before claims carried CI, n and sd: they are recovered from effect, p and the detail, and marked."
    from llmrec_nb.reproduce import assess_claim, holm_claims
    c = holm_claims([{"id": "llama4rec_beats_base_rating", "text": "lowers RMSE", "holds": False, "effect": 0.022, "p": 0.37,
                      "detail": "method 0.9990 vs baseline 1.0210; n=32 users"}])[0]
    a = assess_claim(c)
    assert a["n"] == 32 and {"CI", "n", "sd"} <= set(a["derived"])
    assert a["ci_low"] < 0 < a["ci_high"] and a["verdict"] == "inconclusive" and a["n_needed"] > 32
    assert a["paper_effect"] == pytest.approx(((1.0487 - 1.0306) + (1.0500 - 1.0369)) / 2)


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
    assert "Failed this time: bad." in report and "`c`" in report


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


def test_report_says_how_each_run_computed(tmp_path):
    from llmrec_nb.reproduce import computed_on, write_report
    m = {"cpu_count": 2, "wall_seconds": 470.6,
         "compute": {"cpu": {"model": "AMD EPYC", "flags": {"amx_bf16": False, "avx512_bf16": False, "avx512f": False, "avx2": True}},
                     "dtype": "float32", "kernels": {"float32": {"path": "stock", "reason": "calibration"}}}}
    assert computed_on(m) == "AMD EPYC (avx2), 2 cores, float32, kernels: float32 stock"
    assert computed_on({}) == "unknown CPU"
    (tmp_path / "soft").mkdir()
    (tmp_path / "soft" / "summary.json").write_text(json.dumps({"paper": "soft", "profile": "quick", "tables": {}, "claims": []}))
    (tmp_path / "soft" / "manifest.json").write_text(json.dumps(m))
    text = write_report(tmp_path, [], "quick").read_text()
    assert "Computed in 471 s on AMD EPYC (avx2), 2 cores, float32, kernels: float32 stock." in text


def test_claim_records_ci_power_and_paper_fields(tmp_path):
    from llmrec_nb.reproduce import PaperReport
    r = PaperReport("toy", profile="smoke", out_dir=tmp_path)
    r.claim("old_style", "a beats b", True, 0.2, 0.01)   # positional, as older notebooks call it
    r.claim("new_style", "a beats b", False, 0.0, 1.0, "detail", 0.05, ci_low=-0.1, ci_high=0.1, n=40, n_effective=20,
            sd=0.3, paper_effect=0.05, paper_source="Table 2", degenerate="both arms constant")
    claims = {c["id"]: c for c in json.loads(r.save().read_text())["claims"]}
    assert claims["old_style"]["ci_low"] is None and claims["old_style"]["paper_effect"] is None
    assert {k: claims["new_style"][k] for k in ("ci_low", "ci_high", "n", "n_effective", "sd", "paper_effect", "paper_source", "degenerate")} == \
        {"ci_low": -0.1, "ci_high": 0.1, "n": 40, "n_effective": 20, "sd": 0.3, "paper_effect": 0.05, "paper_source": "Table 2",
         "degenerate": "both arms constant"}


def _toy_paper_notebook(path, parameters, body="from llmrec_nb.reproduce import PaperReport\nr = PaperReport('toy', profile, out_dir)\n"
                        "r.claim('c', 'it works', True, 1.0, 0.01); r.save()\nassert not fail"):
    import nbformat
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(parameters); params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_committed_profiles_match_the_notebooks_parameters(profile):
    from llmrec_nb.reproduce import load_profile
    load_profile(profile)   # raises on an unknown section or key, or a value of the wrong type


def test_profile_typos_are_errors_before_any_kernel_starts(tmp_path):
    from llmrec_nb.core import DataFormatError
    from llmrec_nb.reproduce import load_profile, run_papers
    nbs = tmp_path / "nbs"; nbs.mkdir()
    _toy_paper_notebook(nbs / "toy.ipynb", 'profile = "quick"\nout_dir = None\nfail = False\nn_test = 24\nlr = 1e-3\nks = [1, 3]\ncols = ["a"]')
    def check(text, *needles):
        path = tmp_path / "p.yaml"; path.write_text(text)
        with pytest.raises(DataFormatError) as e: load_profile(path, nbs_dir=nbs)
        for needle in ("p.yaml", *needles): assert needle in str(e.value), str(e.value)
    check("common: {}\ntyo: {n_test: 3}\n", "unknown section 'tyo'", "toy")
    check("toy: {n_tset: 3}\n", "section 'toy'", "'n_tset'", "n_test")                 # names the known keys
    check("common: {sed: 1}\n", "section 'common'", "'sed'")
    check("toy: {n_test: '24'}\n", "toy.n_test", "an integer")
    check("toy: {n_test: 2.5}\n", "toy.n_test", "an integer")
    check("toy: {fail: 1}\n", "toy.fail", "a boolean")
    check("toy: {ks: 3}\n", "toy.ks", "a list")
    check("", "empty")
    check("toy: [1, 2]\n", "toy", "sections")
    ok = tmp_path / "ok.yaml"
    ok.write_text("toy: {n_test: null, lr: 1, ks: [5], cols: {bookcrossing: [x], default: [y]}}\n")   # None, int for float, per-dataset map
    assert load_profile(ok, nbs_dir=nbs)["toy"]["lr"] == 1
    (tmp_path / "bad.yaml").write_text("toy: {n_tset: 3}\n")
    with pytest.raises(DataFormatError):
        run_papers(str(tmp_path / "bad.yaml"), out=tmp_path / "out", runs_dir=tmp_path / "runs", nbs_dir=nbs, verbose=False)
    assert not (tmp_path / "runs").exists()   # no notebook started


def test_a_failing_run_leaves_the_previous_results_whole(tmp_path):
    from llmrec_nb.reproduce import run_papers
    nbs = tmp_path / "nbs"; nbs.mkdir()
    _toy_paper_notebook(nbs / "toy.ipynb", 'profile = "quick"\nout_dir = None\nfail = False')
    kw = dict(out=tmp_path / "out", runs_dir=tmp_path / "runs", nbs_dir=nbs, verbose=False)
    (tmp_path / "good.yaml").write_text("toy: {fail: false}\n")
    (tmp_path / "bad.yaml").write_text("toy: {fail: true}\n")   # the notebook writes its summary, then fails
    assert run_papers(str(tmp_path / "good.yaml"), **kw)[0].ok
    before = (tmp_path / "out" / "toy" / "summary.json").read_text()
    manifest = json.loads((tmp_path / "out" / "toy" / "manifest.json").read_text())
    assert not run_papers(str(tmp_path / "bad.yaml"), **kw)[0].ok
    assert (tmp_path / "out" / "toy" / "summary.json").read_text() == before
    assert json.loads((tmp_path / "out" / "toy" / "manifest.json").read_text()) == manifest
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["REPORT.md", "toy"]   # no staging left behind
    report = (tmp_path / "out" / "REPORT.md").read_text()
    assert "Failed this time: toy." in report and "stale" in report and "Kept from earlier runs: toy (" in report


def test_a_user_kernelspec_never_runs_the_notebooks(tmp_path, monkeypatch):
    "A `python3` kernelspec of another environment first on JUPYTER_PATH (ipykernel install --user, conda) changes nothing."
    from llmrec_nb.reproduce import run_papers
    hostile = tmp_path / "hostile" / "kernels" / "python3"
    hostile.mkdir(parents=True)
    (hostile / "kernel.json").write_text(json.dumps({"argv": ["/bin/false", "{connection_file}"], "display_name": "other env",
                                                     "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "hostile"))
    nbs = tmp_path / "nbs"; nbs.mkdir()
    _toy_paper_notebook(nbs / "toy.ipynb", 'profile = "quick"\nout_dir = None\nfail = False',
                        body="import sys\nfrom llmrec_nb.report import PaperReport\nr = PaperReport('toy', profile, out_dir)\n"
                             "r.claim('c', sys.executable, True, 1.0, 0.01); r.save()")
    (tmp_path / "p.yaml").write_text("toy: {fail: false}\n")
    run = run_papers(str(tmp_path / "p.yaml"), out=tmp_path / "out", runs_dir=tmp_path / "runs", nbs_dir=nbs, verbose=False)[0]
    assert run.ok, run.error
    summary = json.loads((tmp_path / "out" / "toy" / "summary.json").read_text())
    manifest = json.loads((tmp_path / "out" / "toy" / "manifest.json").read_text())
    assert summary["claims"][0]["text"] == sys.executable == manifest["python_executable"]


def test_progress_streams_cells_and_output(tmp_path, capfd):
    from llmrec_nb.reproduce import run_notebook
    nb = tmp_path / "toy.ipynb"
    _toy_paper_notebook(nb, "x = 1", body="from llmrec_nb.core import progress\nfor _ in progress(range(2)): pass\n"
                                           "print('hello from the notebook')")
    assert run_notebook(nb, {}, tmp_path / "run.ipynb", progress=True).ok
    err = capfd.readouterr().err
    assert "toy: hello from the notebook" in err and "Executing" in err
    # neither the kernel's TCP warning (IPC sockets) nor tqdm's ipywidgets warning reaches the user
    assert "without encryption" not in err and "IProgress" not in err, err


def test_kernels_started_at_once_never_share_a_socket(tmp_path):
    "Each kernel gets IPC sockets in a folder of its own: two notebooks at once both run, and no socket file is left."
    import concurrent.futures as cf
    from llmrec_nb.reproduce import run_notebook
    for k in range(2):
        _toy_paper_notebook(tmp_path / f"n{k}.ipynb", "x = 1", body=f"import time\ntime.sleep(1)\nprint({k})")
    with cf.ThreadPoolExecutor(2) as ex:
        runs = list(ex.map(lambda k: run_notebook(tmp_path / f"n{k}.ipynb", {}, tmp_path / f"run{k}.ipynb"), range(2)))
    assert all(r.ok for r in runs), [r.error for r in runs]
    assert not [p.name for p in tmp_path.iterdir() if "ipc" in p.name]
