"""scripts/robustness_summary.py on a small comparison written here: the worst row, the rows
below the floor and the adverse mean are computed against the static column."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "robustness_summary.py"
spec = importlib.util.spec_from_file_location("robustness_summary", SCRIPT)
summary = importlib.util.module_from_spec(spec)
spec.loader.exec_module(summary)


def _mode(label, aps, j):
    metrics = {g: {"mean_ap": ap, "n_frames": n} for g, (ap, n) in aps.items()}
    return {"label": label, "metrics": metrics, "cost": {"all": {"compute_j_per_frame": j}}}


COMPARE = {"modes": [
    _mode("static", {"all": (0.8, 90), "condition:clear": (0.9, 30), "condition:night": (0.7, 30),
                     "mix:fog+rgb:frozen": (0.6, 30), "fault:lidar:dropout": (0.5, 10)}, 0.10),
    _mode("loss λ=5", {"all": (0.75, 90), "condition:clear": (0.91, 30), "condition:night": (0.6, 30),
                       "mix:fog+rgb:frozen": (0.59, 30), "fault:lidar:dropout": (0.1, 10)}, 0.03),
]}


def test_rows_against_static():
    static, gate = summary.summary_rows(COMPARE, min_frames=20, floor=0.02)
    assert static["worst_vs_static"] == 0 and static["rows_below_floor"] == 0
    assert gate["worst_row"] == "condition:night" and gate["worst_vs_static"] == pytest.approx(-0.1)
    assert gate["rows_below_floor"] == 1 and gate["rows"] == 3          # the 10-frame row is left out
    assert gate["adverse_mean_map"] == pytest.approx((0.6 + 0.59) / 2)  # night and the mix, not clear
    assert gate["energy_vs_static"] == pytest.approx(0.3)


def test_command_line_and_a_comparison_without_static(tmp_path):
    path = tmp_path / "compare.json"
    path.write_text(json.dumps(COMPARE))
    out = subprocess.run([sys.executable, str(SCRIPT), str(path), "--markdown", str(tmp_path / "s.md")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and "| loss λ=5 | 0.750 | 30% | -0.100 (condition:night) | 1 of 3 |" in out.stdout
    path.write_text(json.dumps({"modes": COMPARE["modes"][1:]}))
    out = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True)
    assert out.returncode == 2 and "no static column" in out.stderr
