"The import graph of the library: imports go down the layers of `core.LAYERS`, no circle, no private name crosses modules."
import ast
from pathlib import Path

from llmrec_nb.core import LAYERS, layer_order

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "llmrec_nb"


def module_name(path: Path) -> str:
    "Dotted name of a library file below the package: `llm/base.py` -> `llm.base`, `llm/__init__.py` -> `llm`."
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, str]]:
    """(library module imported, name) for every import of a library module inside `path` (function-level imports
    included); `from llmrec_nb.llm import x` names the module `llm.x` when `llm/x.py` exists, else `(llm, x)`."""
    here = module_name(path).split(".") if path.name == "__init__.py" else module_name(path).split(".")[:-1]
    if path.name == "__init__.py" and here == [""]: here = []
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - (node.level - 1)] if node.level > 1 else here
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                if not (node.module or "").startswith("llmrec_nb"): continue
                mod = node.module.removeprefix("llmrec_nb").lstrip(".")
            for a in node.names:
                sub = f"{mod}.{a.name}" if mod else a.name
                if (PKG / sub.replace(".", "/")).with_suffix(".py").exists() or (PKG / sub.replace(".", "/")).is_dir():
                    out.append((sub, ""))
                else: out.append((mod, a.name))
        elif isinstance(node, ast.Import):
            out += [(a.name.removeprefix("llmrec_nb."), "") for a in node.names if a.name.startswith("llmrec_nb.")]
    return out


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PKG.rglob("*.py") if module_name(p) and p.stem != "_modidx"}


def test_every_module_has_a_layer():
    placed = {m for layer in LAYERS for m in layer}
    assert set(modules()) <= placed, f"modules without a layer in core.LAYERS: {sorted(set(modules()) - placed)}"


def test_imports_go_down_the_layers():
    level = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    wrong = [f"{m} (layer {level[m]}) imports {t} (layer {level[t]})" for m, p in modules().items()
             for t, _ in imports(p) if t != m and t in level and level[t] >= level[m]]
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_no_private_name_crosses_a_module():
    private = [f"{m} imports {n} from {t}" for m, p in modules().items() for t, n in imports(p)
               if t != m and n.startswith("_") and not n.startswith("__")]
    assert not private, "\n".join(sorted(set(private)))


def test_contributing_prints_the_layer_order():
    assert layer_order() in (ROOT / "CONTRIBUTING.md").read_text()
