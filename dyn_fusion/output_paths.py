"""Output paths checked before a command does its work (not after an hour of evaluation)."""
from __future__ import annotations

from pathlib import Path

from fusion_core.config_io import ConfigError


def check_output(path: Path | None, option: str, folder: bool = False) -> None:
    """ConfigError before any work when ``path`` cannot be written: a parent is a file, or the
    path is a folder where a file goes (or a file where a folder goes)."""
    if path is None:
        return
    if path.exists() and path.is_dir() != folder:
        raise ConfigError(f"{option} {path}: is a {'folder' if path.is_dir() else 'file'}; expected a {'folder' if folder else 'file'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{option} {path}: {parent} is a file, not a folder")
            break
