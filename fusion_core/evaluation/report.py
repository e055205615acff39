"""The README's results tables as markdown: mAP per group for every exit of the all-sensor
model, and the last exit's mAP per group with each detection sensor alone."""
from __future__ import annotations

from collections.abc import Mapping

from fusion_core.metrics.model_eval import ModelEvaluation


def groups_in_order(groups) -> list[str]:
    """"all", then conditions, then faults, each alphabetical."""
    rest = sorted(g for g in groups if g != "all")
    return ["all"] + [g for g in rest if g.startswith("condition:")] + [g for g in rest if not g.startswith("condition:")]


def _cell(value: float | None, bold: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"**{value:.3f}**" if bold else f"{value:.3f}"


def exits_table(result: ModelEvaluation) -> str:
    """Rows: groups (with frame counts); columns: mAP of every exit."""
    n_exits = len(result.per_exit)
    lines = ["| group | frames | " + " | ".join(f"exit {k}" for k in range(n_exits)) + " |",
             "|---|---:|" + "---:|" * n_exits]
    for g in groups_in_order(result.per_exit[-1]):
        frames = result.per_exit[-1][g].n_frames
        lines.append(f"| {g} | {frames} | " + " | ".join(_cell(per[g].mean_ap) for per in result.per_exit) + " |")
    return "\n".join(lines)


def single_sensor_table(per_sensor: Mapping[str, ModelEvaluation]) -> str:
    """Rows: groups; columns: the last exit's mAP with only that sensor present; the best
    sensor of each row in bold."""
    names = list(per_sensor)
    groups = groups_in_order(next(iter(per_sensor.values())).per_exit[-1])
    lines = ["| group | " + " | ".join(f"{s} only" for s in names) + " | best |",
             "|---|" + "---:|" * len(names) + "---|"]
    for g in groups:
        values = [per_sensor[s].per_exit[-1][g].mean_ap if g in per_sensor[s].per_exit[-1] else None for s in names]
        defined = [v for v in values if v is not None]
        best = max(defined) if defined else None
        winner = names[values.index(best)] if best is not None else "n/a"
        lines.append(f"| {g} | " + " | ".join(_cell(v, v is not None and v == best) for v in values) + f" | {winner} |")
    return "\n".join(lines)

