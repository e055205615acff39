"""A tiny resolver for static transform trees (the content of ``/tf_static``).

Each ``geometry_msgs/TransformStamped`` says where ``child_frame_id`` sits in
``header.frame_id``: the 4x4 matrix built from its translation and quaternion maps child
coordinates to parent coordinates (parent <- child). Composing those along the tree gives any
``target <- source`` transform, e.g. base_link <- lidar. Time is ignored: only fixed mounts.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class StaticTfError(ValueError):
    """A requested frame is unknown or not connected to the target frame."""


def matrix_from_quaternion(translation_xyz, quaternion_xyzw) -> np.ndarray:
    """(4, 4) float64 rigid transform from a translation [m] and a quaternion (x, y, z, w).

    The quaternion is normalised first: recorded quaternions are float64 round trips of
    unit quaternions and often off by ~1e-9, which would otherwise scale the points.
    """
    x, y, z, w = (float(v) for v in quaternion_xyzw)
    n = np.sqrt(x * x + y * y + z * z + w * w)
    if not np.isfinite(n) or n < 1e-9:
        raise StaticTfError(f"degenerate quaternion {(x, y, z, w)}")
    x, y, z, w = x / n, y / n, z / n, w / n
    out = np.eye(4)
    out[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    out[:3, 3] = [float(v) for v in translation_xyz]
    return out


def _norm(frame: str) -> str:
    # ROS 1 recordings often spell frames with a leading slash ("/base_link"); tf2 does not.
    return frame.lstrip("/")


class StaticTfTree:
    """Parent <- child edges of a static TF tree; :meth:`lookup` composes them."""

    def __init__(self) -> None:
        self._parent: dict[str, tuple[str, np.ndarray]] = {}  # child -> (parent, parent <- child)

    @property
    def frames(self) -> set[str]:
        return set(self._parent) | {p for p, _ in self._parent.values()}

    def add(self, parent: str, child: str, parent_from_child: np.ndarray) -> None:
        """Add (or replace: the newest static transform of a child wins, as in tf2) one edge."""
        parent, child = _norm(parent), _norm(child)
        if not parent or not child or parent == child:
            raise StaticTfError(f"invalid transform {parent!r} -> {child!r}")
        self._parent[child] = (parent, np.asarray(parent_from_child, np.float64).reshape(4, 4))

    def add_message(self, tf_message) -> None:
        """Add every ``TransformStamped`` of a ``tf2_msgs/TFMessage``-like object."""
        for ts in tf_message.transforms:
            tr, q = ts.transform.translation, ts.transform.rotation
            self.add(ts.header.frame_id, ts.child_frame_id,
                     matrix_from_quaternion((tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w)))

    @classmethod
    def from_messages(cls, tf_messages: Iterable) -> StaticTfTree:
        tree = cls()
        for msg in tf_messages:
            tree.add_message(msg)
        return tree

    def _to_root(self, frame: str) -> tuple[str, np.ndarray]:
        """(root frame, root <- frame) by walking the parent edges up from ``frame``."""
        root_from_frame = np.eye(4)
        seen = {frame}
        while frame in self._parent:
            parent, parent_from_child = self._parent[frame]
            root_from_frame = parent_from_child @ root_from_frame
            frame = parent
            if frame in seen:
                raise StaticTfError(f"static TF has a cycle through {frame!r}")
            seen.add(frame)
        return frame, root_from_frame

    def lookup(self, target: str, source: str) -> np.ndarray:
        """(4, 4) float64 transform ``target <- source`` (maps source coordinates to target)."""
        target, source = _norm(target), _norm(source)
        if target == source:
            return np.eye(4)
        known = self.frames
        for name in (target, source):
            if name not in known:
                raise StaticTfError(f"frame {name!r} is not in the static TF tree "
                                    f"(known frames: {', '.join(sorted(known)) or 'none'})")
        root_t, root_from_target = self._to_root(target)
        root_s, root_from_source = self._to_root(source)
        if root_t != root_s:
            raise StaticTfError(f"frames {target!r} and {source!r} are not connected in the static TF tree "
                                f"({target!r} hangs below {root_t!r}, {source!r} below {root_s!r})")
        # rigid inverse (R^T, -R^T t): exact where a general matrix inverse would add rounding
        rot, trans = root_from_target[:3, :3], root_from_target[:3, 3]
        target_from_root = np.eye(4)
        target_from_root[:3, :3] = rot.T
        target_from_root[:3, 3] = -rot.T @ trans
        return target_from_root @ root_from_source


# ------------------------------------------------------------------ calibration files
# The pip rclpy of a machine without a ROS install cannot carry tf2_msgs, so the live stack can
# also be handed the mounts as a small YAML file (``dyn-fusion up`` writes it from the rig,
# ``dyn-fusion replay`` from the bag's /tf_static):
#
#   transforms:
#     - {parent: base_link, child: lidar_link, matrix: [[r00, r01, r02, x], ..., [0, 0, 0, 1]]}

def save_static_tf(path, tree: StaticTfTree) -> None:
    """Write every edge of ``tree`` (parent <- child 4x4 matrices) to the YAML file ``path``."""
    import yaml

    edges = [{"parent": parent, "child": child, "matrix": [[float(v) for v in row] for row in matrix]}
             for child, (parent, matrix) in sorted(tree._parent.items())]
    with open(path, "w") as f:
        f.write("# Static transforms (parent <- child, 4x4 row-major, metres), as /tf_static would carry them.\n")
        yaml.safe_dump({"transforms": edges}, f, sort_keys=False)


def load_static_tf(path) -> StaticTfTree:
    """Read a file written by :func:`save_static_tf`; StaticTfError naming the file and the
    entry for a malformed one (not a list, a missing key, a matrix that is not a rigid 4x4)."""
    from fusion_core.config_io import ConfigError, read_yaml

    try:
        data = read_yaml(path)
    except ConfigError as exc:
        raise StaticTfError(f"cannot read the calibration file: {exc}") from None
    entries = data.get("transforms") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise StaticTfError(f"{path}: expected a mapping with a 'transforms' list")
    tree = StaticTfTree()
    for k, entry in enumerate(entries):
        where = f"{path}: transforms[{k}]"
        if not isinstance(entry, dict) or not {"parent", "child", "matrix"} <= set(entry):
            raise StaticTfError(f"{where}: expected keys parent, child, matrix")
        try:
            matrix = np.asarray(entry["matrix"], np.float64)
        except (TypeError, ValueError):
            raise StaticTfError(f"{where}: matrix is not numeric") from None
        if matrix.shape != (4, 4) or not np.isfinite(matrix).all() or not np.allclose(matrix[3], [0, 0, 0, 1]) \
                or not np.allclose(matrix[:3, :3] @ matrix[:3, :3].T, np.eye(3), atol=1e-6):
            raise StaticTfError(f"{where}: matrix must be a finite rigid 4x4 transform")
        tree.add(str(entry["parent"]), str(entry["child"]), matrix)
    return tree
