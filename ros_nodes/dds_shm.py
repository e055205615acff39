"""Shared-memory files that Fast DDS participants of dead processes left behind (no rclpy here).

Every Fast DDS participant keeps its shared-memory transport in ``/dev/shm``: a data segment
(``fastdds_<16 hex digits>``; 64 MiB with the shipped profile, ``configs/dds/fastdds.xml``) and
listening ports (``fastdds_port<N>``), each beside a lock file (``..._el`` or ``..._sl``) that the
owner holds with ``flock`` while it lives. A participant that exits normally removes its files;
one that is killed (a crashed node, ``kill -9``, a stopped container) cannot, and its files stay:
measured here, one run of the test suite (which kills nodes on purpose) left 74 files, 70 MB,
and a day of stack runs 822 MB, in a tmpfs that containers often cap at 64 MB.

:func:`remove_dead_participant_files` deletes exactly the files whose lock nobody holds (the
owner is gone: a live participant's lock cannot be taken), as Fast DDS's own ``fastdds shm
clean`` does; ``dyn-fusion up`` and ``replay`` call it before starting their nodes.
"""
from __future__ import annotations

import fcntl
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

SHM_DIR = Path("/dev/shm")
# a lock file: the data segment's or a port's, and the files that go with it
_LOCK = re.compile(r"^fastdds_(?P<base>[0-9a-z]{16}|port\d{1,5})_(el|sl)$")


@dataclass
class Removed:
    """What :func:`remove_dead_participant_files` deleted."""

    files: list[str] = field(default_factory=list)
    bytes: int = 0

    def summary(self) -> str:
        return f"{len(self.files)} shared-memory files of dead DDS participants ({self.bytes / 2**20:.0f} MB)"


def _owner_alive(lock_file: Path) -> bool:
    """Whether a process holds ``lock_file``'s flock (taking it fails only then)."""
    try:
        with open(lock_file, "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    except OSError:  # gone meanwhile, or not ours to open: leave it
        return True


def remove_dead_participant_files(shm_dir: Path = SHM_DIR) -> Removed:
    """Delete the Fast DDS files in ``shm_dir`` whose owner has died (see the module doc)."""
    removed = Removed()
    try:
        names = os.listdir(shm_dir)
    except OSError:
        return removed
    locks: dict[str, list[str]] = {}  # base -> its lock files (a port may have an _el and an _sl)
    for name in sorted(names):
        match = _LOCK.match(name)
        if match is not None:
            locks.setdefault(f"fastdds_{match['base']}", []).append(name)
    for base, lock_files in locks.items():
        if any(_owner_alive(shm_dir / lock) for lock in lock_files):
            continue
        for stale in (base, *lock_files, f"sem.{base}_mutex"):  # the data, its locks, a port's semaphore
            path = shm_dir / stale
            try:
                size = path.stat().st_blocks * 512  # what it really takes (tmpfs pages written)
                path.unlink()
            except OSError:
                continue
            removed.files.append(stale)
            removed.bytes += size
    return removed
