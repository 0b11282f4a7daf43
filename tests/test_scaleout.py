"`llmrec train-lora` in several processes (`accelerate launch`), and a launcher killed mid-run that resumes."
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = Path(sys.executable).parent / "accelerate"
WORDS = "apple river stone cloud tiger lemon piano forest".split()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("alpaca") / "train.json"
    path.write_text(json.dumps([{"instruction": "Repeat the word.", "input": w * (1 + i % 3), "output": w}
                                for i, w in enumerate(WORDS * 4)]))
    return path


def launch(data, out, *options, processes=2, config="cpu_2proc.yaml", accelerate=(), **popen):
    "`accelerate launch` of `llmrec train-lora` on the tiny model in `processes` CPU processes (gloo)."
    cmd = [str(ACCELERATE), "launch", "--config_file", str(ROOT / "params" / "accelerate" / config),
           "--num_processes", str(processes), *accelerate, "-m", "llmrec_nb.cli", "train-lora",
           "--data", str(data), "--model", "tiny", "--out", str(out), "--batch-size", "4", "--lr", "1e-2", *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLMREC_PROGRESS": "0"}
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def descendants(pid: int) -> list[int]:
    "Every process below `pid` (from /proc), children first."
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try: kids += [int(c) for c in (task / "children").read_text().split()]
        except OSError: pass
    return kids + [d for k in kids for d in descendants(k)]


def finish(proc, timeout=300):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def test_two_processes_train_disjoint_shards_and_rank0_writes(data, tmp_path):
    finish(launch(data, tmp_path / "run", "--epochs", "2", "--save-steps", "4"))
    result = json.loads((tmp_path / "run" / "train_result.json").read_text())
    assert result["world_size"] == 2 and result["written_by_process"] == 0
    # 32 examples, 4 per process and step: each process sees its own 16 a epoch, so an epoch is 4 steps, not 8
    assert result["global_step"] == 8
    curve = (tmp_path / "run" / "loss_curve.csv").read_text().splitlines()[1:]
    losses = [float(line.split(",")[2]) for line in curve]
    assert len(losses) == 8 and losses[-1] < losses[0]
    from llmrec_nb.llm import load_llm
    from llmrec_nb.lora import load_adapter
    from safetensors.torch import load_file
    llm = load_llm("tiny")
    model = load_adapter(llm, tmp_path / "run" / "final")
    saved = load_file(str(tmp_path / "run" / "final" / "adapter_model.safetensors"))
    state = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    assert len(saved) == len(state) > 0


def test_fsdp_config_on_cpus_trains_data_parallel_and_says_so(data, tmp_path):
    "accelerate shards with FSDP only over GPUs: on CPUs the FSDP config runs two whole-model processes, and says so."
    out = finish(launch(data, tmp_path / "run", "--max-steps", "2", config="fsdp.yaml", accelerate=("--mixed_precision", "no")))
    result = json.loads((tmp_path / "run" / "train_result.json").read_text())
    assert (result["world_size"], result["distributed"], result["global_step"]) == (2, "MULTI_CPU", 2)
    assert "asks for FSDP" in out and (tmp_path / "run" / "final" / "adapter_model.safetensors").exists()


def test_killed_launcher_resumes_from_its_last_checkpoint(data, tmp_path):
    out = tmp_path / "run"
    proc = launch(data, out, "--epochs", "100", "--max-steps", "60", "--save-steps", "4", start_new_session=True)
    deadline = time.time() + 240
    while not (out / "checkpoint-8" / "llmrec_train_state.json").exists():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline, "no checkpoint-8 within 240 s"
        time.sleep(0.05)
    tree = descendants(proc.pid)
    assert len(tree) >= 2, "expected the launcher's worker processes"
    for pid in [proc.pid, *tree]:                   # kill -9 of the launcher and its workers, as a crash would
        try: os.kill(pid, signal.SIGKILL)
        except ProcessLookupError: pass
    proc.wait()
    time.sleep(0.5)
    assert not (out / "train_result.json").exists()
    left = subprocess.run(["pgrep", "-f", "--", f"--out {out}"], capture_output=True, text=True).stdout.split()
    assert not left, f"processes left after the kill: {left}"
    killed_at = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    finish(launch(data, out, "--epochs", "100", "--max-steps", "60", "--save-steps", "4"))
    result = json.loads((out / "train_result.json").read_text())
    assert result["global_step"] == 60
    resumed = int(result["resumed_from"].split("-")[1])
    assert 8 <= resumed <= killed_at and resumed % 4 == 0


def test_gpu_check_refuses_a_machine_without_cuda():
    import torch
    if torch.cuda.is_available(): pytest.skip("a GPU is present: run tools/gpu_check.sh itself")
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py")], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert run.returncode != 0 and "no CUDA device" in run.stderr
