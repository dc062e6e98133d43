"""The in-memory profile: functions, sampled stacks, exact call counts.

A Profile is plain data built from the C core's snapshot.  Times are nanoseconds of
the profile's clock (CPU time in ``cpu`` mode, elapsed time in ``wall`` mode); each
stack carries both its sample count and the time its samples stand for, because the
kernel does not fire CPU timers at the requested rate.
"""

from __future__ import annotations

import sys


__all__ = ["Function", "Stack", "FunctionStats", "Profile"]

SYNTHETIC_FILE = "<shadowprof>"
OVERHEAD_NAME = "[shadowprof overhead]"

# Plain classes rather than dataclasses: this module is imported when profiling
# starts, and importing dataclasses (and inspect) would cost the profiled program
# about 15 ms of start-up.


def _record(name: str, fields: str, doc: str):
    """A namedtuple-like base class without importing collections (about 3 ms of
    the profiled program's start-up): positional and keyword construction, field
    access by name, _replace and _asdict, a repr, equality and pickling of a tuple."""
    names = tuple(fields.split())
    try:
        from _collections import _tuplegetter   # what namedtuple uses, in C
    except ImportError:
        def _tuplegetter(i, doc):
            return property(lambda self: self[i], doc=doc)

    def __new__(cls, *args, **kwargs):
        if kwargs:
            args += tuple(kwargs.pop(f) for f in names[len(args):] if f in kwargs)
            if kwargs:
                raise TypeError(f"{name}() got unexpected fields {sorted(kwargs)}")
        if len(args) != len(names):
            raise TypeError(f"{name}() takes {len(names)} fields "
                            f"({', '.join(names)}), got {len(args)}")
        return tuple.__new__(cls, args)

    def __repr__(self):
        return f"{name}(" + ", ".join(f"{f}={v!r}" for f, v in zip(names, self)) + ")"

    def __getnewargs__(self):
        return tuple(self)

    def _replace(self, **changes):
        return type(self)(*(changes.pop(f, v) for f, v in zip(names, self)))

    def _asdict(self):
        return dict(zip(names, self))

    body = {"__slots__": (), "__doc__": doc, "_fields": names, "__new__": __new__,
            "__repr__": __repr__, "__getnewargs__": __getnewargs__,
            "_replace": _replace, "_asdict": _asdict}
    for i, f in enumerate(names):
        body[f] = _tuplegetter(i, f"field {i}: {f}")
    return type(name, (tuple,), body)


class Function(_record("Function", "id name filename firstlineno",
                       "(id, name, filename, firstlineno)")):
    """A Python function (one code object), or a synthetic frame of shadowprof's."""
    __slots__ = ()

    @property
    def synthetic(self) -> bool:
        return self.filename == SYNTHETIC_FILE

    def label(self) -> str:
        if self.synthetic:
            return self.name
        return f"{self.name} ({self.filename}:{self.firstlineno})"


class Stack(_record("Stack", "thread_id frames count weight_ns",
                    "(thread_id, frames, count, weight_ns)")):
    """Samples of one thread that saw the same frames.  frames: ((function id, line),
    ...), root first."""
    __slots__ = ()


class FunctionStats:
    """Self and total (inclusive) samples and time of one function, and its calls."""
    __slots__ = ("function", "self_samples", "total_samples", "self_ns", "total_ns",
                 "calls")

    def __init__(self, function, self_samples=0, total_samples=0, self_ns=0.0,
                 total_ns=0.0, calls=0):
        self.function = function
        self.self_samples = self_samples
        self.total_samples = total_samples
        self.self_ns = self_ns
        self.total_ns = total_ns
        self.calls = calls

    def __repr__(self):
        return (f"FunctionStats({self.function.name!r}, self_ns={self.self_ns}, "
                f"total_ns={self.total_ns}, calls={self.calls})")


_PROFILE_DEFAULTS = {
    "mode": "cpu", "interval_ns": 10_000_000, "samples": 0, "weight_ns": 0, "lost": 0,
    "lost_weight_ns": 0, "overhead": 0, "overhead_weight_ns": 0, "table_full": 0,
    "start_unix_ns": 0, "duration_ns": 0, "cpu_ns": 0, "per_call_overhead_ns": 0.0,
    "per_call_overhead_cap": 0.5, "corrected_ns": 0.0, "per_call_overhead_err_ns": 0.0,
    # Wall time the profile stands for when it was profiled only part of it (the
    # periods of duty-cycled windows: continuous.py); 0 when it is duration_ns.
    "covered_ns": 0,
}


class Profile:
    """functions {id: Function}, stacks [Stack], exact calls {id: n} and caller->callee
    edges {(caller id, callee id): n} (caller 0: no Python caller), threads
    {thread id: name}, roots (the profiled process's import roots, its sys.path
    directories: see paths.py), and the scalars in _PROFILE_DEFAULTS."""

    def __init__(self, functions, stacks, calls, edges, threads=None, native=None,
                 roots=None, **scalars):
        unknown = set(scalars) - set(_PROFILE_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown Profile fields: {', '.join(sorted(unknown))}")
        self.functions = functions
        self.stacks = stacks
        self.calls = calls
        self.edges = edges
        self.threads = {} if threads is None else threads
        # {function id: native.NativeInfo} of native (C) functions (--native).
        self.native = {} if native is None else native
        self.roots = [] if roots is None else list(roots)
        for key, default in _PROFILE_DEFAULTS.items():
            setattr(self, key, scalars.get(key, default))

    def __eq__(self, other):
        if not isinstance(other, Profile):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __repr__(self):
        return (f"Profile(mode={self.mode!r}, samples={self.samples}, "
                f"functions={len(self.functions)}, stacks={len(self.stacks)})")

    # ----------------------------------------------------------------- building

    @classmethod
    def from_snapshot(cls, snap: dict, base: dict | None = None, *,
                      per_call_overhead_ns: float = 0.0,
                      per_call_overhead_cap: float = 0.5,
                      per_call_overhead_err_ns: float = 0.0,
                      correct: bool = True) -> "Profile":
        """Build a profile from ``_core.snapshot()``; with *base*, only what happened
        after *base* was taken (snapshots are cumulative within one session).  The
        import roots are this process's (paths.import_roots)."""
        from .paths import import_roots
        functions = {fid: Function(fid, name, filename, line)
                     for fid, (name, filename, line) in snap["functions"].items()}
        counts = {}
        for tid, frames, count, weight in snap["stacks"]:
            c, w = counts.get((tid, frames), (0, 0))
            counts[(tid, frames)] = (c + count, w + weight)
        calls = dict(snap["calls"])
        edges = dict(snap["edges"])
        scalars = {k: snap[k] for k in (
            "samples", "weight_ns", "lost", "lost_weight_ns", "overhead",
            "overhead_weight_ns", "table_full", "duration_ns", "cpu_ns")}
        if base is not None:
            for tid, frames, count, weight in base["stacks"]:
                c, w = counts.get((tid, frames), (0, 0))
                counts[(tid, frames)] = (c - count, w - weight)
            for fid, n in base["calls"].items():
                calls[fid] = calls.get(fid, 0) - n
            for key, n in base["edges"].items():
                edges[key] = edges.get(key, 0) - n
            for k in scalars:
                scalars[k] -= base[k]
        stacks = [Stack(tid, frames, c, w) for (tid, frames), (c, w) in counts.items()
                  if c > 0]
        names = dict(snap.get("threads", {}))
        # Only if the program imported threading: importing it first from another
        # thread than the main one (the dump thread) would break its shutdown.
        threading = sys.modules.get("threading")
        if threading is not None:
            names.update((t.native_id, t.name) for t in threading.enumerate()
                         if getattr(t, "native_id", None))
        threads = {s.thread_id: names.get(s.thread_id, f"thread-{s.thread_id}")
                   for s in stacks}
        prof = cls(functions=functions, stacks=stacks,
                   calls={k: v for k, v in calls.items() if v > 0},
                   edges={k: v for k, v in edges.items() if v > 0},
                   mode=snap["mode"], interval_ns=snap["interval_ns"],
                   start_unix_ns=snap["start_unix_ns"], threads=threads,
                   per_call_overhead_ns=per_call_overhead_ns,
                   per_call_overhead_cap=per_call_overhead_cap,
                   per_call_overhead_err_ns=per_call_overhead_err_ns,
                   roots=import_roots(), **scalars)
        prof.native = dict(snap.get("native_info") or {})
        if correct and per_call_overhead_ns > 0:
            prof._correct_per_call_overhead()
        return prof

    def _function_id(self, name: str) -> int:
        for f in self.functions.values():
            if f.synthetic and f.name == name:
                return f.id
        fid = min(self.functions, default=0) - 1
        while fid in self.functions or fid >= 0:
            fid -= 1
        self.functions[fid] = Function(fid, name, SYNTHETIC_FILE, 0)
        return fid

    def _correct_per_call_overhead(self) -> None:
        """Move the time the hook adds to each call out of the user's functions.

        The hook's cost per call was calibrated at start.  Samples that landed in the
        hook's own code are already reported as overhead (recognised by the interrupted
        program counter); the rest of the added time (the interpreter's slower call
        path under a frame-evaluation hook) is spread over the functions in proportion
        to their exact call counts, taken from the callee's self time first, then its
        callers', never more of a function's self time than per_call_overhead_cap.
        The time moved is reported under [shadowprof overhead].
        """
        total_calls = sum(self.calls.values())
        if not total_calls:
            return
        budget = total_calls * self.per_call_overhead_ns - self.overhead_weight_ns
        if budget <= 0:
            return
        leaf_weight: dict[int, float] = {}
        for s in self.stacks:
            if s.frames:
                fid = s.frames[-1][0]
                leaf_weight[fid] = leaf_weight.get(fid, 0) + s.weight_ns
        remove: dict[int, float] = {}

        # No function loses a larger share of its self time than the hook adds to an
        # empty function (measured at calibration): a calibration disturbed by a noisy
        # machine can then never erase a function.
        cap = self.per_call_overhead_cap

        def take(fid: int, amount: float) -> float:
            avail = cap * leaf_weight.get(fid, 0) - remove.get(fid, 0)
            got = max(0.0, min(amount, avail))
            if got:
                remove[fid] = remove.get(fid, 0) + got
            return got

        callers: dict[int, list] = {}
        for (caller, callee), n in self.edges.items():
            callers.setdefault(callee, []).append((caller, n))
        for fid, n in self.calls.items():
            want = budget * n / total_calls
            left = want - take(fid, want)
            if left > 0:
                for caller, m in callers.get(fid, ()):
                    take(caller, left * m / n)
        moved = 0.0
        stacks = []
        for s in self.stacks:
            fid = s.frames[-1][0] if s.frames else None
            if fid in remove and leaf_weight[fid]:
                cut = s.weight_ns * remove[fid] / leaf_weight[fid]
                moved += cut
                s = Stack(s.thread_id, s.frames, s.count, s.weight_ns - cut)
            stacks.append(s)
        if moved:
            oid = self._function_id(OVERHEAD_NAME)
            stacks.append(Stack(0, ((oid, 0),), 0, moved))
        self.stacks = stacks
        self.corrected_ns = moved

    def add_overhead(self, ns: float) -> None:
        """Count *ns* of shadowprof's own work done outside the sampled threads (its
        writer or dump thread) as [shadowprof overhead]."""
        if ns > 0:
            oid = self._function_id(OVERHEAD_NAME)
            self.stacks.append(Stack(0, ((oid, 0),), 0, ns))
            self.overhead_weight_ns += ns

    # ----------------------------------------------------------------- queries

    @property
    def total_ns(self) -> float:
        return sum(s.weight_ns for s in self.stacks)

    @property
    def duty(self) -> float:
        """Share of the covered wall time that was profiled: 1.0 unless the profile
        comes from duty-cycled windows (continuous mode with a budget)."""
        if self.covered_ns and self.covered_ns > self.duration_ns > 0:
            return self.duration_ns / self.covered_ns
        return 1.0

    @property
    def effective_rate_hz(self) -> float:
        """Samples per second of the profile's clock (CPU timers fire at most at the
        kernel tick rate, whatever was requested)."""
        clock = self.cpu_ns if self.mode == "cpu" else self.duration_ns
        return self.samples / (clock / 1e9) if clock else 0.0

    @property
    def overhead_share(self) -> float:
        """Share of the sampled time that was shadowprof's own (hook code, and the
        calibrated per-call cost)."""
        total = self.total_ns
        return (self.overhead_weight_ns + self.corrected_ns) / total if total else 0.0

    def overhead_interval(self, confidence: float = 0.95) -> tuple:
        """(low, high) around overhead_share.  Its two parts are uncertain in two
        ways: the samples that landed in the hook's code are a binomial count (Wilson
        interval), and the calibrated per-call cost has the spread of its
        calibration rounds (per_call_overhead_err_ns); the half-widths add in
        quadrature."""
        from .stats import wilson_interval, z_for
        total = self.total_ns
        share = self.overhead_share
        if not total or not self.samples:
            return (share, share)
        lo, hi = wilson_interval(min(self.overhead, self.samples), self.samples,
                                 confidence)
        p = self.overhead / self.samples
        down, up = p - lo, hi - p
        calibrated = 0.0
        if self.corrected_ns and self.per_call_overhead_ns > 0:
            rel = self.per_call_overhead_err_ns / self.per_call_overhead_ns
            calibrated = z_for(confidence) * rel * self.corrected_ns / total
        down = (down ** 2 + calibrated ** 2) ** 0.5
        up = (up ** 2 + calibrated ** 2) ** 0.5
        return (max(0.0, share - down), min(1.0, share + up))

    def sample_counter(self):
        """A function giving the samples a stack stands for: its count; in a profile
        with times only (some foreign pprof files), its time in sampling intervals."""
        if any(s.count for s in self.stacks):
            return lambda s: s.count
        period = self.interval_ns or 1
        return lambda s: round(s.weight_ns / period)

    def function_stats(self) -> dict:
        """{function id: FunctionStats}: per function, self and total (inclusive)
        samples (see sample_counter) and time, and exact calls.  A function counts
        once per stack however often it recurs in it."""
        stats: dict[int, FunctionStats] = {}
        count = self.sample_counter()

        def get(fid: int) -> FunctionStats:
            st = stats.get(fid)
            if st is None:
                fn = self.functions.get(fid) or Function(fid, f"<id {fid}>", "?", 0)
                st = stats[fid] = FunctionStats(fn)
            return st

        for s in self.stacks:
            if not s.frames:
                continue
            c = max(count(s), 0)
            leaf = get(s.frames[-1][0])
            leaf.self_samples += c
            leaf.self_ns += s.weight_ns
            for fid in {fid for fid, _ in s.frames}:
                st = get(fid)
                st.total_samples += c
                st.total_ns += s.weight_ns
        for fid, n in self.calls.items():
            get(fid).calls = n
        return stats

    def report(self, **kwargs) -> str:
        """The text report (see shadowprof.analysis.report.render for the options)."""
        from .report import render
        return render(self, **kwargs)

    # ----------------------------------------------------------------- files

    def to_dict(self) -> dict:
        return {
            "format": "shadowprof-profile", "version": 1,
            "functions": [[f.id, f.name, f.filename, f.firstlineno]
                          for f in self.functions.values()],
            "stacks": [[s.thread_id, [list(fr) for fr in s.frames], s.count, s.weight_ns]
                       for s in self.stacks],
            "calls": [[k, v] for k, v in self.calls.items()],
            "edges": [[a, b, n] for (a, b), n in self.edges.items()],
            "threads": [[k, v] for k, v in self.threads.items()],
            "roots": list(self.roots),
            **{k: getattr(self, k) for k in (
                "mode", "interval_ns", "samples", "weight_ns", "lost", "lost_weight_ns",
                "overhead", "overhead_weight_ns", "table_full", "start_unix_ns",
                "duration_ns", "cpu_ns", "per_call_overhead_ns", "per_call_overhead_cap",
                "corrected_ns", "per_call_overhead_err_ns", "covered_ns")},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Profile":
        if d.get("format") != "shadowprof-profile":
            raise ValueError("not a shadowprof JSON profile (no 'format': "
                             "'shadowprof-profile' field)")
        return cls(
            functions={i: Function(i, n, f, l) for i, n, f, l in d["functions"]},
            stacks=[Stack(t, tuple(tuple(fr) for fr in frs), c, w)
                    for t, frs, c, w in d["stacks"]],
            calls={k: v for k, v in d["calls"]},
            edges={(a, b): n for a, b, n in d["edges"]},
            threads={k: v for k, v in d["threads"]},
            roots=d.get("roots", []),
            **{k: d[k] for k in (
                "mode", "interval_ns", "samples", "weight_ns", "lost", "lost_weight_ns",
                "overhead", "overhead_weight_ns", "table_full", "start_unix_ns",
                "duration_ns", "cpu_ns", "per_call_overhead_ns", "corrected_ns")},
            per_call_overhead_cap=d.get("per_call_overhead_cap", 0.5),
            per_call_overhead_err_ns=d.get("per_call_overhead_err_ns", 0.0),
            covered_ns=d.get("covered_ns", 0))

    def to_json(self) -> str:
        import json
        return json.dumps(self.to_dict())

    @classmethod
    def load_json(cls, path) -> "Profile":
        import json
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(data)


def _forget_calls(profile: Profile, fids: set) -> None:
    """Drop the exact calls of the functions *fids* and the edges into them; the
    calls they made count as calls from the root (caller 0)."""
    profile.calls = {k: v for k, v in profile.calls.items() if k not in fids}
    edges: dict = {}
    for (a, b), n in profile.edges.items():
        if b in fids:
            continue
        a = 0 if a in fids else a
        edges[(a, b)] = edges.get((a, b), 0) + n
    profile.edges = edges


def strip_outer_frames(profile: Profile, is_outer) -> Profile:
    """Remove frames of functions for which ``is_outer(function)`` is true from the
    root end of every stack (e.g. the command line's own frames around the profiled
    program), with their call counts; calls they made count as calls from the root.
    A sample taken in those frames alone (the command line starting or stopping the
    profiler) is shadowprof's own time: it is kept, as [shadowprof overhead]."""
    outer = {fid for fid, fn in profile.functions.items() if is_outer(fn)}
    if not outer:
        return profile
    stacks = []
    overhead = None
    for s in profile.stacks:
        frames = s.frames
        i = 0
        while i < len(frames) and frames[i][0] in outer:
            i += 1
        if frames and i == len(frames):
            if overhead is None:
                overhead = ((profile._function_id(OVERHEAD_NAME), 0),)
            frames, i = overhead, 0
        stacks.append(Stack(s.thread_id, frames[i:], s.count, s.weight_ns))
    profile.stacks = stacks
    _forget_calls(profile, outer)
    return profile


def strip_own_frames(profile: Profile, is_own) -> Profile:
    """Remove the profiler's own functions (``is_own(function)`` true) from
    *profile*, wherever they are: their calls and the edges into them go; calls
    they made count as calls from the root; a sample with one of them on its stack
    is shadowprof's own time and is kept as [shadowprof overhead].  A safety net
    for frames entered before a thread of the profiler could mark itself
    (``_core._ignore_thread``)."""
    own = {fid for fid, fn in profile.functions.items() if not fn.synthetic
           and is_own(fn)}
    if not own:
        return profile
    stacks = []
    overhead = None
    for s in profile.stacks:
        if any(fid in own for fid, _ in s.frames):
            if overhead is None:
                overhead = ((profile._function_id(OVERHEAD_NAME), 0),)
            s = Stack(0, overhead, s.count, s.weight_ns)
            profile.overhead += s.count
            profile.overhead_weight_ns += s.weight_ns
        stacks.append(s)
    profile.stacks = stacks
    _forget_calls(profile, own)
    for fid in own:
        del profile.functions[fid]
    return profile


def strip_pth_lines(profile: Profile) -> Profile:
    """Remove the frames of ``.pth`` lines (code that site.addpackage exec's, named
    ``<module>`` in ``<string>``) that ran after profiling began at start-up: the
    start-up hook's own line runs again when site sees its directory twice (a
    venv's lib and lib64).  Their samples keep the rest of their stack; calls they
    made count as calls from the root.

    Other code compiled from strings (namedtuple's eval, exec) has the same name,
    file and first line, and so the same function: where it ran too, only the frames
    directly under addpackage and the calls addpackage made are taken out."""
    site = {fid for fid, fn in profile.functions.items()
            if fn.name == "addpackage" and (fn.filename.endswith("site.py")
                                            or fn.filename == "<frozen site>")}
    if not site:
        return profile
    strings = {fid for fid, fn in profile.functions.items()
               if fn.name == "<module>" and fn.filename == "<string>"}
    callers: dict = {}
    for (a, b) in profile.edges:
        if b in strings:
            callers.setdefault(b, set()).add(a)
    only = {fid for fid in strings if callers.get(fid, set()) <= site}
    shared = {fid for fid in strings - only if callers[fid] & site}
    if not only and not shared:
        return profile
    stacks = []
    for s in profile.stacks:
        frames = tuple(f for i, f in enumerate(s.frames)
                       if f[0] not in only and not (
                           f[0] in shared and i and s.frames[i - 1][0] in site))
        if s.frames and not frames:
            frames = ((profile._function_id(OVERHEAD_NAME), 0),)
        stacks.append(Stack(s.thread_id, frames, s.count, s.weight_ns))
    profile.stacks = stacks
    for (a, b), n in list(profile.edges.items()):
        if b in shared and a in site:
            del profile.edges[(a, b)]
            profile.calls[b] = profile.calls.get(b, 0) - n
    _forget_calls(profile, only)
    for fid in only:
        del profile.functions[fid]
    return profile
