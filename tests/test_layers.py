"The import graph of the library: imports go down the layers of `core.LAYERS`, no circle, no private name crosses modules."
import ast
from pathlib import Path

from llmrec_nb.core import LAYERS, layer_order

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "llmrec_nb"


def imports(path: Path) -> list[tuple[str, str]]:
    "(module imported, name) for every import of a library module inside `path` (function-level imports included)."
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level: mod = f"llmrec_nb.{mod}" if mod else "llmrec_nb"
            if mod == "llmrec_nb": out += [(a.name, "") for a in node.names]
            elif mod.startswith("llmrec_nb."): out += [(mod.split(".")[1], a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name.split(".")[1], "") for a in node.names if a.name.startswith("llmrec_nb.")]
    return out


def modules() -> dict[str, Path]:
    return {p.stem: p for p in PKG.glob("*.py") if p.stem not in ("__init__", "_modidx")}


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
