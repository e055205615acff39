"""Files that are either whole or absent: written beside the target, then renamed over it.

A run record cut mid-line (a full disk, a killed writer) reads as a shorter run, not as a failure;
with a rename the reader finds the complete previous content or nothing, and the writer gets the
OSError that says why."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_writer(path: str | Path, newline: str | None = None) -> Iterator[IO[str]]:
    """``with atomic_writer(p) as f: f.write(...)``: ``p`` appears, complete, only if the block
    and the flush to disk succeed; otherwise the partial file is removed and the error raised."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(tmp, "w", newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_writer(path) as f:
        f.write(text)
