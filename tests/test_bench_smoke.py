"""`make bench ARGS=--quick` runs every section end to end (tiny sizes) and writes a report with each section."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from datamodules.video.decode import default_backend

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]


def test_quick_bench_runs_every_section_and_reports_ratios(tmp_path):
    done = subprocess.run([sys.executable, "benchmarks/run.py", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    md = (tmp_path / "results.md").read_text()
    for header in ("## Training step, ViT-Tiny/16", "## Video (VideoMAE)", "## Point clouds", "## Audio",
                   "## Graphs", "## DDP on CPU", "## Time series"):
        assert header in md, f"{header!r} missing from the bench report"
    res = json.loads((tmp_path / "results.json").read_text())
    video = res["video"]["train_step"]
    assert video["ratio"] > 0 and set(video["models"]) == {"ours", "HF VideoMAEForPreTraining"}  # quick: no compile
    assert re.search(r"\*\*ours / HF = \d+\.\d\dx\*\*", md)
    first = "decord" if default_backend() == "decord" else "pyav"  # decord only where its wheel installs
    assert {f"{first}, repeat 1, crop=multiscale", f"{first}, repeat 1, crop=resized", "pyav, repeat 4"} <= set(
        res["video"]["loader"]["results"])
