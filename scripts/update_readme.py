"""Regenerate the README's generated tables from the shipped files, so none is typed by hand.

Each block sits between `<!-- generated: NAME -->` and `<!-- end: NAME -->` and is replaced by
`python -m segdemo results` (NAME = results), `results --probe` (probe, from <model>/probe.json),
`results --recipes` (recipes, from the cards), `results --candidates` (candidates, from
weights/candidates.json; unseen, `--unseen`, from the same file), `results --video` (video, from
weights/video_benchmark.json), `results --speed` (speed, from weights/benchmark.json),
`results --robustness` (robustness, from weights/robustness.json; robustness_probe, from
weights/robustness_probe.json), `results --serve` (serve, from weights/serve_loadtest.json) or
`results --load` (load, from weights/loadtest.json, written by scripts/loadtest.py).
A block whose JSON is missing is left as it is.

    python scripts/update_readme.py
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = {"results": [], "probe": ["--probe"], "recipes": ["--recipes"],
          "candidates": ["--candidates"], "unseen": ["--unseen"], "speed": ["--speed"],
          "video": ["--video"],
          "robustness": ["--robustness"],
          "robustness_probe": ["--robustness", "--json", "weights/robustness_probe.json"],
          "serve": ["--serve"], "load": ["--load"]}


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()
    for name, flags in BLOCKS.items():
        run = subprocess.run([sys.executable, "-m", "segdemo", "results", *flags], cwd=ROOT,
                             capture_output=True, text=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        if run.returncode != 0:
            last = (run.stderr.strip().splitlines() or ["failed"])[-1]
            print(f"{name}: left as it is ({last})")
            continue
        pattern = re.compile(rf"(<!-- generated: {name} -->\n).*?(<!-- end: {name} -->)", re.S)
        if not pattern.search(text):
            print(f"{name}: no <!-- generated: {name} --> block in the README")
            continue
        text = pattern.sub(lambda m: m.group(1) + run.stdout.strip() + "\n" + m.group(2), text)
        print(f"{name}: updated")
    readme.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
