"""What a sensor source (``sim_node``, ``bag_player``) published, per topic, for the run record.

A message lost inside DDS is invisible to the receiver; only the sender's count shows it. At the
end of its run a source publishes its counts once, latched and reliable, on
:data:`SOURCE_COUNTS_TOPIC` as a ``std_msgs/String`` holding JSON::

    {"node": "sim_node", "published": {"/sensors/lidar/points": 300, ...}, "error": null, "warnings": []}

``error`` says why the source stopped early (a damaged bag: where reading stopped), else null;
``warnings`` what the bag says wrongly of itself although it was read (a metadata.yaml type the
storage contradicts; optional, [] when absent).
The energy monitor records it and the run report sets it beside what ``fusion_node`` received:
``published - received`` per sensor is the transport loss no node could count.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SOURCE_COUNTS_TOPIC = "/dyn_fusion/source_published"
SOURCE_COUNTS_TYPE = "std_msgs/msg/String"


@dataclass(frozen=True)
class SourceCounts:
    node: str                       # the source node's name
    published: dict[str, int]       # topic -> messages published
    error: str | None = None        # why the source stopped early; None when it ran to its end
    warnings: tuple[str, ...] = ()  # what the bag says wrongly of itself (read all the same)


def encode_source_counts(node: str, published: Mapping[str, int], error: str | None = None,
                         warnings: Sequence[str] = ()) -> str:
    return json.dumps({"node": node, "published": {t: int(n) for t, n in sorted(published.items())}, "error": error,
                       "warnings": list(warnings)})


def decode_source_counts(text: str) -> SourceCounts:
    """ValueError (naming what is wrong) for anything but the documented JSON."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"source counts: not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("node"), str) or not isinstance(data.get("published"), dict):
        # a malformed message, not a caller's bug: ValueError like every other decoding failure
        raise ValueError("source counts: expected {\"node\": str, \"published\": {topic: count}}")
    published = data["published"]
    if not all(isinstance(t, str) and isinstance(n, int) and n >= 0 for t, n in published.items()):
        raise ValueError("source counts: every count must be a non-negative integer keyed by topic")
    error = data.get("error")
    if error is not None and not isinstance(error, str):
        raise ValueError("source counts: error must be a string or null")
    warnings = data.get("warnings", [])
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        raise ValueError("source counts: warnings must be a list of strings")
    return SourceCounts(data["node"], dict(published), error, tuple(warnings))
