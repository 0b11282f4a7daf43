#!/usr/bin/env python
"""Write README.md from nbs/index.ipynb (markdown cells as they are, code cells fenced), without needing Quarto.

    python tools/readme.py          # write README.md
    python tools/readme.py --check  # exit 1 when README.md is out of date
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def render(nb_path=ROOT / "nbs" / "index.ipynb") -> str:
    parts = []
    for cell in json.loads(Path(nb_path).read_text())["cells"]:
        src = "".join(cell["source"]).strip()
        if not src or src.startswith("#| hide"): continue
        parts.append(src if cell["cell_type"] == "markdown" else f"```python\n{src}\n```")
    return "<!-- generated from nbs/index.ipynb by tools/readme.py; edit the notebook -->\n\n" + "\n\n".join(parts) + "\n"

if __name__ == "__main__":
    text, readme = render(), ROOT / "README.md"
    if "--check" in sys.argv:
        if readme.read_text() != text: sys.exit("README.md is out of date: run python tools/readme.py")
    else: readme.write_text(text)
