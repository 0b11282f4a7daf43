"""Project hygiene: notebooks are clean, paper notebooks are parameterised, the library stays importable."""
import json, importlib
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
LIB_NBS = sorted((ROOT / "nbs").glob("[0-9]*.ipynb"))
PAPER_NBS = sorted((ROOT / "nbs" / "paper").glob("*.ipynb"))


@pytest.mark.parametrize("nb", LIB_NBS + PAPER_NBS, ids=lambda p: p.name)
def test_notebooks_have_no_outputs(nb):
    cells = json.loads(nb.read_text())["cells"]
    dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{nb.name}: cells {dirty} carry outputs; run nbdev_clean"
    empty = [i for i, c in enumerate(cells) if not "".join(c["source"]).strip()]
    assert not empty, f"{nb.name}: cells {empty} are empty (they show as blank cells in JupyterLab and the docs)"


@pytest.mark.parametrize("nb", PAPER_NBS, ids=lambda p: p.name)
def test_paper_notebooks_are_parameterised(nb):
    cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{nb.name}: needs exactly one cell tagged 'parameters' (papermill)"
    src = "".join(tagged[0]["source"])
    for name in ("profile", "out_dir"):
        assert f"{name} =" in src, f"{nb.name}: parameters cell lacks '{name}'"


@pytest.mark.parametrize("nb", LIB_NBS, ids=lambda p: p.name)
def test_library_notebook_modules_import(nb):
    src = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"])
    mod = next(line.split()[-1] for line in src.splitlines() if line.startswith("#| default_exp"))
    importlib.import_module(f"llmrec_nb.{mod}")


def test_profiles_name_existing_notebooks():
    from llmrec_nb.reproduce import load_profile
    stems = {p.stem for p in PAPER_NBS}
    for profile in ("smoke", "quick", "paper"):
        cfg = load_profile(profile, root=ROOT)
        unknown = set(cfg) - stems - {"common"}
        assert not unknown, f"params/{profile}.yaml has sections for missing notebooks: {unknown}"


@pytest.mark.parametrize("nb", PAPER_NBS, ids=lambda p: p.name)
def test_papermill_reads_every_parameter(nb):
    import ast, papermill as pm
    cell = next(c for c in json.loads(nb.read_text())["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    assigned = {t.id for node in ast.parse("".join(cell["source"])).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    missing = assigned - set(pm.inspect_notebook(str(nb)))
    assert not missing, f"{nb.name}: papermill cannot parse the parameters {sorted(missing)} (simplify their comments)"


def test_module_level_imports_need_only_the_base_and_llm_requirements():
    "What a module imports when it loads comes with `pip install llmrec_nb[llm]`: never from the dev extra alone."
    import ast, sys
    from configparser import ConfigParser
    from importlib.metadata import packages_distributions
    from packaging.requirements import Requirement
    cfg = ConfigParser(delimiters=["="]); cfg.read(ROOT / "settings.ini", encoding="utf-8")
    norm = lambda n: n.lower().replace("_", "-")
    allowed = {norm(Requirement(r).name) for k in ("requirements", "llm_requirements") for r in cfg["DEFAULT"][k].split()}
    dists = packages_distributions()
    missing = {}
    for path in sorted((ROOT / "llmrec_nb").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:        # the module's own top level: imports inside functions are optional
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("llmrec_nb", "__future__"): continue
                if not {norm(d) for d in dists.get(top, [top])} & allowed:
                    missing.setdefault(top, []).append(str(path.relative_to(ROOT)))
    assert not missing, f"imported at module level but not in requirements or llm_requirements: {missing}"
