"""Where the files shipped with the project (``configs/``, ``models/``) are: the source tree in a
checkout or an editable install, else the ament share folder of an install.

The one place that knows the layouts, so every loader of a shipped scenario, profile, mapping or
parameter file finds it the same way from any working directory.
"""
from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "dyn_fusion"  # the ROS package name: <prefix>/share/dyn_fusion holds the shipped files


def shipped_path(relative: str) -> Path:
    """``relative`` (``"configs/energy"``, ``"configs/vehicle.yaml"``) in the source tree, else in
    the share folder of the prefix this module is installed under
    (``<prefix>/lib/python3.X/site-packages/fusion_core``: a colcon install space or a venv), else
    in the interpreter's. When none exists, the last candidate (errors then name a real location)."""
    module = Path(__file__).resolve()
    candidates = [module.parents[1] / relative]
    if len(module.parents) > 4:
        candidates.append(module.parents[4] / "share" / PACKAGE / relative)
    candidates.append(Path(sys.prefix) / "share" / PACKAGE / relative)
    return next((c for c in candidates if c.exists()), candidates[-1])
