#!/usr/bin/env python
"""Author a notebook as a percent-format script, then turn it into a clean nbdev notebook.

    python tools/py2nb.py SCRIPT.py nbs/NN_name.ipynb   # script -> notebook (cleaned)
    python tools/py2nb.py --back nbs/NN_name.ipynb SCRIPT.py  # notebook -> script, to edit

The notebook stays the source of truth; the script is a convenience for editors without Jupyter.
"""
import json, subprocess, sys
from pathlib import Path

KERNEL = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}}

def _src(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src

def keep_cell_ids(old_cells, new_cells):
    """Give converted cells the ids they had before (exported modules cite cell ids, so fresh ids would churn them):
    a cell with unchanged source keeps its id; an edited cell takes the id of the old cell at its position if that id
    is still free."""
    by_source = {}
    for c in old_cells:
        if "id" in c: by_source.setdefault(_src(c), []).append(c["id"])
    used = set()
    for c in new_cells:
        ids = by_source.get(_src(c))
        if ids:
            c["id"] = ids.pop(0); used.add(c["id"])
    for i, c in enumerate(new_cells):
        if c["id"] in used: continue
        old_id = old_cells[i].get("id") if i < len(old_cells) else None
        if old_id and old_id not in used and old_id not in {x.get("id") for x in new_cells if x is not c}:
            c["id"] = old_id
        used.add(c["id"])

def main(argv):
    bin_dir = Path(sys.executable).parent
    if argv[0] == "--back":
        nb, script = argv[1:3]
        subprocess.run([bin_dir / "jupytext", "--quiet", "--to", "py:percent", nb, "-o", script], check=True)
        return
    script, nb = argv[:2]
    old = json.loads(Path(nb).read_text())["cells"] if Path(nb).exists() else []
    subprocess.run([bin_dir / "jupytext", "--quiet", "--to", "ipynb", script, "-o", nb], check=True)
    d = json.loads(Path(nb).read_text())
    d["metadata"] = dict(KERNEL)
    keep_cell_ids(old, d["cells"])
    Path(nb).write_text(json.dumps(d, indent=1) + "\n")
    subprocess.run([bin_dir / "nbdev_clean", "--fname", nb], check=True)

if __name__ == "__main__": main(sys.argv[1:])
