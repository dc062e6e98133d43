"""Continuous profiling: one pprof file per period, for canaries and fleets.

A daemon thread wakes every *period*, takes the core's cumulative snapshot and writes
the difference from the previous one, so each file covers exactly its period (counts,
samples and calls of that period only) and a fleet's files can be merged without
counting anything twice.  Files are named ``HOST-PID-START-SEQ.pb.gz`` (START: the
writer's start, UTC), written to a temporary file in the same directory and renamed
(a process killed mid-write never leaves a partial file under a final name), and only
the newest *keep* files of this process are kept.  At exit the last, partial period is
written.  After os.fork() the child starts a writer of its own (its own pid in the
names; its core profile restarts at the fork).

Overhead budget: after each period the writer measures what sampling cost in that
period (time in the signal handler and draining the samples into the table) as a share
of the process's CPU time; above *budget* it doubles the sampling interval, up to 1 s.
That is the part of shadowprof's cost the interval controls.  Neither the hook's
per-call cost nor the writer's (set by the period) depends on the interval, so they are
not counted against the budget: raising the interval could not lower them, only make
the profile coarser.  (The hook's cost is in every profile as [shadowprof overhead].)

Thread contract: the writer thread and the exiting main thread take ``_lock`` around
"snapshot, write"; nothing else touches the writer's state.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from . import _core, pprof_writer

__all__ = ["PeriodicWriter", "file_prefix", "add_comments"]

MAX_BUDGET_INTERVAL_NS = 1_000_000_000

# profile.proto field numbers (see pprof.py): string_table = 6, comment = 13.
_STRING_TABLE = 6
_COMMENT = 13


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _count_strings(data: bytes) -> int:
    """Number of string_table entries in an encoded (uncompressed) Profile."""
    i, n, count = 0, len(data), 0
    while i < n:
        key = shift = 0
        while True:
            b = data[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        field, wt = key >> 3, key & 7
        if wt == 0:
            while data[i] >= 0x80:
                i += 1
            i += 1
        elif wt == 1:
            i += 8
        elif wt == 5:
            i += 4
        elif wt == 2:
            size = shift = 0
            while True:
                b = data[i]
                i += 1
                size |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
            i += size
            if field == _STRING_TABLE:
                count += 1
        else:
            raise ValueError(f"unexpected wire type {wt} in a pprof message")
    return count


def add_comments(data: bytes, comments: list) -> bytes:
    """*data* (an encoded, uncompressed Profile) with *comments* appended to its
    comment list.  Protobuf concatenates repeated fields, so new strings appended
    after the string table take the next indices."""
    base = _count_strings(data)
    extra = [data]
    for c in comments:
        s = c.encode("utf-8", "surrogateescape")
        extra.append(_varint(_STRING_TABLE << 3 | 2) + _varint(len(s)) + s)
    packed = b"".join(_varint(base + k) for k in range(len(comments)))
    extra.append(_varint(_COMMENT << 3 | 2) + _varint(len(packed)) + packed)
    return b"".join(extra)


def file_prefix(host: str, pid: int, start: str) -> str:
    """The name every file of one writer starts with: ``HOST-PID-START-``."""
    return f"{host}-{pid}-{start}-"


class PeriodicWriter:
    """Write the profile of each *period_s* seconds of the running core session into
    *directory*, keeping the newest *keep* files (0: all).  *comments* go into every
    file (e.g. the canary decision).  *budget*: the profiler's share of CPU time
    above which the interval is raised (0: off)."""

    def __init__(self, directory: str, period_s: float, *, keep: int = 10,
                 budget: float = 0.0, comments: list | None = None,
                 on_message=None):
        self.directory = directory
        self.period_s = period_s
        self.keep = keep
        self.budget = budget
        self.comments = list(comments or [])
        self.on_message = on_message or (lambda text: None)
        self.files_written = 0
        self.samples_written = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reset()

    def _reset(self) -> None:
        self.pid = os.getpid()
        self.host = socket.gethostname().replace("/", "_") or "host"
        self.start_stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.prefix = file_prefix(self.host, self.pid, self.start_stamp)
        self.seq = 0
        self._base = None
        self._notes: list = []
        self.files_written = 0
        self.samples_written = 0

    # ------------------------------------------------------------------ thread

    def start(self) -> "PeriodicWriter":
        """Start the writer thread (the core session must be running)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="shadowprof-writer",
                                        daemon=True)
        self._thread.start()
        return self

    def after_fork_in_child(self) -> None:
        """In a forked child: the core restarted the profile at the fork; write files
        of this pid from now on."""
        self._lock = threading.Lock()   # the parent's may have been held at fork
        self._stop = threading.Event()
        self._reset()
        self.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.write_period()
            except Exception as e:    # keep the program running; say what failed
                self.on_message(f"cannot write a periodic profile: {e}")

    def close(self, final_snapshot: dict | None = None) -> None:
        """Stop the thread and write the last, partial period (from
        *final_snapshot* if given: the snapshot taken when the core stopped)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=max(5.0, 2 * self.period_s))
        self.write_period(final_snapshot)

    # ------------------------------------------------------------------ writing

    def write_period(self, snap: dict | None = None) -> str | None:
        """Write what happened since the previous file; returns its path."""
        with self._lock:
            self.seq += 1
            name = f"{self.prefix}{self.seq:05d}.pb.gz"
            path = os.path.join(self.directory, name)
            notes = [f"shadowprof.period file={name} seq={self.seq} pid={self.pid} "
                     f"host={self.host} start={self.start_stamp} "
                     f"period_s={self.period_s:g}"] + self.comments + self._notes
            self._notes = []
            # The core's counters from the previous file's end to now, encoded,
            # compressed and written in C (pprof_writer.py).
            period = pprof_writer.write_period(path, self._base, notes, end=snap)
            self._base = period.base
            self.files_written += 1
            self.samples_written += period.samples
            self._prune()
            self._check_budget(period)
            return path

    def _prune(self) -> None:
        if self.keep <= 0:
            return
        try:
            mine = sorted(f for f in os.listdir(self.directory)
                          if f.startswith(self.prefix) and f.endswith(".pb.gz"))
        except OSError:
            return
        for f in mine[:-self.keep]:
            try:
                os.unlink(os.path.join(self.directory, f))
            except OSError:
                pass

    def _check_budget(self, period: "pprof_writer.Period") -> None:
        if self.budget <= 0 or not period.running or period.cpu_ns <= 0:
            return
        share = period.sampling_ns / period.cpu_ns
        interval = period.interval_ns
        if share <= self.budget or interval >= MAX_BUDGET_INTERVAL_NS:
            return
        new = min(2 * interval, MAX_BUDGET_INTERVAL_NS)
        try:
            _core._set_interval(new)
        except (RuntimeError, ValueError):
            return
        note = (f"shadowprof.budget interval {interval / 1e6:g}ms -> {new / 1e6:g}ms: "
                f"sampling cost {100 * share:.2f}% of CPU > budget "
                f"{100 * self.budget:g}%")
        self._notes.append(note)
        self.on_message(note)
