"""Writing a benchmark's result: JSON under benchmarks/results/ (quoted in the README), echoed."""
from __future__ import annotations

import json
from pathlib import Path


def write_result(path: Path, result: dict, echo: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    if echo:
        print(json.dumps(result, indent=2))
