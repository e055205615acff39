"""Opening a dataset path: a simulator shard directory or a rosbag (rosbag2 MCAP/sqlite3, ROS 1)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fusion_core.config_io import ConfigError
from fusion_core.data.sample import FusionSample


def open_source(path: Path | str, topics: Path | str | None = None) -> Sequence[FusionSample]:
    """A Sequence[FusionSample] over ``path`` (a shard dataset, a collection of them, or a
    rosbag); ``topics`` is the topic-mapping YAML for bags (default: the simulator's own topics)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"data: {path} does not exist")
    if (path / "collection.json").is_file():
        from fusion_core.data.collection_source import CollectionSource
        return CollectionSource(path)
    if (path / "index.json").is_file():
        from fusion_core.data.shard_source import ShardSource
        return ShardSource(path)
    is_bag = (path.is_dir() and ((path / "metadata.yaml").is_file() or any(path.glob("*.mcap")) or any(path.glob("*.db3")))) \
        or path.suffix in (".bag", ".mcap", ".db3")
    if not is_bag:
        raise ConfigError(f"data: {path} is neither a shard dataset (index.json), a collection (collection.json) "
                          "nor a rosbag")
    from fusion_core.data.rosbag_source import RosbagSource
    from fusion_core.data.topic_mapping import TopicMapping, data_config_dir
    return RosbagSource(path, TopicMapping.load(topics or data_config_dir() / "sim_bag.yaml"))


class FrameSubset(Sequence):
    """Some frames of a source, in the given order; keeps the source's read blocks."""

    def __init__(self, source: Sequence[FusionSample], indices: Sequence[int]):
        self.source, self.indices = source, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> FusionSample:
        return self.source[self.indices[i]]

    def blocks(self) -> list[range]:
        """Runs of subset positions whose frames lie in one read block of the source."""
        block_of = {}
        for b, block in enumerate(source_blocks(self.source)):
            block_of.update(dict.fromkeys(block, b))
        out, start = [], 0
        for i in range(1, len(self.indices) + 1):
            if i == len(self.indices) or block_of[self.indices[i]] != block_of[self.indices[start]]:
                out.append(range(start, i))
                start = i
        return out


def spread_indices(n_total: int, n: int | None) -> list[int]:
    """Up to ``n`` frame indices spread evenly over ``range(n_total)``, ascending (all of them
    when ``n`` is None or not smaller): every run and condition of a collection is represented."""
    if n is None or n >= n_total:
        return list(range(n_total))
    return np.unique(np.linspace(0, n_total - 1, n).round().astype(int)).tolist()


def split_tail(source: Sequence[FusionSample], fraction: float) -> tuple[Sequence[FusionSample], Sequence[FusionSample]]:
    """(train, val): the last ``fraction`` of frames become validation; in a collection, the
    last ``fraction`` of every member (so every condition is validated). A contiguous tail, not
    a random pick, because neighbouring frames are near-duplicates and would leak into validation."""
    member_ranges = getattr(source, "member_ranges", None)
    parts = member_ranges() if callable(member_ranges) else [range(len(source))]
    train, val = [], []
    for part in parts:
        cut = part.stop - round(len(part) * fraction)
        train.extend(range(part.start, cut))
        val.extend(range(cut, part.stop))
    return FrameSubset(source, train), FrameSubset(source, val)


def source_blocks(source: Sequence[FusionSample]) -> list[range]:
    """Index blocks read together (a shard source's shards, via its ``blocks()``), else runs of 64."""
    blocks = getattr(source, "blocks", None)
    if callable(blocks):
        return list(blocks())
    return [range(i, min(i + 64, len(source))) for i in range(0, len(source), 64)]
