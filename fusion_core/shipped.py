"""Where the files shipped with the project (``configs/``, ``models/``) are: the source tree in a
checkout or an editable install, else the ament share folder of an install.

The one place that knows the layouts, so every loader of a shipped scenario, profile, mapping,
parameter file, model or gates file finds it the same way from any working directory.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

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


def resolve_input(path: str | Path) -> Path:
    """A file or folder a user named: ``path`` as given when it exists (absolute, or relative to
    the working directory: the user's own file always wins); else, for a relative path, the
    shipped one of that name, so the defaults (``models/default.pt``, ``models/default_gates.pt``,
    ``models/default_reference``) work from any directory and from an install; else ``path``
    unchanged, for the caller's not-found error to name."""
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    shipped = shipped_path(str(path))
    if shipped.exists():
        log.info("%s is not in %s; using the shipped %s", path, Path.cwd(), shipped)
        return shipped
    return path
