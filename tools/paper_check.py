#!/usr/bin/env python
"""The paper-check profile: params/paper.yaml in shape, on the stand-in data of tools/paper_fixtures.py and the tiny model.

    python tools/paper_check.py OUT_DIR [--seed 0]
    llmrec reproduce --profile OUT_DIR/paper-check.yaml --jobs 2 --out OUT_DIR/figures --runs OUT_DIR/runs

writes the fixture datasets under OUT_DIR/data/ and OUT_DIR/paper-check.yaml, which is params/paper.yaml with
these changes and no others (same datasets, seeds, candidate counts, grids, readouts and options; the runner keeps
the library runs' resumable units under --runs):

1. every /data/... path points at the same folder under OUT_DIR/data/ ("name:path", "name:path:kcore", `path:` of a
   dataset mapping, `book_path`, `dataset_path`, `general_datasets`); each must exist there;
2. every `model:` is `tiny`, the random test model;
3. the sizes of SIZE_KEYS shrink by one rule: each is capped at the cap of its kind in CAPS, and None ("all") becomes
   that cap; a mapping of sizes (per model, or per backbone under `*`) is capped value by value.

Every key SIZE_KEYS names must be in params/paper.yaml (a renamed key stops the generator), and every key of
params/paper.yaml named like a size must be either shrunk or listed in KEPT with the reason it stays.
"""
from __future__ import annotations
import argparse, re, sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import paper_fixtures  # noqa: E402

# The one shrink rule: the cap of each kind of size.
CAPS = {
    "epochs": 2,        # two, so that early stopping and best-epoch choices still compare epochs
    "steps": 1,         # warm-up steps: one, shorter than the shortest capped run (as in the paper profile)
    "count": 16,        # instances, users, samples or items trained on, evaluated, generated for or described
    "resamples": 200,   # bootstrap resamples of the paired tests
    "pool": 160,        # instances built to be split 8:1:1: ten times `count`, so the test share still holds `count`
    "tokens": 8,        # generated answer length: the tiny random model never stops early, so every answer is this long
}

# What the rule shrinks, per notebook: key (or key/*/subkey through mappings) -> kind. `<backbones>` stands for every
# backbone the section runs (its direct_, sequential_ and rating_backbones): one without an entry in the mapping runs
# with the library's default epochs (llama4rec.BACKBONE_DEFAULTS), a size too, so it gets an entry with the cap.
SIZE_KEYS: dict[str, dict[str, str]] = {
    "baselines": {"epochs/*": "epochs"},
    "datasets": {},
    "itdr": {"max_per_task": "pool", "n_train_per_task": "count", "n_eval_per_task": "count", "corr_n_train": "count",
             "corr_n_eval": "count", "epochs": "epochs", "n_boot": "resamples", "max_new_tokens": "tokens"},
    "tallrec": {"n_valid": "count", "n_test": "count", "xd_n_valid": "count", "xd_n_test": "count",
                "epochs": "epochs", "seq_epochs": "epochs"},
    "soft": {"n_train": "count", "n_valid": "count", "n_test": "count", "n_dist": "count", "epochs": "epochs",
             "warmup_steps": "steps", "max_new_tokens": "tokens"},
    "molorec": {"max_train_general": "count", "max_train_specific": "count", "n_valid": "count", "n_test": "count",
                "n_valid_general": "count", "lean_n_users": "count", "few_shot_n_test": "count",
                "epochs_general": "epochs", "epochs_specific": "epochs", "epochs_joint": "epochs",
                "baseline_epochs/*": "epochs", "n_boot": "resamples", "max_new_tokens": "tokens"},
    "llama4rec": {"max_users": "count", "n_eval_users": "count", "n_per_task": "count", "n_valid_instructions": "count", "da_users": "count",
                  "attribute_items": "count", "lora_epochs": "epochs", "backbone_kw/<backbones>/epochs": "epochs",
                  "warmup": "steps", "n_boot": "resamples",
                  "max_new_tokens": "tokens"},
}

# Keys named like sizes that stay as params/paper.yaml sets them, and why.
KEPT: dict[str, str] = {
    "baselines.max_seconds": "a wall-clock cap, null: the capped epochs decide",
    "itdr.max_length": "prompt length: part of the prompts' shape",
    "tallrec.n_samples": "the pool K, validation and test are drawn from: a pool of 160 would leave K=256 short",
    "tallrec.max_steps": "-1: the capped epochs decide",
    "tallrec.xd_max_steps": "-1: the capped epochs decide",
    "soft.n_shots": "solved examples in a prompt: part of the prompts' shape",
    "molorec.n_neg": "candidate count",
    "molorec.tta_n_tokens": "tokens whose entropy TTA minimises: part of the method",
    "molorec.n_unlabeled": "TTA's prompts, drawn from the (capped) test prompts",
    "molorec.n_unlabeled_grid": "a grid",
    "molorec.baseline_max_seconds": "a wall-clock cap, null: the capped epochs decide",
    "llama4rec.max_length": "prompt length: part of the prompts' shape",
}
SIZE_LIKE = re.compile(r"(^|_)n_|^max_|epochs|steps|warmup|_users$|_items$|boot")

PAPER = ROOT / "params" / "paper.yaml"


class PaperCheckError(ValueError):
    "params/paper.yaml and the paper-check rule disagree (a renamed key, a size not accounted for, a missing fixture)."


def capped(value, kind: str):
    "`value` under the cap of `kind` (None, meaning all, becomes the cap); the type of an int or float value kept."
    cap = CAPS[kind]
    if value is None: return cap
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PaperCheckError(f"a size of kind {kind} is {value!r}, expected a number or null")
    return type(value)(min(value, cap))


def shrink(section: dict, key_path: str, kind: str, where: str) -> int:
    "Cap the value(s) at `key_path` (`a`, `a/*`, `a/*/b` or `a/<backbones>/b`) in `section` in place; how many were capped."
    head, *rest = key_path.split("/")
    if head not in section:
        raise PaperCheckError(f"{where}: params/paper.yaml has no '{head}', which the paper-check rule shrinks ({key_path})")
    if not rest:
        section[head] = capped(section[head], kind); return 1
    mapping = section[head]
    if not isinstance(mapping, dict) or not mapping:
        raise PaperCheckError(f"{where}.{head}: expected a mapping of sizes for {key_path}, got {mapping!r}")
    if rest[0] == "<backbones>":
        from llmrec_nb.llama4rec import BACKBONE_DEFAULTS
        lists = ("direct_backbones", "sequential_backbones", "rating_backbones")
        missing = [k for k in lists if k not in section]
        if missing: raise PaperCheckError(f"{where}: params/paper.yaml has no {', '.join(missing)}, which {key_path} reads")
        names = [n for k in lists for n in section[k]]
        for name in names:
            entry = mapping.setdefault(name, {})
            entry[rest[1]] = capped(entry.get(rest[1], BACKBONE_DEFAULTS.get(name, {}).get(rest[1])), kind)
        return len(names)
    done = 0
    for name in mapping:
        if rest == ["*"]: mapping[name] = capped(mapping[name], kind); done += 1
        elif isinstance(mapping[name], dict) and rest[1] in mapping[name]:
            mapping[name][rest[1]] = capped(mapping[name][rest[1]], kind); done += 1
    if not done: raise PaperCheckError(f"{where}.{head}: no entry has '{rest[1]}', which the paper-check rule shrinks ({key_path})")
    return done


def fixture_spec(value: str, data_dir: Path) -> str:
    "A dataset string with its /data/... path moved under `data_dir`: 'path', 'name:path' or 'name:path:kcore'."
    parts = value.split(":")
    for i, part in enumerate(parts):
        if part.startswith("/data/"):
            folder = data_dir / part.removeprefix("/data/")
            if not folder.is_dir(): raise PaperCheckError(f"{value}: the fixtures have no {folder}")
            parts[i] = str(folder)
    return ":".join(parts)


def moved_paths(x, data_dir: Path):
    "`x` (a profile value) with every /data/... path in its strings, lists and mappings moved under `data_dir`."
    if isinstance(x, dict): return {k: moved_paths(v, data_dir) for k, v in x.items()}
    if isinstance(x, list): return [moved_paths(v, data_dir) for v in x]
    if isinstance(x, str) and "/data/" in x: return fixture_spec(x, data_dir)
    return x


def check_sizes_accounted_for(prof: dict):
    "Every key of the paper profile named like a size is shrunk or kept on purpose; every rule key names a notebook section."
    for section, keys in SIZE_KEYS.items():
        if section not in prof: raise PaperCheckError(f"params/paper.yaml has no section '{section}', which the paper-check rule names")
        missing = [k for k in keys if k.split("/")[0] not in prof[section]]
        if missing: raise PaperCheckError(f"{section}: params/paper.yaml has no {', '.join(missing)}, which the paper-check rule shrinks")
    for section, values in prof.items():
        if section == "common": continue
        if section not in SIZE_KEYS: raise PaperCheckError(f"params/paper.yaml section '{section}' is not in paper_check.SIZE_KEYS")
        shrunk = {k.split("/")[0] for k in SIZE_KEYS[section]}
        loose = [k for k in values if SIZE_LIKE.search(k) and k not in shrunk and f"{section}.{k}" not in KEPT]
        if loose:
            raise PaperCheckError(f"params/paper.yaml {section}: {', '.join(loose)} named like a size: add it to "
                                  "paper_check.SIZE_KEYS (shrunk) or KEPT (with the reason it stays)")


def paper_check_config(data_dir: Path | str, paper: Path | str = PAPER) -> dict:
    "The paper-check profile as a mapping (see the module docstring), its data under `data_dir`."
    prof = yaml.safe_load(Path(paper).read_text())
    data_dir = Path(data_dir).resolve()
    if ":" in str(data_dir): raise PaperCheckError(f"{data_dir}: a ':' in the folder would split 'name:path' specs")
    check_sizes_accounted_for(prof)
    out = {}
    for section, values in prof.items():
        values = moved_paths(values, data_dir)
        if "model" in values: values["model"] = "tiny"
        for key_path, kind in SIZE_KEYS.get(section, {}).items(): shrink(values, key_path, kind, section)
        out[section] = values
    return out


HEADER = """\
# paper-check: params/paper.yaml in shape (written by tools/paper_check.py; do not edit, regenerate)
# - data: /data/... -> {data}
# - every model: tiny
# - sizes capped by kind ({caps}); null (all) becomes the cap
"""


def paper_check_profile(fixtures_dir: Path | str, out_yaml: Path | str) -> Path:
    "Write the paper-check profile to `out_yaml`, its data paths in `fixtures_dir` (as `paper_fixtures.make_all` writes it)."
    out_yaml = Path(out_yaml)
    cfg = paper_check_config(fixtures_dir)
    caps = ", ".join(f"{k} {v}" for k, v in CAPS.items())
    text = HEADER.format(data=Path(fixtures_dir).resolve(), caps=caps)
    out_yaml.parent.mkdir(parents=True, exist_ok=True)
    out_yaml.write_text(text + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, default_flow_style=None, width=160))
    return out_yaml


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="folder for data/ (the fixtures) and paper-check.yaml")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fixture data")
    args = ap.parse_args(argv)
    out = Path(args.out)
    data = paper_fixtures.make_all(out / "data", args.seed)
    path = paper_check_profile(data, out / "paper-check.yaml")
    print(f"wrote {path}\nrun: llmrec reproduce --profile {path} --jobs 2 --out {out / 'figures'} --runs {out / 'runs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
