import os
os.environ.setdefault("LLMREC_PROGRESS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# several test processes share two cores: OpenMP busy-waiting would make them slow each other down many times over
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import subprocess, sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """`llmrec reproduce --profile smoke --jobs 2` once for the whole test run: (completed process, figures folder,
    runs folder). Tests of single paper notebooks under the smoke profile read their outputs from here."""
    root = Path(__file__).resolve().parents[1]
    out, runs = tmp_path_factory.mktemp("smoke-figures"), tmp_path_factory.mktemp("smoke-runs")
    res = subprocess.run([str(Path(sys.executable).parent / "llmrec"), "reproduce", "--profile", "smoke", "--jobs", "2",
                          "--out", str(out), "--runs", str(runs)], capture_output=True, text=True, cwd=root, timeout=1200)
    return res, out, runs


@pytest.fixture
def smoke_out(smoke_run):
    "The smoke run's figures folder, after checking that the run succeeded."
    res, out, _ = smoke_run
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out
