"""Opening a dataset path: one registered family of dataset formats (a simulator shard dataset, a
collection of them, a rosbag), detected from the path or named.

A format is a ``DatasetFormat`` entry in ``FORMATS``: how to recognise a path of that format and how
to open it as a ``Sequence[FusionSample]``. Its reader lives in its own module and is imported only
when a path of that format is opened, so listing the formats stays cheap.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusion_core.config_io import ConfigError
from fusion_core.data.sample import FusionSample


@dataclass(frozen=True)
class DatasetFormat:
    """One dataset format: ``detect(path)`` says whether ``path`` is one (cheap: file names, no
    reading of data), ``open(path, topics)`` returns its frames in ``base_link``; ``topics`` is the
    topic-mapping YAML a format may use (bags), or None for its default."""

    name: str                                                   # the ``--format`` value
    description: str                                            # one line, for errors and --help
    detect: Callable[[Path], bool]
    open: Callable[[Path, Path | None], Sequence[FusionSample]]


def _open_collection(path: Path, topics: Path | None) -> Sequence[FusionSample]:
    from fusion_core.data.collection_source import CollectionSource
    return CollectionSource(path)


def _open_shards(path: Path, topics: Path | None) -> Sequence[FusionSample]:
    from fusion_core.data.shard_source import ShardSource
    return ShardSource(path)


def _is_rosbag(path: Path) -> bool:
    in_folder = path.is_dir() and ((path / "metadata.yaml").is_file() or any(path.glob("*.mcap"))
                                   or any(path.glob("*.db3")))
    return in_folder or path.suffix in (".bag", ".mcap", ".db3")


def _open_rosbag(path: Path, topics: Path | None) -> Sequence[FusionSample]:
    from fusion_core.data.rosbag_source import RosbagSource
    from fusion_core.data.topic_mapping import TopicMapping, data_config_dir
    return RosbagSource(path, TopicMapping.load(topics or data_config_dir() / "sim_bag.yaml"))


# Detection tries the formats in this order; the first whose detect() holds opens the path.
FORMATS: dict[str, DatasetFormat] = {f.name: f for f in (
    DatasetFormat("collection", "a collection of shard datasets (collection.json)",
                  lambda p: (p / "collection.json").is_file(), _open_collection),
    DatasetFormat("shards", "a simulator shard dataset (index.json)",
                  lambda p: (p / "index.json").is_file(), _open_shards),
    DatasetFormat("rosbag", "a rosbag (rosbag2 folder with metadata.yaml, .mcap, .db3, or a ROS 1 .bag)",
                  _is_rosbag, _open_rosbag),
)}


def open_source(path: Path | str, topics: Path | str | None = None,
                format: str | None = None) -> Sequence[FusionSample]:
    """A Sequence[FusionSample] over ``path``, in the format named by ``format`` (a ``FORMATS``
    key) or else the first one that recognises it; ``topics`` is the topic-mapping YAML for bags
    (default: the simulator's own topics)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"data: {path} does not exist")
    topics = Path(topics) if topics is not None else None
    if format is not None:
        if format not in FORMATS:
            raise ConfigError(f"data: unknown format {format!r} (known: {', '.join(FORMATS)})")
        return FORMATS[format].open(path, topics)
    for candidate in FORMATS.values():
        if candidate.detect(path):
            return candidate.open(path, topics)
    raise ConfigError(f"data: {path} is none of the known formats: "
                      + "; ".join(f"{f.name} ({f.description})" for f in FORMATS.values()))


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


def source_drops(data) -> dict[str, int]:
    """What a bag source left out while reading, as "<sensor>:<cause>" -> count (the keys of a
    replay report's drops; empty for shard data, which has nothing to drop)."""
    drops = getattr(data, "drops", None) or {}
    return {f"{sensor}:{cause}": int(n) for (sensor, cause), n in sorted(drops.items())}


def source_error(data) -> str | None:
    """Where and why a bag source stopped reading early at damage (its frames are those of the
    messages before that point), in the words of a replay report's ``source_error``; None when
    it read to its end (and for shard data)."""
    return getattr(data, "source_error", None)


def source_warnings(data) -> list[str]:
    """What a bag says wrongly of itself and how it was read all the same (a metadata.yaml that
    declares a topic with another type than its storage records: the storage's type was used),
    one line each, in the words of a replay report's ``source_warnings``; [] for shard data."""
    return list(getattr(data, "source_warnings", None) or [])


def source_error_note(data) -> str:
    """The paragraphs an evaluation's markdown opens with when its source stopped early or
    disagreed with itself (as a replay report's do), '' otherwise: frames cut off by damage are
    never lost silently, and a bag read against its own metadata says so."""
    error = source_error(data)
    note = "" if error is None else (f"**The source stopped early**: {error}. Everything before that point was "
                                     f"evaluated and is reported below.\n\n")
    return note + "".join(f"**The source disagrees with itself**: {w}.\n\n" for w in source_warnings(data))


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
