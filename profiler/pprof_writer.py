"""pprof files straight from the running profiler, at next to no cost.

pprof.encode() encodes a Profile, the in-memory model: right for profiles read from
files (merge, conversion), but seconds at the core's table cap once
``_core.snapshot()`` and ``Profile.from_snapshot()`` have turned every stack into
Python objects.  For the profile of the running session, ``_core.write_pprof`` reads
the core's table and registry directly into the encoder's plain-C profile (with the
GIL held: counts, ids and the names' UTF-8), then encodes, compresses and writes the
file with the GIL released.  Both go through the one encoder, profiler/pprof_enc.c:
the bytes are pprof.encode()'s for the same Profile.

Two functions:

- ``write_period(path, base, comments)``: the profile of what happened since *base*
  (the previous call's ``Period.base``; None: since the session started), written to
  *path*.  Continuous mode calls it once per period.
- ``write_profiler(profiler, path, strip=None)``: a Profiler's own profile (from its
  start to its stop, or to now while it runs): ``Profiler.save()`` and the command
  line call it.

Contract with the core (export.h): a *mark* is a copy of the session's counters;
the profile between two marks is their difference, so nothing is reset and nested
profilers, continuous mode and snapshot() can share one session.  A mark of an
earlier session (start() again, or a forked child) is refused with ValueError:
callers start from None there.  Sessions with native frames (native=True) need the
Python layer to name their C functions, so they go through Profile and pprof.encode()
here, with the same results and the Python encoder's cost.
"""

from __future__ import annotations

import os
import threading
import time

from . import _core
from ._api import calibration
from .analysis import formats, pprof
from .analysis.model import Profile, strip_pth_lines
from .analysis.paths import import_roots

# (Imported here, at start-up, not at the first write: in continuous mode a first
# write that imports them would add their cost, about 30 ms of CPU in an otherwise
# empty interpreter, to a window's.)

__all__ = ["Period", "write_period", "write_profiler", "GZIP_LEVEL"]

# Deflate level of the live writer (ISA-L's igzip at this level if the system has
# libisal, else libdeflate's, else zlib's: deflate.c): Go's runtime/pprof writes with
# BestSpeed (1) too.  Level 6 (gzip's default) costs
# two to three times the CPU for files a few percent smaller (benchmarks/RESULTS.md).
GZIP_LEVEL = 1


class _Totals:
    """The scalars pprof.comments() reads: the writer's info dict, the calibration's
    spread and this process's import roots (as Profile.from_snapshot has them)."""

    def __init__(self, info: dict, err_ns: float, meta_add=None):
        self.covered_ns = 0
        self.__dict__.update(info)
        for k, v in (meta_add or {}).items():   # e.g. the writer's own time
            setattr(self, k, getattr(self, k, 0) + v)
        self.per_call_overhead_err_ns = err_ns
        self.roots = import_roots()


def _comment_fn(extra, err_ns: float = 0.0, meta_add=None, notes=None):
    """comments(info) for _core.write_pprof: pprof.comments() of the writer's totals,
    then *extra*; *notes*(info) -> (more comments, more meta_add) is asked at encoding
    time, when the profile's totals are known."""
    def comments(info: dict) -> list:
        lines, add = list(extra), dict(meta_add or {})
        if notes is not None:
            more, more_add = notes(info)
            lines += more
            for k, v in more_add.items():
                add[k] = add.get(k, 0) + v
        return pprof.comments(_Totals(info, err_ns, add), info["total_ns"], None, lines)
    return comments


def _thread_names() -> dict:
    return {t.native_id: t.name for t in threading.enumerate()
            if getattr(t, "native_id", None)}


class Period:
    """What write_period() wrote: *samples*, *cpu_ns* and *duration_ns* of the
    period; *running* and *interval_ns* of the session; *sampling_ns*, the time the
    signal handler and the drain took in the period; *writer_ns*, what writing this
    file cost (encode, compress, write); *base*, the start of the next period."""

    def __init__(self, base, samples: int, cpu_ns: int, duration_ns: int,
                 running: bool, interval_ns: int, sampling_ns: int, writer_ns: int):
        self.base = base
        self.samples = samples
        self.cpu_ns = cpu_ns
        self.duration_ns = duration_ns
        self.running = running
        self.interval_ns = interval_ns
        self.sampling_ns = sampling_ns
        self.writer_ns = writer_ns


class _Base:
    """The opaque start of a next period: the core's mark, and the handler's and the
    drain's cumulative times at it."""
    __slots__ = ("mark", "sampling_ns")

    def __init__(self, mark, sampling_ns: int):
        self.mark = mark
        self.sampling_ns = sampling_ns


def _write(path: str, base, end, **kwargs) -> tuple:
    """_core.write_pprof to *path*, with the mode open() would give the file;
    '-' (stdout) and the null device through formats.write_bytes."""
    if path in ("-", os.devnull):
        info, mark, data = _core.write_pprof(None, base, end, **kwargs)
        formats.write_bytes(data, path)
        return info, mark
    info, mark, _ = _core.write_pprof(path, base, end, mode=formats._file_mode(path),
                                      **kwargs)
    return info, mark


def write_period(path: str, base=None, comments=(), *, end=None,
                 meta_add: dict | None = None, strip=None, strip_pth: bool = True,
                 notes=None) -> Period:
    """Write the profile of the session from *base* to *end* (None: now) to *path*
    (gzipped profile.proto, written atomically), with *comments* after its own.
    *base*: None, or a previous call's ``Period.base``.  *end*: None, a mark
    (``_core.mark()``), or the snapshot dict of the stopped core.  The hook's
    calibrated per-call cost is moved into [shadowprof overhead] as
    Profile.from_snapshot() does.  *meta_add*: numbers added to the profile's
    scalars (covered_ns, or the writer's own time as overhead_weight_ns).  *strip*:
    code ids removed from the root end of stacks, with their calls; *strip_pth*:
    leave out the .pth lines site ran after profiling began (model.strip_pth_lines).
    *notes*(totals) -> (comments, meta_add): more of both, from the period's totals
    (a dict: calls, cpu_ns, duration_ns, handler_ns, drain_ns ...) once they are
    known, without a snapshot."""
    per_call, cap, err = calibration()
    if not _core._session()["native"]:
        if isinstance(end, dict):
            end = None    # the stopped core still holds what that snapshot shows
        mark = base.mark if isinstance(base, _Base) else None
        try:
            info, new = _write(path, mark, end, threads=_thread_names(),
                               per_call_overhead_ns=per_call, per_call_overhead_cap=cap,
                               comments=_comment_fn(list(comments), err, meta_add,
                                                    notes),
                               strip=strip, strip_pth=strip_pth, level=GZIP_LEVEL)
        except ValueError:
            if mark is None:
                raise
            # a base of an earlier session (forked since): start afresh
            return write_period(path, None, comments, end=end, meta_add=meta_add,
                                strip=strip, strip_pth=strip_pth, notes=notes)
        sampling = info["handler_ns"] + info["drain_ns"]
        return Period(_Base(new, sampling), info["samples"], info["cpu_ns"],
                      info["duration_ns"], info["running"], info["interval_ns"],
                      sampling - (base.sampling_ns if mark is not None else 0),
                      info["encode_ns"] + info["compress_ns"] + info["write_ns"])
    # Native frames: named by the Python layer (native.resolve_snapshot).
    t0 = time.perf_counter_ns()
    snap = end if isinstance(end, dict) else _core.snapshot()
    from .native import resolve_snapshot
    resolve_snapshot(snap)
    base_snap = base if isinstance(base, dict) else None
    prof = Profile.from_snapshot(snap, base_snap, per_call_overhead_ns=per_call,
                                 per_call_overhead_cap=cap, per_call_overhead_err_ns=err)
    comments = list(comments)
    add = dict(meta_add or {})
    if notes is not None:
        totals = {k: snap.get(k, 0) - (base_snap.get(k, 0) if base_snap else 0)
                  for k in ("cpu_ns", "duration_ns", "handler_ns", "drain_ns")}
        totals["calls"] = sum(snap["calls"].values()) - (
            sum(base_snap["calls"].values()) if base_snap else 0)
        more, more_add = notes(totals)
        comments += more
        for k, v in more_add.items():
            add[k] = add.get(k, 0) + v
    for k, v in add.items():
        setattr(prof, k, getattr(prof, k, 0) + v)
    if strip_pth:
        strip_pth_lines(prof)
    data = pprof.encode(prof, comments)
    import gzip   # this path only: continuous mode's start-up does without it
    formats.write_bytes(gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0), path)
    sampling = sum(snap.get(k, 0) - (base_snap.get(k, 0) if base_snap else 0)
                   for k in ("handler_ns", "drain_ns"))
    return Period(snap, prof.samples, prof.cpu_ns, prof.duration_ns,
                  bool(snap.get("running")), snap["interval_ns"], sampling,
                  time.perf_counter_ns() - t0)


def write_profiler(profiler, path: str, strip=None, strip_pth: bool = False) -> bool:
    """Write *profiler*'s profile (see Profiler.save) to *path* with the C writer.
    *strip*: code ids removed from the root end of stacks (the command line's own
    frames); *strip_pth*: leave out the .pth lines site ran after profiling began
    (a profiler started at start-up).  Returns False, having written nothing, when the C writer cannot stand
    for the profiler's Profile (native frames, or marks of an earlier session): the
    caller then writes the Profile with pprof.write_pprof."""
    session = _core._session()
    if session["native"] or not session["started"]:
        return False
    if profiler.running:
        end = None
        per_call, cap, err = calibration()
        if not profiler.correct_overhead:
            per_call = 0.0
    else:
        end = profiler._end_mark
        if end is None:
            return False
        per_call, cap, err = profiler._correction
    base = profiler._base_mark
    if base is None and profiler._base is not None:
        return False   # nested, without a mark of its start
    try:
        _write(path, base, end, threads=_thread_names(), per_call_overhead_ns=per_call,
               per_call_overhead_cap=cap, strip=strip, strip_pth=strip_pth,
               comments=_comment_fn([], err), level=GZIP_LEVEL)
    except ValueError:
        return False   # a mark of an earlier session: the Profile has the data
    return True
