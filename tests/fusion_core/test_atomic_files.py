"""A file written atomically is whole or absent, never cut (a full disk left frames.jsonl cut
mid-line and nodes.json empty)."""
from __future__ import annotations

import errno

import pytest

from fusion_core.atomic_files import atomic_write_text, atomic_writer


def test_a_failed_write_keeps_the_previous_content_and_leaves_no_partial_file(tmp_path):
    path = tmp_path / "frames.jsonl"
    atomic_write_text(path, "old\n")
    with pytest.raises(OSError, match="No space"):
        with atomic_writer(path) as f:
            f.write('{"stamp_ns": 1}\n{"stamp')
            raise OSError(errno.ENOSPC, "No space left on device")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames.jsonl"]


def test_a_new_file_appears_only_when_complete(tmp_path):
    path = tmp_path / "nodes.json"
    with pytest.raises(KeyboardInterrupt):
        with atomic_writer(path) as f:
            f.write("{")
            raise KeyboardInterrupt
    assert not path.exists() and not list(tmp_path.iterdir())
    atomic_write_text(path, "{}\n")
    assert path.read_text() == "{}\n"


def test_a_report_over_an_incomplete_run_record_says_what_is_missing(tmp_path):
    from dyn_fusion.run_report import write_report
    from fusion_core.model.config import BevGridConfig

    atomic_write_text(tmp_path / "ledger.json", "{}\n")  # frames.jsonl and drops.json never written
    report = write_report(tmp_path, BevGridConfig(), "test run")
    assert report.partial == "the run record lacks frames.jsonl, drops.json (see logs/energy_monitor.log)"
    assert report.frames_fused == 0 and "**This run is partial**" in (tmp_path / "report.md").read_text()
