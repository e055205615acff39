"""Fast DDS shared-memory files of dead participants are removed; a live participant's (its
lock file held with flock, as Fast DDS holds it) and anything not Fast DDS's are kept."""
from __future__ import annotations

import fcntl

from ros_nodes.dds_shm import remove_dead_participant_files


def touch(path, size: int = 0):
    path.write_bytes(b"\0" * size)
    return path


def test_only_files_whose_lock_nobody_holds_are_removed(tmp_path):
    dead, live = "fastdds_0123456789abcdef", "fastdds_fedcba9876543210"
    touch(tmp_path / dead, 8192), touch(tmp_path / f"{dead}_el")
    touch(tmp_path / live, 4096), touch(tmp_path / f"{live}_el")
    # a dead port: its data, lock and semaphore; a live port whose listener holds its shared lock
    touch(tmp_path / "fastdds_port17411", 4096), touch(tmp_path / "fastdds_port17411_el")
    touch(tmp_path / "sem.fastdds_port17411_mutex")
    touch(tmp_path / "fastdds_port17413"), touch(tmp_path / "fastdds_port17413_el"), touch(tmp_path / "fastdds_port17413_sl")
    touch(tmp_path / "lttng-ust-wait-6")  # another program's: never touched
    held = [open(tmp_path / f"{live}_el", "rb"), open(tmp_path / "fastdds_port17413_sl", "rb")]
    try:
        for f in held:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        removed = remove_dead_participant_files(tmp_path)
    finally:
        for f in held:
            f.close()
    assert sorted(removed.files) == sorted([dead, f"{dead}_el", "fastdds_port17411", "fastdds_port17411_el",
                                            "sem.fastdds_port17411_mutex"])
    assert removed.bytes >= 8192 + 4096
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live, f"{live}_el", "fastdds_port17413", "fastdds_port17413_el", "fastdds_port17413_sl", "lttng-ust-wait-6"])
    assert "5 shared-memory files" in removed.summary()


def test_a_missing_directory_removes_nothing(tmp_path):
    assert remove_dead_participant_files(tmp_path / "none").files == []
