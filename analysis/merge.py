"""Merging saved profiles: many files (a fleet's, or one run's periodic files) into one.

Profiles are folded one at a time into a :class:`Merger`, so memory is bounded by what
the merged profile holds (its distinct functions, stacks, threads and call edges), not
by the number of files.  Functions are matched across files by qualified name, first
line and the file's path relative to its import root (paths.py), not its absolute
path: hosts that deployed the same release into different folders
(``/srv/releases/2024-05-01/app.py``, ``/opt/app/app.py``) still merge into one
function, which keeps the first file's absolute name.  Stacks are matched by thread
id and those frames.  The merged profile's import roots are all the files' roots.

Counters add up: samples, time, lost samples, overhead, durations and CPU time (the
merged duration is the total profiled time, which for the periodic files of one run is
that run's duration).  Files of duty-cycled windows (continuous mode with a budget)
also add up the time they stand for (covered_ns, their periods): the merged profile's
duty is profiled / covered time, by which the report turns totals into rates.
The merged start time is the earliest one.
"""

from __future__ import annotations

import os

from .model import Function, Profile, Stack
from .paths import PathMapper

__all__ = ["Merger", "load_profile", "merge_files"]

_SUMMED = ("samples", "weight_ns", "lost", "lost_weight_ns", "overhead",
           "overhead_weight_ns", "table_full", "duration_ns", "cpu_ns", "corrected_ns")


def load_profile(path: str) -> Profile:
    """Read a saved profile: shadowprof JSON, or any pprof file (gzipped or not, ours
    or foreign).  Raises ValueError or OSError with a message naming the file."""
    with open(os.fspath(path), "rb") as f:
        head = f.read(2)
    if head[:1] in (b"{", b" ", b"\n"):
        return Profile.load_json(path)
    from .pprof import read_pprof
    try:
        return read_pprof(path)
    except (ValueError, IndexError, KeyError, EOFError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a shadowprof JSON or pprof profile ({e}); "
                         "write one with -o FILE.json or -o FILE.pb.gz") from None


class Merger:
    """Accumulates profiles; :meth:`profile` returns the merged one."""

    def __init__(self) -> None:
        self._ids: dict = {}          # (name, module path, firstlineno) -> merged id
        self._functions: dict = {}    # merged id -> Function
        self._stacks: dict = {}       # (thread id, frames) -> [count, weight]
        self._calls: dict = {}
        self._edges: dict = {}
        self._threads: dict = {}
        self._scalars = dict.fromkeys(_SUMMED, 0)
        self._mode = None
        self._interval = None
        self._start = 0
        self._overhead_calls = [0, 0.0, 0.0]   # for the calls-weighted per-call overhead
        self._cap = None
        self._next_id = 0
        self._next_synthetic = 0
        self._roots: list = []
        self._how: set = set()
        self._covered = 0
        self.files = 0

    @property
    def matched_by(self) -> str:
        """How functions were matched across the files, in words."""
        return ("qualified name, first line and file path relative to the import "
                "root (" + "; ".join(sorted(self._how)) + ")") if self._how else \
            "qualified name, first line and file path relative to the import root"

    def _id(self, fn: Function, paths: PathMapper) -> int:
        key = (fn.name, paths.module_path(fn.filename), fn.firstlineno)
        fid = self._ids.get(key)
        if fid is None:
            # Synthetic frames keep ids < 0, as the model expects.
            if fn.synthetic:
                self._next_synthetic -= 1
                fid = self._next_synthetic
            else:
                self._next_id += 1
                fid = self._next_id
            self._ids[key] = fid
            self._functions[fid] = Function(fid, fn.name, fn.filename, fn.firstlineno)
        return fid

    def add(self, profile: Profile, name: str = "profile") -> None:
        """Fold *profile* in.  Raises ValueError if its mode (cpu or wall) differs from
        the profiles already added."""
        if self._mode is None:
            self._mode = profile.mode
        elif profile.mode != self._mode:
            raise ValueError(f"{name}: a {profile.mode}-time profile cannot be merged "
                             f"with {self._mode}-time ones; merge each mode separately")
        remap: dict = {}
        paths = PathMapper(profile)
        self._how.add(paths.how)
        for root in profile.roots:
            if root not in self._roots:
                self._roots.append(root)

        def rid(fid: int) -> int:
            r = remap.get(fid)
            if r is None:
                if fid == 0:
                    return 0
                fn = profile.functions.get(fid) or Function(fid, f"<id {fid}>", "?", 0)
                r = remap[fid] = self._id(fn, paths)
            return r

        stacks = self._stacks
        for s in profile.stacks:
            key = (s.thread_id, tuple((rid(f), line) for f, line in s.frames))
            acc = stacks.get(key)
            if acc is None:
                stacks[key] = [s.count, s.weight_ns]
            else:
                acc[0] += s.count
                acc[1] += s.weight_ns
        for fid, n in profile.calls.items():
            k = rid(fid)
            self._calls[k] = self._calls.get(k, 0) + n
        for (a, b), n in profile.edges.items():
            k = (rid(a), rid(b))
            self._edges[k] = self._edges.get(k, 0) + n
        self._threads.update(profile.threads)
        for k in _SUMMED:
            self._scalars[k] += getattr(profile, k)
        # Covered time: a duty-cycled window stands for its period, any other
        # profile for its own duration.
        self._covered += profile.covered_ns or profile.duration_ns
        if self._interval is None or profile.interval_ns < self._interval:
            self._interval = profile.interval_ns
        if profile.start_unix_ns and (not self._start
                                      or profile.start_unix_ns < self._start):
            self._start = profile.start_unix_ns
        n_calls = sum(profile.calls.values())
        self._overhead_calls[0] += n_calls
        self._overhead_calls[1] += n_calls * profile.per_call_overhead_ns
        self._overhead_calls[2] += n_calls * profile.per_call_overhead_err_ns
        if self._cap is None:
            self._cap = profile.per_call_overhead_cap
        self.files += 1

    def profile(self) -> Profile:
        """The merged profile (an empty one if nothing was added)."""
        n_calls, weighted, weighted_err = self._overhead_calls
        return Profile(
            functions=dict(self._functions),
            stacks=[Stack(tid, frames, c, w)
                    for (tid, frames), (c, w) in self._stacks.items()],
            calls=dict(self._calls), edges=dict(self._edges),
            threads=dict(self._threads), roots=list(self._roots),
            mode=self._mode or "cpu",
            interval_ns=self._interval if self._interval is not None else 10_000_000,
            start_unix_ns=self._start,
            per_call_overhead_ns=weighted / n_calls if n_calls else 0.0,
            per_call_overhead_err_ns=weighted_err / n_calls if n_calls else 0.0,
            per_call_overhead_cap=self._cap if self._cap is not None else 0.5,
            covered_ns=(self._covered if self._covered > self._scalars["duration_ns"]
                        else 0),
            **self._scalars)


def merge_files(paths, merger: Merger | None = None) -> Profile:
    """Merge the profiles saved in *paths* (an iterable, consumed lazily), reading one
    file at a time."""
    merger = merger or Merger()
    for path in paths:
        merger.add(load_profile(path), name=str(path))
    return merger.profile()
