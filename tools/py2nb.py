#!/usr/bin/env python
"""Author a notebook as a percent-format script, then turn it into a clean nbdev notebook.

    python tools/py2nb.py SCRIPT.py nbs/NN_name.ipynb   # script -> notebook (cleaned)
    python tools/py2nb.py --back nbs/NN_name.ipynb SCRIPT.py  # notebook -> script, to edit

The notebook stays the source of truth; the script is a convenience for editors without Jupyter.
"""
import json, subprocess, sys
from pathlib import Path

KERNEL = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}}

def main(argv):
    bin_dir = Path(sys.executable).parent
    if argv[0] == "--back":
        nb, script = argv[1:3]
        subprocess.run([bin_dir / "jupytext", "--quiet", "--to", "py:percent", nb, "-o", script], check=True)
        return
    script, nb = argv[:2]
    subprocess.run([bin_dir / "jupytext", "--quiet", "--to", "ipynb", script, "-o", nb], check=True)
    d = json.loads(Path(nb).read_text())
    d["metadata"] = dict(KERNEL)
    Path(nb).write_text(json.dumps(d, indent=1) + "\n")
    subprocess.run([bin_dir / "nbdev_clean", "--fname", nb], check=True)

if __name__ == "__main__": main(sys.argv[1:])
