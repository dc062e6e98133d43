"""Continuous profiling: one pprof file per period, for canaries and fleets.

Two ways to run, chosen by *budget*:

Duty-cycled (budget > 0, the default of ``period=`` is 1%): in each period the writer
thread profiles one *window* at a random offset (so it cannot lock onto periodic work)
and between windows the profiler is off entirely: ``_core.stop()`` removes the hook
(on 3.11 CPython inlines Python calls again; on 3.12+ the monitoring events are off)
and disarms the timers; ``_core.start()`` re-seeds every thread.  Each window is one
file, which holds exactly what happened in it: calls are exact for the window, pprof
``duration_nanos`` is the time actually profiled, and the comments say the window,
the period and the duty (``shadowprof.window ...``).  The window is sized from what
was measured so that everything shadowprof adds stays under the budget, as a share
of the process's CPU time:

    in the window: exact calls x the calibrated per-call cost of the hook, plus the
                   signal handler and the drain (measured by the core);
    per window:    the writer's own CPU time (start, stop, snapshot, encode, write).

With rho = (in-window cost) / (the program's own CPU in the window) and U the
program's CPU time in a period, a window of P x (budget - writer / U) / rho keeps the
total under budget x U; a Ledger repays what a window cost beyond its estimate
from the next windows.  Before anything was measured (the first window) the window
is the shortest one.  The window is bounded below (MIN_WINDOW_S, two sampling
intervals) so that a period never goes empty; when that floor is above what the
budget allows, the file says so.  At exit an open
window is closed and written; a period whose window had not begun writes nothing.

Always on (budget 0, ``budget=off``): the core runs for the whole session (started
by the caller) and the writer writes the difference between consecutive snapshots
every period, so each file covers exactly its period.

Files are named ``HOST-PID-START-SEQ.pb.gz`` (START: the writer's start, UTC),
written to a temporary file in the same directory and renamed (a process killed
mid-write never leaves a partial file under a final name), and only the newest
*keep* files of this process are kept.  After os.fork() the child starts a writer of
its own (its own pid in the names).

The profiler never profiles itself: the writer thread calls ``_core._ignore_thread``
before it starts the core (it is never tracked, seeded or sampled), the calibration
runs before that, outside any session (start() resets its counts), and the writer's
CPU time is added to each file's overhead (``overhead_weight_ns``).

Thread contract: the writer thread and the exiting main thread take ``_lock`` around
"snapshot, write"; nothing else touches the writer's state.  Files are written by
pprof_writer.write_period (the core's table encoded, compressed and written in C).
"""

from __future__ import annotations

import os
import sys
import threading
import time

from . import _api, _core, pprof_writer

# The profile model is imported only by current_profile() (the dump signal): a
# process that only writes period files never loads it.

__all__ = ["Ledger", "PeriodicWriter", "file_prefix", "window_length"]

# The shortest window (besides two sampling intervals): a period never goes empty.
MIN_WINDOW_S = 0.02
# CPython 3.12: how long after a window the writer gives the functions that ran in it
# their superinstructions back (the hot ones have started again by then).
REQUICKEN_DELAY_S = 0.1
# The first period's window: the least of the period before it that gives the rest of
# the period its rate (for the file's cost=); a shorter lead, the window's own rate.
LEAD_MIN_S = 0.05
# The least a call under the hook is budgeted at, in ns (callgrind: about 40
# instructions a call over the bare mechanism, some 10 ns here).
MIN_PER_CALL_NS = 10.0
_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _is_own(fn) -> bool:
    return fn.filename.startswith(_HERE)


def window_length(period_s: float, budget: float, rho: float, fixed_s: float,
                  program_cpu_s: float | None, floor_s: float,
                  balance_s: float = 0.0) -> float:
    """Seconds to profile in each *period_s* so that shadowprof's cost stays under
    *budget* (a share of the program's CPU time): *rho* is the cost while profiling
    per second of the program's own CPU time, *fixed_s* the writer's CPU time per
    window, *program_cpu_s* the program's CPU time in a period (None: not known
    yet), *balance_s* what earlier periods left of their budget (negative: what
    they overspent, repaid by this window; see Ledger).  Bounded below by *floor_s*
    and above by the period."""
    share = budget
    if program_cpu_s is not None:
        if program_cpu_s > 0:
            share += (balance_s - fixed_s) / program_cpu_s
        elif fixed_s > 0:
            share = 0.0
    if rho <= 0:
        return period_s
    return max(floor_s, min(period_s, period_s * share / rho))


class Ledger:
    """What the windows have cost against what the budget allowed, in CPU ns.

    Each window is sized from estimates made before it (the cost per ns of program
    time measured in the previous window, the writer's last cost); a window that
    cost more than estimated (a burst of calls, a slow write) leaves a debt that the
    next windows repay by being shorter, and one that cost less a credit.  Credit is
    capped at one period's allowance (an idle stretch does not buy a long window
    later) and debt at DEBT_PERIODS periods' (a burst the floor cannot repay does
    not keep the windows at the floor for ever)."""

    DEBT_PERIODS = 4

    def __init__(self, budget: float):
        self.budget = budget
        self.balance_ns = 0.0
        self.spent_ns = 0
        self.allowed_ns = 0.0

    def record(self, program_ns: int, cost_ns: int) -> None:
        """One period: the program's own CPU time in it and what shadowprof cost."""
        allowed = self.budget * program_ns
        self.spent_ns += cost_ns
        self.allowed_ns += allowed
        self.balance_ns = max(-self.DEBT_PERIODS * allowed,
                              min(allowed, self.balance_ns + allowed - cost_ns))


# Code objects of shadowprof's own functions, by module (modules are walked once).
_own_modules: set = set()
_own_codes: list = []


def _own_code_ids() -> list:
    """Registry ids of shadowprof's own functions that the hook has seen (entered
    before the thread that ran them could mark itself, or at start-up): removed from
    the files.  The code objects are collected once per module; their ids asked each
    time (a function not seen yet has none)."""
    import sys
    for name, mod in list(sys.modules.items()):
        if not name.startswith("shadowprof") or mod is None or name in _own_modules:
            continue
        _own_modules.add(name)
        for obj in list(vars(mod).values()):
            for f in ([obj] + list(vars(obj).values()) if isinstance(obj, type) else [obj]):
                code = getattr(f, "__code__", None) or getattr(
                    getattr(f, "fget", None), "__code__", None)
                if code is not None and code.co_filename.startswith(_HERE):
                    _own_codes.append(code)
    code_id = _core.code_id
    return [fid for fid in map(code_id, _own_codes) if fid]


def _uniform() -> float:
    """A uniform number in [0, 1) without importing random."""
    return int.from_bytes(os.urandom(7), "big") / float(1 << 56)


def file_prefix(host: str, pid: int, start: str) -> str:
    """The name every file of one writer starts with: ``HOST-PID-START-``."""
    return f"{host}-{pid}-{start}-"



class PeriodicWriter:
    """Write the profile of each *period_s* seconds into *directory*, keeping the
    newest *keep* files (0: all).  *comments* go into every file (e.g. the canary
    decision).

    *budget* > 0: duty-cycled windows (see the module docstring); the writer starts
    and stops the core itself with *session* (keyword arguments of ``_core.start``:
    interval_ns, mode, max_depth, fork, native, hook; from the running core if it is
    running and *session* is None) and *sigprof* (``_core.set_sigprof_policy``).
    *budget* 0: the core session must be running (the caller starts it); each file
    is the difference between consecutive snapshots."""

    def __init__(self, directory: str, period_s: float, *, keep: int = 10,
                 budget: float = 0.0, comments: list | None = None,
                 on_message=None, session: dict | None = None,
                 sigprof: str = "refuse"):
        self.directory = directory
        self.period_s = period_s
        self.keep = keep
        self.budget = budget
        self.comments = list(comments or [])
        self.on_message = on_message or (lambda text: None)
        self.session = dict(session) if session else None
        self.sigprof = sigprof
        self.files_written = 0
        self.samples_written = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reset()

    def _reset(self) -> None:
        self.pid = os.getpid()
        self.host = os.uname().nodename.replace("/", "_") or "host"
        self.start_stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.prefix = file_prefix(self.host, self.pid, self.start_stamp)
        self.seq = 0
        self._base = None
        self._notes: list = []
        self.files_written = 0
        self.samples_written = 0
        self.windows = []            # (window_s, period_s, cost_ns, program_cpu_ns)
        self._rho = None             # measured cost per ns of the program's CPU
        self._fixed_ns = 0           # the writer's CPU time per window
        self._program_cpu_ns = None  # the program's CPU time in the last period
        self._lead_rate = None       # first period: program CPU/s before its window
        self._period_mark = None     # (monotonic, process CPU ns) at the period's start
        self.ledger = Ledger(self.budget)
        self._window_s = 0.0
        self._open = None            # (monotonic start, length s, offset s, writer ns)
        self._finish_ns = None       # the last file's compression and write (CPU ns)

    @property
    def duty_cycled(self) -> bool:
        return self.budget > 0

    @property
    def _requickens(self) -> bool:
        """Whether the windows instrument code with sys.monitoring on CPython 3.12,
        which takes the superinstructions out of it (requicken.c)."""
        session = self.session or {}
        return (sys.version_info[:2] == (3, 12) and not session.get("native")
                and session.get("hook", "auto") != "eval")

    # ------------------------------------------------------------------ thread

    def start(self) -> "PeriodicWriter":
        """Start the writer thread; returns once the thread is marked as the
        profiler's own, so that a caller may then start the core."""
        self._stop.clear()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,),
                                        name="shadowprof-writer", daemon=True)
        self._thread.start()
        ready.wait(30.0)
        return self

    def after_fork_in_child(self) -> None:
        """In a forked child: write files of this pid from now on.  A duty-cycled
        window open at the fork is dropped (the child's counts restarted there) and
        the child's own windows begin with its next period."""
        self._lock = threading.Lock()   # the parent's may have been held at fork
        self._stop = threading.Event()
        if self.duty_cycled and _core.is_running():
            _core.stop()
        self._reset()
        self.start()

    def _run(self, ready) -> None:
        try:
            if not _core.is_running():
                # Before the mark: the calibration needs this thread's calls counted.
                # Its counts are reset by the next _core.start().
                _api._calibrate(hook=(self.session or {}).get("hook", "auto"))
        except Exception as e:
            self.on_message(f"cannot calibrate the hook's cost: {e}")
        finally:
            _core._ignore_thread()   # never tracked, seeded, counted nor sampled
            ready.set()
        try:
            if self.duty_cycled:
                self._duty_loop()
            else:
                while not self._stop.wait(self.period_s):
                    try:
                        self.write_period()
                    except Exception as e:   # keep the program running; say why
                        self.on_message(f"cannot write a periodic profile: {e}")
        except Exception as e:
            self.on_message(f"continuous profiling stopped: {e}")
            if self.duty_cycled and _core.is_running():
                _core.stop()

    def close(self, final_snapshot: dict | None = None) -> None:
        """Stop the thread and write what is left: the open window (duty-cycled)
        or the last, partial period (from *final_snapshot* if given: the snapshot
        taken when the core stopped)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=max(5.0, 2 * self.period_s))
        if self.duty_cycled:
            with self._lock:
                if self._open is not None:   # the thread did not get to it
                    self._close_window(partial=True)
            return
        self.write_period(final_snapshot)

    # ------------------------------------------------------------------ windows

    def _floor_s(self) -> float:
        interval = (self.session or {}).get("interval_ns", 10_000_000) / 1e9
        return min(self.period_s, max(MIN_WINDOW_S, 2 * interval))

    def _next_window_s(self) -> float:
        rho = self._rho
        if rho is None:
            # Nothing measured yet (the first window, or only idle ones): what the
            # program's calls cost and what a write costs are unknown, so the
            # shortest window; the next ones are sized from what it cost.
            return self._floor_s()
        program = None if self._program_cpu_ns is None else self._program_cpu_ns / 1e9
        return window_length(self.period_s, self.budget, rho, self._fixed_ns / 1e9,
                             program, self._floor_s(), self.ledger.balance_ns / 1e9)

    def _period_program_ns(self, window_program_ns: float, window_s: float) -> float:
        """The program's own CPU time in the current period, estimated while it runs:
        the window's, plus the rest of the period at the previous period's rate (the
        ledger loop measures whole periods).  Not at the window's own rate: the hook
        takes CPU time from a busy program while it is on (about half of it on
        call-only code), so that rate made the share about twice what it was.  The
        first period has none: its rate before its window opened (LEAD_MIN_S or
        more of it), else the window's own."""
        rest_s = max(0.0, self.period_s - window_s)
        if self._program_cpu_ns is not None:
            rate = self._program_cpu_ns / self.period_s
        elif self._lead_rate is not None:
            rate = self._lead_rate
        else:
            rate = window_program_ns / window_s if window_s > 0 else 0.0
        return window_program_ns + rate * rest_s

    def _duty_loop(self) -> None:
        period = self.period_s
        wait = self._stop.wait
        if _core.is_running():
            # Started by the caller: this is the first window; it ends with its period.
            self._session_from_core()
            self._open = (time.monotonic(), self._next_window_s(), 0.0, 0)
        period_start = time.monotonic()
        cpu_mark = time.process_time_ns()
        self._period_mark = (period_start, cpu_mark)
        while True:
            if self._open is None:
                length = self._next_window_s()
                offset = (period - length) * _uniform()
                if wait(max(0.0, period_start + offset - time.monotonic())):
                    return
                with self._lock:
                    self._open_window(length, offset)
            began, length = self._open[0], self._open[1]
            if wait(max(0.0, began + length - time.monotonic())):
                with self._lock:
                    if self._open is not None:
                        self._close_window(partial=True)
                return
            with self._lock:
                cost_ns = self._close_window()
            period_start += period
            now = time.monotonic()
            if now > period_start:   # fell behind (a slow write): start afresh
                period_start = now
            if self._requickens:
                # CPython 3.12: the functions that ran in the window lost their
                # superinstructions to sys.monitoring; each is rewritten as it next
                # starts, and shortly after they are formed again (requicken.c).
                if wait(min(REQUICKEN_DELAY_S, period_start - now)):
                    return
                t = time.thread_time_ns()
                _core._requicken()
                cost_ns += time.thread_time_ns() - t
                now = time.monotonic()
            if wait(period_start - now):
                return
            cpu = time.process_time_ns()
            self._program_cpu_ns = max(0, cpu - cpu_mark - cost_ns)
            self.ledger.record(self._program_cpu_ns, cost_ns)
            cpu_mark = cpu

    def _session_from_core(self) -> None:
        if self.session is None:
            snap = _core.snapshot()
            self.session = {k: snap[k] for k in ("interval_ns", "mode", "max_depth",
                                                 "hook") if k in snap}
            if snap.get("native"):
                self.session["native"] = True

    def _open_window(self, length: float, offset: float) -> None:
        t0 = time.thread_time_ns()
        if self._program_cpu_ns is None and self._period_mark is not None:
            began, cpu = self._period_mark
            lead = time.monotonic() - began
            if lead >= LEAD_MIN_S:
                self._lead_rate = (time.process_time_ns() - cpu) / lead
        if self.session is None:
            self.session = {}
        _core.set_sigprof_policy(self.sigprof)
        _core.start(**self.session)
        self._open = (time.monotonic(), length, offset, time.thread_time_ns() - t0)

    def _close_window(self, partial: bool = False) -> int:
        """Stop the core, write the window's file; returns shadowprof's cost in the
        window and for it (ns of CPU time).  Caller holds _lock."""
        t0 = time.thread_time_ns()
        began, length, offset, open_ns = self._open
        self._open = None
        _core.stop()
        t_stopped = time.thread_time_ns()
        # A hook too cheap for the calibration to resolve (it measured 0: 3.9 and 3.10,
        # which do not inline calls anyway, on a busy machine) is still budgeted: at
        # MIN_PER_CALL_NS a call, not as free (a free hook would make the window the
        # whole period).
        per_call = max(_api.calibration()[0], MIN_PER_CALL_NS)
        window = {}

        def notes(info: dict) -> tuple:
            """The window's note and what it costs, from the writer's totals (no
            snapshot): asked while the file is being encoded."""
            in_window = info["calls"] * per_call + info["handler_ns"] + info["drain_ns"]
            # No more than the window's CPU time: a calibration that read high (a busy
            # machine, calls cheaper than its empty ones) can make the calls' cost
            # exceed it, and then the program ran for nothing and the share read 0.
            in_window = min(in_window, info["cpu_ns"])
            program = info["cpu_ns"] - in_window
            window_s = info["duration_ns"] / 1e9
            # The writer's cost of this window: opening and stopping the core, the
            # encoding so far, and compressing and writing as the previous window's
            # did (the first window: as much again as the encoding took so far).
            now = time.thread_time_ns()
            rest = self._finish_ns if self._finish_ns is not None else now - t_stopped
            writer_ns = open_ns + (now - t0) + rest
            cost = in_window + writer_ns
            duty = min(1.0, window_s / self.period_s)   # a whole period: 1
            # Share of the program's CPU time in the period, which is still running.
            period_program = self._period_program_ns(program, window_s)
            share = cost / period_program if period_program > 0 else 0.0
            window.update(in_window=in_window, program=program, window_s=window_s,
                          encoded=now)
            lines = [f"shadowprof.window window_s={window_s:.6f} "
                     f"period_s={self.period_s:g} duty={duty:.6f} offset_s={offset:.3f} "
                     f"budget={self.budget:g} cost={share:.6f} cpu_ns={info['cpu_ns']} "
                     f"hook_ns={int(info['calls'] * per_call)} "
                     f"handler_ns={info['handler_ns']} drain_ns={info['drain_ns']} "
                     f"writer_ns={writer_ns}" + (" partial=1" if partial else "")]
            if (length <= self._floor_s() + 1e-9 and share > self.budget
                    and not partial):
                lines.append(f"shadowprof.budget over: the shortest window "
                             f"({self._floor_s():g}s) costs {100 * share:.2f}% of this "
                             f"period's CPU, over the budget {100 * self.budget:g}%; "
                             "use a longer period= for a smaller share")
            covered = (max(int(round(self.period_s * 1e9)), info["duration_ns"])
                       if not partial else int(info["duration_ns"] + offset * 1e9))
            return lines, {"overhead_weight_ns": writer_ns, "covered_ns": covered}

        self._write(None, [], notes=notes)
        end = time.thread_time_ns()
        # what followed the notes (compressing, writing): the next window's estimate
        self._finish_ns = end - window["encoded"]
        if window["program"] > 0 and not partial:
            self._rho = window["in_window"] / window["program"]
        total_writer = open_ns + end - t0
        self._fixed_ns = total_writer
        self.windows.append((window["window_s"], self.period_s,
                             window["in_window"] + total_writer, window["program"]))
        return int(window["in_window"] + total_writer)

    # ------------------------------------------------------------------ writing

    def write_period(self, snap=None) -> str | None:
        """Always-on mode: write what happened since the previous file; returns its
        path.  *snap*: the end of the period (a mark or the stopped core's snapshot;
        None: now)."""
        with self._lock:
            t0 = time.thread_time_ns()
            notes = self._notes
            self._notes = []
            path, period = self._write(self._base, notes, end=snap,
                                       writer_ns=self._fixed_ns)
            self._base = period.base
            self._fixed_ns = time.thread_time_ns() - t0
            return path

    def _write(self, base, lines: list, *, end=None, writer_ns: int = 0,
               notes=None) -> tuple:
        """One file from the core (pprof_writer: encoded, compressed and written in
        C); the writer's CPU time counts as shadowprof's overhead.  *notes*: see
        pprof_writer.write_period.  Returns (path, pprof_writer.Period)."""
        self.seq += 1
        name = f"{self.prefix}{self.seq:05d}.pb.gz"
        path = os.path.join(self.directory, name)
        head = [f"shadowprof.period file={name} seq={self.seq} pid={self.pid} "
                f"host={self.host} start={self.start_stamp} "
                f"period_s={self.period_s:g}"]
        if end is None:
            # The end first, then the ids to strip: a function of ours counted by the
            # end has an id by then (a call counted while the core was stopping).
            end = _core.mark()
        period = pprof_writer.write_period(
            path, base, head + self.comments + lines, end=end,
            meta_add={"overhead_weight_ns": writer_ns}, strip=_own_code_ids(),
            notes=notes)
        self.files_written += 1
        self.samples_written += period.samples
        self._prune()
        return path, period

    def current_profile(self) -> "Profile":
        """The profile of the open window (or the last one), for the dump signal."""
        from .analysis.model import Profile, strip_own_frames, strip_pth_lines
        with self._lock:
            try:
                snap = _core.snapshot()
            except RuntimeError:    # no window has begun yet
                return Profile({}, [], {}, {})
        per_call, cap, _ = _api.calibration()
        prof = Profile.from_snapshot(snap, per_call_overhead_ns=per_call,
                                     per_call_overhead_cap=cap)
        return strip_pth_lines(strip_own_frames(prof, _is_own))

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
