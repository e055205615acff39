"""A dataset collection (``sim/collection.py``: several shard datasets and a ``collection.json``)
read as one Sequence[FusionSample], member datasets in their listed order."""
from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from pathlib import Path

from fusion_core.config_io import ConfigError
from fusion_core.data.sample import FusionSample

COLLECTION_FILE = "collection.json"
COLLECTION_FORMAT = "dyn_fusion.collection"


class CollectionSource(Sequence):
    """Frames of every member dataset, concatenated."""

    def __init__(self, path: Path | str):
        from fusion_core.data.shard_source import ShardSource

        self.path = Path(path)
        index_path = self.path / COLLECTION_FILE
        try:
            index = json.loads(index_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{index_path}: unreadable collection index ({exc})") from exc
        if not isinstance(index, dict) or index.get("format") != COLLECTION_FORMAT or \
                not isinstance(index.get("datasets"), list) or not index["datasets"]:
            raise ConfigError(f"{index_path}: not a {COLLECTION_FORMAT} index with a non-empty 'datasets' list")
        self.names: list[str] = [str(n) for n in index["datasets"]]
        missing = [n for n in self.names if not (self.path / n / "index.json").is_file()]
        if missing:
            raise ConfigError(f"{index_path}: member datasets missing or incomplete: {', '.join(missing)}")
        self.members: list[ShardSource] = [ShardSource(self.path / n) for n in self.names]
        self._starts = [0]
        for m in self.members:
            self._starts.append(self._starts[-1] + len(m))

    def __len__(self) -> int:
        return self._starts[-1]

    def __getitem__(self, i: int) -> FusionSample:
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} out of range for a collection of {len(self)} frames")
        k = bisect.bisect_right(self._starts, i) - 1
        return self.members[k][i - self._starts[k]]

    def blocks(self) -> list[range]:
        """Read blocks: every member's shards, shifted to collection positions."""
        return [range(start + b.start, start + b.stop) for start, m in zip(self._starts, self.members) for b in m.blocks()]

    def member_ranges(self) -> list[range]:
        """Collection positions of each member dataset."""
        return [range(a, b) for a, b in zip(self._starts[:-1], self._starts[1:])]

    def member_of(self, i: int) -> str:
        """Name of the member dataset holding frame ``i``."""
        return self.names[bisect.bisect_right(self._starts, int(i)) - 1]
