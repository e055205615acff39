"""Pacing and accounting of a bag replay (pure: no rclpy).

:class:`PlaybackClock` maps a recording's log times onto the wall clock at a playback rate;
:class:`PlaybackReport` counts what was published and what was skipped, records where reading
stopped, and renders the player's one-line summary and exit code.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

EXIT_OK = 0            # played to the end (or stopped by SIGINT)
EXIT_BAG_DAMAGED = 1   # reading stopped early: every readable message was still played
EXIT_USAGE = 2         # no such bag, or bad parameters

_NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class PlaybackClock:
    """Log time -> wall time: ``start_wall_s + (log_ns - first_log_ns) / 1e9 / rate``.

    ``first_log_ns`` is the log time played at ``start_wall_s`` (the first message's); ``rate``
    > 1 plays faster than recorded. Log times before ``first_log_ns`` (a salvaged bag out of
    order) are due at once: time never runs backwards.
    """

    first_log_ns: int
    start_wall_s: float
    rate: float = 1.0

    def __post_init__(self):
        if not self.rate > 0.0:
            raise ValueError(f"rate must be > 0, got {self.rate}")

    def due_wall_s(self, log_ns: int) -> float:
        """Wall time [s, same clock as start_wall_s] at which ``log_ns`` is to be published."""
        return self.start_wall_s + max(0, log_ns - self.first_log_ns) / _NS_PER_S / self.rate

    def wait_s(self, log_ns: int, now_wall_s: float) -> float:
        """Seconds to wait from ``now_wall_s`` until ``log_ns`` is due (0 when it is late)."""
        return max(0.0, self.due_wall_s(log_ns) - now_wall_s)


@dataclass
class PlaybackReport:
    """What one replay did; ``summary()`` is the player's final log line."""

    published: Counter[str] = field(default_factory=Counter)            # topic -> messages published
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)  # (topic, reason) -> messages
    clock_messages: int = 0                                            # /clock messages published
    read_error: str | None = None                                      # where and why reading stopped early
    warnings: list[str] = field(default_factory=list)                  # what the bag says wrongly of itself
    interrupted: bool = False                                          # stopped by SIGINT / SIGTERM
    wall_duration_s: float = 0.0                                       # from the first message to the end
    first_log_ns: int | None = None
    last_log_ns: int | None = None

    def count(self, log_ns: int) -> None:
        """Note the log time of a message read (published or not)."""
        if self.first_log_ns is None:
            self.first_log_ns = log_ns
        self.last_log_ns = log_ns if self.last_log_ns is None else max(self.last_log_ns, log_ns)

    @property
    def bag_duration_s(self) -> float:
        """Log time covered by the messages read [s]."""
        if self.first_log_ns is None:
            return 0.0
        return (self.last_log_ns - self.first_log_ns) / _NS_PER_S

    @property
    def exit_code(self) -> int:
        return EXIT_BAG_DAMAGED if self.read_error else EXIT_OK

    def summary(self) -> str:
        """One line: outcome, messages published per topic, skipped per topic and reason, times."""
        outcome = ("reading stopped early" if self.read_error else
                   "interrupted" if self.interrupted else "played to the end")
        published = ", ".join(f"{t} {n}" for t, n in sorted(self.published.items())) or "none"
        skipped = "; ".join(f"{t} {n} ({reason})" for (t, reason), n in sorted(self.skipped.items())) or "none"
        line = (f"bag_player: {outcome}: published {sum(self.published.values())} messages [{published}], "
                f"/clock {self.clock_messages}; skipped {sum(self.skipped.values())} [{skipped}]; "
                f"bag time {self.bag_duration_s:.3f} s in wall time {self.wall_duration_s:.3f} s")
        if self.read_error:
            line += f"; error: {self.read_error}"
        if self.warnings:
            line += "; " + "; ".join(self.warnings)
        return line
