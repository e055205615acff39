"""Header-stamp synchroniser: groups the messages of several sensor streams into frames.

Pure logic, no rclpy: the fusion node feeds it from its subscription callbacks, tests feed it
directly. Approximate-time policy driven by a *pivot* stream (normally the LiDAR):

- every pivot message defines one frame at its stamp ``P``;
- every other *one-message* role contributes at most one message, stamped within
  ``tolerance_s`` of ``P``: the nearest one (ties: the older message) among those nearer ``P``
  than the previous emitted pivot and the next pending one (a message exactly between two
  pivots belongs to the older); a message is never used twice;
- the IMU role contributes every sample stamped in ``(max(P - imu_window_s, P_prev), P]``,
  ``P_prev`` being the pivot of the previous emitted frame, so consecutive windows never overlap
  and every sample is used at most once;
- a frame is emitted, in increasing pivot-stamp order and never twice, when no better partner
  can still arrive for any role (see below) or when the newest stamp seen is ``max_wait_s`` past
  ``P``; roles without a partner are listed in ``SyncedFrame.absent`` with a reason.

Time comes from message stamps only (never the wall clock), so bag replay and live use_sim_time
behave the same. Stamps are integer nanoseconds and every comparison is exact (the config's
seconds are converted to integer nanoseconds once).

When is a role settled for frame ``P``? Messages of one role are assumed to arrive in stamp
order (true per topic for a bag and, normally, live), so a later message is newer than the
newest seen. With ``wait_for_nearest`` (default) a frame waits until the role's stream has
reached ``P + d``, ``d`` being the distance of its best partner so far (``tolerance_s`` if it has
none): nothing nearer can come after that. The frame content then does not depend on how the
streams interleave, only on the stamps, unless a frame times out or two pivots are closer than
``2 * tolerance_s`` (a partner stamped after ``P`` is given to ``P`` if the next pivot has not
arrived yet). The price is latency: a partner stamped just before ``P`` is confirmed only by the
role's next message (bounded by ``max_wait_s``). ``wait_for_nearest=False`` emits as soon as
every role has a partner within tolerance (lowest latency, frames may depend on arrival order).

Accounting: every message received either joins exactly one emitted frame, is still pending
(:meth:`StampSynchroniser.pending_count`) or is counted in ``drops[(role, cause)]``, causes
checked in this order at arrival:

    duplicate_stamp  same role and stamp as a recently accepted message
    out_of_order     older than the newest accepted message of its role (its stream went back in
                     time: the offline bag reader drops it by the same rule, so evaluate and
                     replay make the same frames), or older than the last emitted pivot minus
                     tolerance: fits no frame left
    late             within tolerance of the last emitted pivot but not newer than it: its frame is gone

and later:

    unmatched        left behind by the frame it was nearest to (another message was nearer, or it
                     lies outside tolerance / before the IMU window), or still pending at flush
    queue_overflow   evicted (oldest first) from a full per-role queue; for the pivot role this
                     drops the oldest pending frame

A role can be put in standby (sensor powered down): frames do not wait for it; a message of it
that is already there is still used, otherwise it is absent with reason "standby".

Pivot fallback. Without pivot messages there are no frames, so a dead pivot (the LiDAR failing
mid-run) would silence the whole stack. When the pivot has been silent for ``pivot_timeout_s``
of stamp time (the newest stamp of any role minus the pivot's newest, or minus the first stamp
seen if it never spoke), the first role of ``fallback_pivots`` that is live (spoke within
``pivot_timeout_s``) and not in standby becomes the pivot; as soon as a role earlier in the order
``(pivot, *fallback_pivots)`` speaks again, it takes the pivot back. At a switch the frames
pending on the old pivot are emitted at once (partners still missing are absent with
"timeout"), then the new pivot's pending messages define the next frames; no message is lost
or counted twice. Putting the pivot itself in standby hands the pivot to the first fallback
that is not in standby (ValueError if there is none). ``pivot_changes`` records every switch.
"""
from __future__ import annotations

import bisect
import math
import operator
from collections import Counter
from dataclasses import dataclass
from typing import Any

from fusion_core.config_io import ConfigError, param
from fusion_core.vocabulary import DUPLICATE_STAMP, OUT_OF_ORDER

NS_PER_S = 1_000_000_000

# drop causes, in the order they are checked (see the module doc)
DROP_CAUSES: tuple[str, ...] = (DUPLICATE_STAMP, OUT_OF_ORDER, "late", "unmatched", "queue_overflow")
# why a role has no partner in a frame
ABSENCE_REASONS: tuple[str, ...] = (
    "missing",   # the role's stream went past the frame's tolerance (IMU: past the pivot) without one
    "timeout",   # max_wait_s passed (or flush) while one could still have arrived: stream late or dead
    "standby",   # the role is in standby, so the frame did not wait for it
)


def seconds_to_ns(seconds: float) -> int:
    """Seconds -> integer nanoseconds, rounded once (0.05 s -> 50_000_000 exactly)."""
    return round(seconds * NS_PER_S)


@dataclass(frozen=True)
class StampSyncConfig:
    """How :class:`StampSynchroniser` groups messages into frames (seconds here, integer ns inside)."""

    pivot: str = param("lidar", "role whose message stamps define the frames (one frame per pivot message)")
    roles: tuple[str, ...] = param(("lidar", "radar", "rgb", "depth", "imu"),
                                   "every role fed to the synchroniser, the pivot included")
    imu_role: str = param("imu", "role gathered as a window of samples per frame instead of one message "
                                 "('' = none)")
    tolerance_s: float = param(0.05, "largest |stamp - pivot stamp| for a message to join the pivot's frame",
                               lo=0.0, hi=10.0)
    max_wait_s: float = param(0.15, "stamp time a frame waits for late roles before it is emitted without them",
                              lo=0.0, hi=60.0)
    queue_size: int = param(16, "pending messages kept per one-message role and pending frames (oldest dropped)",
                            lo=1, hi=100_000)
    imu_queue_size: int = param(512, "pending IMU samples kept (>= rate x (imu_window_s + max_wait_s))",
                                lo=1, hi=1_000_000)
    imu_window_s: float = param(0.1, "IMU samples up to this long before the pivot stamp join its frame",
                                lo=0.0, hi=10.0)
    wait_for_nearest: bool = param(True, "wait until no nearer partner can come (False: emit on the first "
                                         "partner within tolerance, lower latency)")
    fallback_pivots: tuple[str, ...] = param((),
                                             "roles that take over as pivot, in this order, while the pivot is "
                                             "silent (() = none)")
    pivot_timeout_s: float = param(0.3, "stamp time the pivot may be silent before a live fallback takes over",
                                   lo=0.0, hi=60.0)

    def __post_init__(self):
        if isinstance(self.roles, str) or not all(isinstance(r, str) and r for r in self.roles):
            raise ConfigError(f"roles: expected a list of non-empty role names, got {self.roles!r}")
        object.__setattr__(self, "roles", tuple(self.roles))  # a list from Python callers; keep it hashable
        if len(set(self.roles)) != len(self.roles):
            raise ConfigError(f"roles: duplicate role names in {self.roles!r}")
        if self.pivot not in self.roles:
            raise ConfigError(f"pivot: {self.pivot!r} is not one of the roles {self.roles!r}")
        if self.imu_role and self.imu_role not in self.roles:
            raise ConfigError(f"imu_role: {self.imu_role!r} is not one of the roles {self.roles!r} "
                              "(use '' for no IMU role)")
        if self.imu_role == self.pivot:
            raise ConfigError(f"imu_role: the pivot {self.pivot!r} cannot also be the windowed IMU role")
        for name in ("tolerance_s", "max_wait_s", "imu_window_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                raise ConfigError(f"{name}: expected a finite number >= 0, got {value!r}")
        if self.imu_window_s <= 0:
            raise ConfigError(f"imu_window_s: must be > 0, got {self.imu_window_s!r}")
        if self.max_wait_s < self.tolerance_s:
            # a partner stamped tolerance_s after the pivot must be able to arrive before the frame gives up
            raise ConfigError(f"max_wait_s: {self.max_wait_s!r} is below tolerance_s {self.tolerance_s!r}")
        for name in ("queue_size", "imu_queue_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: expected an integer >= 1, got {value!r}")
        if not isinstance(self.wait_for_nearest, bool):
            raise ConfigError(f"wait_for_nearest: expected true/false, got {self.wait_for_nearest!r}")
        if isinstance(self.fallback_pivots, str):
            raise ConfigError(f"fallback_pivots: expected a list of role names, got {self.fallback_pivots!r}")
        object.__setattr__(self, "fallback_pivots", tuple(self.fallback_pivots))
        for role in self.fallback_pivots:
            if role not in self.roles or role in (self.pivot, self.imu_role):
                raise ConfigError(f"fallback_pivots: {role!r} must be one of the roles other than the pivot and "
                                  f"the IMU role ({self.roles!r})")
        if len(set(self.fallback_pivots)) != len(self.fallback_pivots):
            raise ConfigError(f"fallback_pivots: duplicate role names in {self.fallback_pivots!r}")
        value = self.pivot_timeout_s
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"pivot_timeout_s: expected a finite number > 0, got {value!r}")

    @property
    def tolerance_ns(self) -> int:
        return seconds_to_ns(self.tolerance_s)

    @property
    def max_wait_ns(self) -> int:
        return seconds_to_ns(self.max_wait_s)

    @property
    def imu_window_ns(self) -> int:
        return seconds_to_ns(self.imu_window_s)

    @property
    def pivot_timeout_ns(self) -> int:
        return seconds_to_ns(self.pivot_timeout_s)


@dataclass(frozen=True)
class SyncedFrame:
    """One synchronised frame. A role is in exactly one of ``messages``, ``absent`` or (the IMU
    role, when it has samples) ``imu``."""

    stamp_ns: int                     # the pivot's header stamp [ns]
    pivot: str                        # the role that was the pivot (see "Pivot fallback")
    messages: dict[str, Any]          # one-message role (pivot included) -> its message
    stamps_ns: dict[str, int]         # role -> header stamp [ns] of messages[role]
    imu: list[tuple[int, Any]]        # (stamp_ns, sample) of the IMU window, oldest first
    absent: dict[str, str]            # role -> reason, one of ABSENCE_REASONS


class _Queue:
    """Pending messages of one role, sorted by stamp (parallel lists, so bisect works on stamps)."""

    __slots__ = ("msgs", "stamps")

    def __init__(self):
        self.stamps: list[int] = []
        self.msgs: list[Any] = []

    def __len__(self) -> int:
        return len(self.stamps)

    def insert(self, stamp: int, msg: Any) -> None:
        i = bisect.bisect_right(self.stamps, stamp)
        self.stamps.insert(i, stamp)
        self.msgs.insert(i, msg)

    def pop(self, i: int) -> tuple[int, Any]:
        return self.stamps.pop(i), self.msgs.pop(i)

    def take_until(self, k: int) -> list[tuple[int, Any]]:
        """Remove and return the first ``k`` (oldest) entries."""
        out = list(zip(self.stamps[:k], self.msgs[:k]))
        del self.stamps[:k], self.msgs[:k]
        return out


class StampSynchroniser:
    """Feed messages with :meth:`add`; it returns the frames they complete (see the module doc).

    ``drops`` counts dropped messages by ``(role, cause)``, ``received`` every message by role,
    so ``received[r] == joined[r] + sum of drops[(r, *)] + pending_count(r)`` at any time.
    """

    def __init__(self, config: StampSyncConfig):
        self.config = config
        self.drops: Counter[tuple[str, str]] = Counter()
        self.received: Counter[str] = Counter()
        self._tol = config.tolerance_ns
        self._max_wait = config.max_wait_ns
        self._window = config.imu_window_ns
        self._imu = config.imu_role or None
        self._preference = (config.pivot, *config.fallback_pivots)  # pivot candidates, best first
        self._rank = {role: i for i, role in enumerate(self._preference)}
        self._pivot_timeout = config.pivot_timeout_ns
        self._queues = {role: _Queue() for role in config.roles}  # the pivot's queue = the pending frames
        self._standby: set[str] = set()
        self.pivot_changes: list[tuple[int, str, str]] = []  # (stamp time [ns], from role, to role)
        self._set_pivot(config.pivot)
        self._reset_time()

    def _reset_time(self) -> None:
        self._high_ns: dict[str, int] = {}   # newest accepted stamp per role: its stream has reached it
        self._now_ns: int | None = None      # newest accepted stamp of any role: the clock of max_wait
        self._first_ns: int | None = None    # first accepted stamp: a pivot that never spoke is silent since
        self._last_ns: int | None = None     # pivot stamp of the last emitted frame
        # recently accepted stamps per role, an insertion-ordered set capped at 4 queues' worth so
        # memory stays bounded even when no frame is emitted (a duplicate older than that is not
        # recognised as one and falls to the time checks instead)
        self._seen: dict[str, dict[int, None]] = {role: {} for role in self.config.roles}

    # ------------------------------------------------------------------ public API
    @property
    def standby(self) -> frozenset[str]:
        """Roles currently in standby."""
        return frozenset(self._standby)

    @property
    def pivot(self) -> str:
        """The role whose messages define the frames now (the configured pivot or a fallback)."""
        return self._pivot

    def add(self, role: str, stamp_ns: int, msg: Any) -> list[SyncedFrame]:
        """Take one message of ``role`` stamped ``stamp_ns`` (header stamp, integer ns); return the
        frames, oldest first, that it completed or timed out (often none)."""
        queue = self._queue(role)
        stamp = operator.index(stamp_ns)  # TypeError for a float: stamps are integer nanoseconds
        self.received[role] += 1
        cause = self._reject_cause(role, stamp)
        if cause is not None:
            self._drop(role, cause, 1)
            return []
        seen = self._seen[role]
        seen[stamp] = None
        if len(seen) > 4 * self._limit(role):
            del seen[next(iter(seen))]
        self._high_ns[role] = max(self._high_ns.get(role, stamp), stamp)
        self._now_ns = stamp if self._now_ns is None else max(self._now_ns, stamp)
        if self._first_ns is None:
            self._first_ns = stamp
        queue.insert(stamp, msg)
        frames = self._check_pivot(role)
        # emit before trimming: the message may complete a frame that takes the oldest entry
        frames += self._emit_ready(force=False)
        if len(queue) > self._limit(role):
            self._drop(role, "queue_overflow", len(queue.take_until(len(queue) - self._limit(role))))
            frames += self._emit_ready(force=False)  # a dropped head frame may unblock the next one
        return frames

    def set_standby(self, role: str, on: bool = True) -> list[SyncedFrame]:
        """Put ``role`` in standby (frames stop waiting for it) or take it out; returns the frames
        that were waiting only for it."""
        self._queue(role)
        if not on:
            self._standby.discard(role)
            return []
        frames = []
        if role == self._pivot:
            heir = next((r for r in self._preference if r != role and r not in self._standby), None)
            if heir is None:
                raise ValueError(f"the pivot role {role!r} cannot be in standby: no fallback pivot is awake "
                                 f"to define the frames (fallback_pivots: {self.config.fallback_pivots!r})")
            frames = self._switch_pivot(heir)
        self._standby.add(role)
        return frames + self._emit_ready(force=False)

    def flush(self) -> list[SyncedFrame]:
        """Emit every pending frame now (end of a bag, shutdown); roles that could still have
        arrived are absent with "timeout". Messages left over are dropped as unmatched, so
        ``pending_count() == 0`` afterwards."""
        frames = self._emit_ready(force=True)
        for role, queue in self._queues.items():
            self._drop(role, "unmatched", len(queue.take_until(len(queue))))
        return frames

    def reset(self) -> list[SyncedFrame]:
        """:meth:`flush`, then forget the stream clock, for a jump back in time (a bag played in a
        loop, /clock restarted); ``drops``, ``received`` and standby are kept."""
        frames = self.flush()
        self._reset_time()
        return frames

    def pending_count(self, role: str | None = None) -> int:
        """Messages held (pending frames count as their pivot message), of one role or all."""
        if role is not None:
            return len(self._queue(role))
        return sum(len(q) for q in self._queues.values())

    # ------------------------------------------------------------------ internals
    def _set_pivot(self, role: str) -> None:
        self._pivot = role
        self._partner_roles = tuple(r for r in self.config.roles if r not in (role, self._imu))

    def _switch_pivot(self, role: str) -> list[SyncedFrame]:
        """Emit the frames pending on the old pivot, then let ``role`` define the frames."""
        frames = self._emit_ready(force=True)
        self.pivot_changes.append((self._now_ns if self._now_ns is not None else 0, self._pivot, role))
        self._set_pivot(role)
        return frames

    def _check_pivot(self, role: str) -> list[SyncedFrame]:
        """Switch the pivot if ``role`` (which just spoke) outranks it, or if it has gone silent."""
        rank = self._rank
        if role in rank and rank[role] < rank[self._pivot] and role not in self._standby:
            return self._switch_pivot(role)
        silent_since = self._high_ns.get(self._pivot, self._first_ns)
        if self._now_ns - silent_since <= self._pivot_timeout:
            return []
        for candidate in self._preference:
            if candidate == self._pivot or candidate in self._standby:
                continue
            high = self._high_ns.get(candidate)
            if high is not None and self._now_ns - high <= self._pivot_timeout:
                return self._switch_pivot(candidate)
        return []

    def _queue(self, role: str) -> _Queue:
        queue = self._queues.get(role)
        if queue is None:
            raise ValueError(f"unknown role {role!r}; the roles are {self.config.roles!r}")
        return queue

    def _drop(self, role: str, cause: str, n: int) -> None:
        if n:  # no zero entries: drops lists only what happened
            self.drops[role, cause] += n

    def _limit(self, role: str) -> int:
        return self.config.imu_queue_size if role == self._imu else self.config.queue_size

    def _reject_cause(self, role: str, stamp: int) -> str | None:
        if stamp in self._seen[role]:
            return DUPLICATE_STAMP
        if stamp < self._high_ns.get(role, stamp):
            return OUT_OF_ORDER
        if self._last_ns is not None:
            if stamp < self._last_ns - self._tol:
                return OUT_OF_ORDER
            if stamp <= self._last_ns:
                # any later pivot is further away, so its nearest frame was the emitted one
                return "late"
        return None

    def _pick(self, role: str, pivot_ns: int, next_ns: int | None) -> int | None:
        """Index in ``role``'s queue of the partner for the frame at ``pivot_ns``, or None."""
        stamps = self._queues[role].stamps
        best, best_d = None, None
        for i in range(bisect.bisect_left(stamps, pivot_ns - self._tol), len(stamps)):
            t = stamps[i]
            if t > pivot_ns + self._tol:
                break
            d = abs(t - pivot_ns)
            if self._last_ns is not None and t - self._last_ns <= d:
                continue  # nearer the previous frame's pivot (ties: the older frame): not ours
            if next_ns is not None and abs(next_ns - t) < d:
                continue  # nearer the next pending pivot: left for that frame
            if best_d is None or d < best_d:  # strict: on a tie the older message stays
                best, best_d = i, d
        return best

    def _settled(self, role: str, pivot_ns: int, pick: int | None) -> bool:
        """True when no better partner of ``role`` can still arrive for the frame at ``pivot_ns``."""
        high = self._high_ns.get(role)
        if high is None:
            return False
        if role == self._imu:
            return high >= pivot_ns  # later samples are newer than the pivot: outside its window
        if pick is None:
            return high >= pivot_ns + self._tol
        if not self.config.wait_for_nearest:
            return True
        return high >= pivot_ns + abs(self._queues[role].stamps[pick] - pivot_ns)

    def _absence(self, role: str, pivot_ns: int) -> str:
        if role in self._standby:
            return "standby"
        high = self._high_ns.get(role)
        reach = 0 if role == self._imu else self._tol
        return "missing" if high is not None and high >= pivot_ns + reach else "timeout"

    def _emit_ready(self, force: bool) -> list[SyncedFrame]:
        frames = []
        pivots = self._queues[self._pivot]
        while len(pivots):
            pivot_ns = pivots.stamps[0]
            next_ns = pivots.stamps[1] if len(pivots) > 1 else None
            picks = {role: self._pick(role, pivot_ns, next_ns) for role in self._partner_roles}
            # the oldest frame is the first to time out, so checking only the head keeps the order
            timed_out = force or self._now_ns - pivot_ns >= self._max_wait
            if not timed_out:
                waiting = [r for r in (*self._partner_roles, self._imu)
                           if r is not None and r not in self._standby]
                if not all(self._settled(r, pivot_ns, picks.get(r)) for r in waiting):
                    break
            frames.append(self._build(pivot_ns, picks))
        return frames

    def _build(self, pivot_ns: int, picks: dict[str, int | None]) -> SyncedFrame:
        pivot = self._pivot
        _, pivot_msg = self._queues[pivot].pop(0)
        messages, stamps, absent = {pivot: pivot_msg}, {pivot: pivot_ns}, {}
        for role, pick in picks.items():
            queue = self._queues[role]
            if pick is None:
                absent[role] = self._absence(role, pivot_ns)
            else:
                stamps[role], messages[role] = queue.pop(pick)
            # the rest at or before the pivot: any later pivot is further away, so they are done for
            self._drop(role, "unmatched", len(queue.take_until(bisect.bisect_right(queue.stamps, pivot_ns))))
        imu: list[tuple[int, Any]] = []
        if self._imu is not None:
            queue = self._queues[self._imu]
            # samples at or before the previous pivot were taken by its frame or dropped as late,
            # so what is left starts after it: windows never overlap
            start_ns = pivot_ns - self._window
            self._drop(self._imu, "unmatched", len(queue.take_until(bisect.bisect_right(queue.stamps, start_ns))))
            imu = queue.take_until(bisect.bisect_right(queue.stamps, pivot_ns))
            if not imu:
                absent[self._imu] = self._absence(self._imu, pivot_ns)
        self._last_ns = pivot_ns
        return SyncedFrame(stamp_ns=pivot_ns, pivot=pivot, messages=messages, stamps_ns=stamps, imu=imu, absent=absent)
