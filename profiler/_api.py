"""The Python API: Profiler as an object, a context manager and a decorator."""

import _thread
import atexit
import os
import sys
import time

from . import _core

# analysis.model (Profile) is imported where a profile is built: an interpreter that
# profiles with quiet and no output never builds one, and starts faster for it.

__all__ = ["Profiler", "profile"]

# Profilers started and not yet stopped, outermost first.  The C core runs one session
# per process; nested profilers read differences of its cumulative snapshots.
_active: list = []
_lock = _thread.RLock()   # _thread: threading is not imported at start-up
_calibrated_ns: "float | None" = None
_calibrated_share: float = 0.5
_calibrated_err_ns: float = 0.0   # half the interquartile range of the rounds, per call
_calibrated_hook: str = "auto"   # the mechanism _calibrated_ns was measured with

# The option table's choices (tests/test_options.py), here so that the start-up hook
# need not import the table.
HOOKS = ("auto", "eval", "monitoring")
SIGPROF_POLICIES = ("refuse", "chain")


def calibration() -> tuple:
    """(the hook's calibrated cost per call in ns, 0.0 if not measured; its share of
    an empty call, the correction's cap; the spread of the measurement per call)."""
    return _calibrated_ns or 0.0, _calibrated_share, _calibrated_err_ns


def _calibrate(calls: int = 4_000, rounds: int = 9, refresh: bool = False,
               hook: str = "auto") -> float:
    """Measure what the hook adds to one Python call, in ns: the median over
    *rounds* of back-to-back (hook on) - (hook off) timings of a loop of empty calls,
    so that drifts of the machine's speed cancel out.  Also sets the share of an empty
    call's time that the hook is (the cap of the correction).  About 5 ms; cached for
    the life of the process.  With *refresh*, measure again and keep the lower value:
    a busy or still-cold machine only ever makes the measurement too high."""
    global _calibrated_ns, _calibrated_share, _calibrated_hook, _calibrated_err_ns
    if hook != _calibrated_hook:   # each mechanism costs its own
        _calibrated_ns, _calibrated_hook = None, hook
    if _calibrated_ns is not None and not refresh:
        return _calibrated_ns
    ns: dict = {}
    exec("def _f():\n    pass\n"
         "def _loop(n):\n    f = _f\n    for _ in range(n):\n        f()\n", ns)
    loop = ns["_loop"]
    clock = time.thread_time_ns
    loop(calls)  # warm up
    mechanism = hook

    def timed(hook: bool) -> int:
        if hook:
            _core._set_hook(True, mechanism)
        try:
            t0 = clock()
            loop(calls)
            return clock() - t0
        finally:
            if hook:
                _core._set_hook(False)

    diffs, offs = [], []
    for i in range(-3, rounds):  # the first pairs run cold: discarded
        if i % 2:   # alternate the order within a pair
            on = timed(True)
            off = timed(False)
        else:
            off = timed(False)
            on = timed(True)
        if i >= 0:
            diffs.append(on - off)
            offs.append(off)
    diffs.sort()
    offs.sort()
    added = max(0.0, diffs[len(diffs) // 2] / calls)
    off_call = offs[len(offs) // 2] / calls
    if _calibrated_ns is None or added < _calibrated_ns:
        _calibrated_ns = added
        _calibrated_share = added / (added + off_call) if added + off_call > 0 else 0.0
        k = len(diffs)
        _calibrated_err_ns = (diffs[(3 * k) // 4] - diffs[k // 4]) / 2 / calls
    return _calibrated_ns


def needs_calibration(snap: dict) -> bool:
    """Whether the per-call correction of *snap* needs the calibrated cost: only a
    profile with both samples and calls has time to move out of its functions, so an
    empty or very short run never pays for the calibration."""
    return bool(snap.get("samples")) and bool(snap.get("calls"))


def _check_choice(key: str, value: str, choices: tuple) -> str:
    """Validate a value of choice option *key* that the option string does not have
    (its table row has no ``x``); a one-line ValueError names the problem and the fix."""
    if value not in choices:
        raise ValueError(f"bad option {key}={value}: choose "
                         f"{', '.join(choices[:-1])} or {choices[-1]}")
    return value


def _check_hook(hook: str) -> str:
    """Validate a hook= value; a one-line ValueError names the problem and the fix."""
    _check_choice("hook", hook, HOOKS)
    if hook == "monitoring" and sys.version_info < (3, 12):
        raise ValueError("hook 'monitoring' needs CPython 3.12 or later (this is "
                         f"{sys.version.split()[0]}); use hook 'eval' or 'auto'")
    return hook


class Profiler:
    """Sample this process's Python stacks and count every call exactly.

    interval: time between samples: a string with a unit ("10ms", "500us",
        "0.01s") or a rate ("100hz"), or a number of seconds below 1 (0.01).  A
        bare number of 1 or more (5, "10") is refused as ambiguous.  CPU timers fire at most at the kernel's tick rate, so each sample is
        weighted by the time it really stands for.
    mode: "cpu" (CPU time of the process) or "wall" (elapsed time).
    max_depth: frames kept per thread; deeper recursion is truncated with a marker.
    correct_overhead: move the calibrated per-call cost of the hook out of the user's
        functions into a [shadowprof overhead] entry.
    fork: in a child made by os.fork(), "continue" profiles the child afresh (its
        profile covers only the child's own time and calls); "stop" stops there.
    hook: what counts calls and keeps the shadow stacks: "eval" (a PEP 523
        frame-evaluation function), "monitoring" (sys.monitoring, CPython 3.12+), or
        "auto": monitoring on 3.12+, eval before (see the README's table), and eval
        with native=True.
    native: also sample the C stack (needs libunwind): C functions appear under the
        Python line that called them.  native_internals keeps the interpreter's own
        frames (evaluation loop, call machinery), which are folded away by default.
    sigprof: when the program already has a SIGPROF handler or ITIMER_PROF timer,
        "refuse" to start (RuntimeError), or "chain": sample with shadowprof's own
        per-thread timers and hand every other SIGPROF to the program's handler.

    Use start()/stop(), ``with Profiler() as p:``, or ``@Profiler()`` on a function.
    After stop(), ``profile`` holds the result.  Profilers nest: an inner one sees only
    what ran between its own start and stop.
    """

    def __init__(self, interval="10ms", mode: str = "cpu", *, max_depth: int = 1024,
                 correct_overhead: bool = True, fork: str = "continue",
                 native: bool = False, native_internals: bool = False,
                 hook: str = "auto", sigprof: str = "refuse"):
        # Checked by the option table's C parser, the one place that knows the
        # grammar and the bounds (profiler/_options.py, options.c).
        # (_core's, not _options's: the start-up hook need not import the table.)
        self.interval_ns = _core.parse_option("interval", interval)
        self.sigprof = _check_choice("sigprof", sigprof, SIGPROF_POLICIES)
        self.mode = _core.parse_option("mode", mode)
        self.fork = _core.parse_option("fork", fork)
        self.max_depth = _core.parse_option("max_depth", max_depth)
        self.correct_overhead = correct_overhead
        self.native = bool(native)
        self.hook = _check_hook(hook)
        if self.hook == "auto" and self.native:
            # Native stacks (native.c) map each C evaluation frame to one Python
            # frame, which needs the PEP 523 hook's non-inlined calls on 3.12+ too.
            self.hook = "eval"
        self.native_internals = bool(native_internals)
        self.profile: "Profile | None" = None
        self._base = None
        # Marks of the core's counters at start (nested only) and stop, and the
        # correction the profile got: pprof_writer writes the same profile from them.
        self._base_mark = None
        self._end_mark = None
        self._correction = (0.0, 0.5, 0.0)
        self._running = False
        self.last_snapshot: "dict | None" = None   # the core's, taken by stop()

    @classmethod
    def from_options(cls, text: str) -> "Profiler":
        """A Profiler from an option string, the grammar of ``-X shadowprof`` and
        SHADOWPROF: ``Profiler.from_options("interval=5ms,mode=wall")``.  Keys of
        the Profiler: interval, mode, max_depth, fork, native; other keys (output, period,
        ...) are for the start-up hook and raise ValueError here."""
        from ._options import OPTIONS
        opts = _core.parse_options(text)
        mine = {o.dest: o.key for o in OPTIONS if "x" in o.where and "a" in o.where}
        other = [o.key for o in OPTIONS if o.dest in opts and o.dest not in mine]
        if other:
            raise ValueError(f"option {other[0]} applies to -X shadowprof and "
                             "SHADOWPROF only; a Profiler takes "
                             f"{', '.join(sorted(mine.values()))}")
        kwargs = {mine[dest]: value for dest, value in opts.items()}
        if "interval" in kwargs:
            kwargs["interval"] = f"{kwargs['interval']}ns"
        return cls(**kwargs)

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> "Profiler":
        with _lock:
            if self._running:
                raise RuntimeError("this Profiler is already running")
            self._end_mark = None
            if _active:
                self._base_mark, self._base = self._mark_and_snapshot()
            else:
                # No calibration here: it runs once, at stop, and only when the
                # profile has something to correct (see stop()).
                _core.set_sigprof_policy(self.sigprof)
                _core.start(interval_ns=self.interval_ns, mode=self.mode,
                            max_depth=self.max_depth, fork=self.fork, hook=self.hook,
                            **({"native": True} if self.native else {}))
                self._base = self._base_mark = None
            _active.append(self)
            self._running = True
        return self

    def stop(self, *, profile: bool = True) -> "Profile | None":
        """Stop profiling; returns the Profile (None with profile=False: nothing
        is built, snapshot or calibrated, when nobody will read it)."""
        with _lock:
            if not self._running:
                raise RuntimeError("this Profiler is not running")
            _active.remove(self)
            self._running = False
            stopped = not _active and _core.is_running()
            if stopped:
                _core.stop()
            if not profile:
                # Nobody reads this profiler's result: no snapshot either (what the
                # core holds goes with the next start, or the process).
                self._end_mark = self.last_snapshot = None
                return None
            self._end_mark, snap = self._mark_and_snapshot()
            self.last_snapshot = snap
            if stopped and self.correct_overhead and needs_calibration(snap):
                # After the snapshot: the calibration's own calls are never in it.
                _calibrate(hook=self.hook)
        per_call = (_calibrated_ns or 0.0) if self.correct_overhead else 0.0
        self._correction = (per_call, _calibrated_share, _calibrated_err_ns)
        from .analysis.model import Profile
        self.profile = Profile.from_snapshot(snap, self._base,
                                             per_call_overhead_ns=per_call,
                                             per_call_overhead_cap=_calibrated_share,
                                             per_call_overhead_err_ns=_calibrated_err_ns,
                                             correct=self.correct_overhead)
        return self.profile

    def snapshot(self) -> "Profile":
        """The profile so far, without stopping."""
        with _lock:
            if not self._running:
                raise RuntimeError("this Profiler is not running")
            snap = self._resolve(_core.snapshot())
        from .analysis.model import Profile
        return Profile.from_snapshot(snap, self._base,
                                     per_call_overhead_ns=_calibrated_ns or 0.0,
                                     per_call_overhead_cap=_calibrated_share,
                                     per_call_overhead_err_ns=_calibrated_err_ns,
                                     correct=self.correct_overhead)

    def save(self, path, format: "str | None" = None) -> None:
        """Write this profiler's profile (from its start to its stop, or to now while
        it runs) to *path*, in *format* or the one its extension names (see
        shadowprof.formats).  pprof files are encoded from the core's own tables in C,
        compressed and written without holding the GIL: milliseconds where encoding
        the Profile in Python takes seconds."""
        from .analysis import formats
        fmt = formats.format_for(os.fspath(path), format)
        if fmt == "pprof":
            from . import pprof_writer
            if pprof_writer.write_profiler(self, os.fspath(path)):
                return
        profile = self.snapshot() if self._running else self.profile
        if profile is None:
            raise RuntimeError("this Profiler has not been started")
        formats.write_profile(profile, os.fspath(path), fmt)

    def _mark_and_snapshot(self) -> tuple:
        """A mark of the core's counters (None with native frames, which only the
        Python layer names) and the snapshot of the same moment."""
        if self.native:
            return None, self._resolve(_core.snapshot())
        return _core.mark(True)

    def _resolve(self, snap: dict) -> dict:
        # Native frames are named here, in the profiled process, while its objects
        # are still mapped.
        if snap.get("native"):
            from .native import resolve_snapshot
            resolve_snapshot(snap, internals=self.native_internals)
        return snap

    def __enter__(self) -> "Profiler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __call__(self, func):
        """Use the profiler as a decorator: profile each call of *func*."""
        import functools
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with self:
                return func(*args, **kwargs)
        wrapper.profiler = self
        return wrapper


def profile(func=None, **options):
    """Decorator: ``@shadowprof.profile`` or ``@shadowprof.profile(interval="1ms")``.
    The wrapped function's ``profiler.profile`` holds the last call's profile."""
    if func is None:
        return lambda f: Profiler(**options)(f)
    return Profiler(**options)(func)


def _after_fork_in_child() -> None:
    # The core started a fresh profile for the child (or stopped): differences
    # against snapshots taken in the parent no longer mean anything.
    for prof in _active:
        prof._base = prof._base_mark = None
    if _active and not _core.is_running():
        _core.stop()   # fork="stop": also detach the hook (sys.monitoring callbacks)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _stop_at_exit() -> None:
    # The timer must be disarmed before the interpreter frees thread states.
    if _core.is_running():
        _core.stop()
