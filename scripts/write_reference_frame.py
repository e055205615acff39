#!/usr/bin/env python3
"""Writes the reference frame shipped beside the model (``models/default_reference/``): the frame
``fusion_node`` warms up on and measures its cost table and the deadline policy's stage times on,
so the node needs no simulator at start-up.

It is the first frame of the ``default`` scenario in which every detection sensor has data, as
a shard dataset (``docs/shard_format.md``) that holds the frames up to and including it: the
writer builds each frame's IMU window from the frames before it, so the stored frame is the very
one a longer simulation of the scenario gives. The simulator is deterministic in the scenario's
seed: running this again writes the same bytes.

    .venv/bin/python scripts/write_reference_frame.py [--out models/default_reference]

Works from any directory (paths are taken relative to the repository).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fusion_core.vocabulary import DETECTION_SENSORS
from sim.config import load_scenario, resolve_scenario
from sim.simulator import Simulator
from sim.writers.shards import ShardWriter

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = "default"
# fusion_node simulated 3 frames of the scenario and took the first full one; the first frame
# already is (every sensor captures at time 0), so the dataset holds that one frame.
MAX_FRAMES = 3


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "models" / "default_reference",
                   help="shard dataset directory to (over)write")
    args = p.parse_args()
    simulator = Simulator(load_scenario(resolve_scenario(SCENARIO)))
    frames = []
    for frame in simulator.run(MAX_FRAMES):
        frames.append(frame)
        if all(frame.latest(s) is not None for s in DETECTION_SENSORS):
            break
    else:
        sys.exit(f"scenario {SCENARIO!r}: no frame with every detection sensor in the first {MAX_FRAMES}")
    with ShardWriter(args.out, simulator, overwrite=True) as writer:
        for frame in frames:
            writer.write_frame(frame)
    summary = writer.close()
    print(f"{summary['path']}: frame {frames[-1].index} of scenario {SCENARIO!r} "
          f"({summary['frames']} frame(s), {summary['bytes'] / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
