"""The dyn-fusion command: real runs on tiny frame counts, and its refusals."""
from __future__ import annotations

import json
import subprocess
import sys

from dyn_fusion.cli import main


def test_simulate_refuses_an_existing_output_without_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    assert main(["simulate", "--scenario", "default", "--frames", "2", "--out", str(out), "--no-progress"]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main(["simulate", "--scenario", "default", "--frames", "2", "--out", str(out), "--no-progress",
                 "--overwrite", "--format", "shards"]) == 0
    assert (out / "index.json").is_file()


def test_simulate_reports_bad_scenarios_by_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ego:\n  speed_mps: fast\n")
    assert main(["simulate", "--scenario", str(bad), "--frames", "2", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "ego.speed_mps: expected a number" in err and "bad.yaml" in err


def test_simulate_writes_a_bag_with_the_seed_override(tmp_path, capsys):
    out = tmp_path / "bag"
    assert main(["simulate", "--scenario", "fog", "--frames", "3", "--out", str(out), "--seed", "3",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "/sensors/lidar/points" in text and "3 frames" in text
    assert any(out.glob("*.mcap"))


def test_demo_writes_bag_summary_and_preview(tmp_path):
    out = tmp_path / "demo"
    # A separate process, as `make run` does, through the installed console script's module.
    proc = subprocess.run([sys.executable, "-m", "dyn_fusion.cli", "demo", "--frames", "12", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 12
    assert summary["captures_per_sensor"] == {"rgb": 12, "depth": 12, "lidar": 12, "radar": 24, "imu": 240}
    assert (out / "preview.png").stat().st_size > 50_000
    assert "preview:" in proc.stdout


def test_evaluate_refuses_unwritable_outputs_before_evaluating(tmp_path, capsys):
    """--json under a regular file used to fail only after the whole evaluation."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    for extra, message in [(["--json", str(blocker / "out.json")], "is a file, not a folder"),
                           (["--json", str(tmp_path)], "is a folder; expected a file"),
                           (["--json", str(tmp_path / "r.json"), "--plots", str(blocker)], "is a file; expected a folder")]:
        # the checkpoint does not exist either: the output check must come first
        assert main(["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--data", str(tmp_path), *extra]) == 2
        assert message in capsys.readouterr().err


def test_record_sensors_without_record_is_refused_before_the_run_folder_is_touched(tmp_path, capsys):
    previous = tmp_path / "run"
    previous.mkdir()
    (previous / "report.md").write_text("the previous run\n")
    assert main(["up", "vehicle", "--record-sensors", "--out", str(previous), "--overwrite"]) == 2
    assert "--record-sensors: only with --record" in capsys.readouterr().err
    assert (previous / "report.md").read_text() == "the previous run\n"
