"""What ``python -X shadowprof[=OPTIONS]`` and ``SHADOWPROF=OPTIONS`` run at start-up.

The startup hook ``shadowprof.pth`` (installed into site-packages) is one line that
checks ``sys._xoptions`` and ``os.environ`` inline and imports this module only when
one of them asks for profiling, so an interpreter started without them pays for one
dictionary lookup of each and imports nothing of ours.

Options come from the flag, else from the variable (when both are set the flag is used
and the variable ignored), and are parsed by the C parser shared with
``Profiler.from_options`` (``_core.parse_options``; profiler/options.c).  Anything
wrong (an unknown key, a bad value, an output directory that cannot be written) gives
one line on stderr naming the option and what it may be, and the program then runs
unprofiled: its output, exceptions and exit code never depend on the profiler.  The
one exception is a profile that cannot be written at exit (its destination removed or
replaced during the run): it goes to the temporary directory if it can, one line says
where, and the process exits with status 120, so that a lost profile never exits 0.

Modes:
- one-shot (no ``period``): profile the whole run; at exit print the report on stderr,
  or write ``output`` (format from ``format`` or the extension).
- continuous (``period=60s,output=DIR``): a PeriodicWriter (continuous.py) writes one
  pprof file per period into DIR, keeping the newest ``keep``.
Both: a dump signal (``signal``, default SIGUSR2; ``signal=off``) writes the profile
so far and every thread's stack (_dump.py); ``sample_rate`` profiles only that share
of processes, decided once per process and written into the profile's comments; a
forked child keeps profiling into files of its own pid.
"""

import atexit
import os
import sys
import time

__all__ = ["run", "Session", "resolve"]

session = None   # the Session started by run(), if any
_ran = False     # run() has been called in this process


def _message(text: str) -> None:
    try:
        sys.stderr.write(f"shadowprof: {text}\n")
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass


def option_text() -> tuple:
    """(option string, where it came from) from -X shadowprof, else SHADOWPROF."""
    x = sys._xoptions.get("shadowprof")
    if x is not None:
        return ("" if x is True else x), "-X shadowprof"
    return os.environ.get("SHADOWPROF", ""), "SHADOWPROF"


def _expand(template: str, start: str) -> str:
    """*template* with {pid}, {host} and {time} filled in."""
    try:
        return template.format(pid=os.getpid(), host=os.uname().nodename, time=start)
    except (KeyError, IndexError, ValueError):
        raise ValueError(f"bad option output={template}: only {{pid}}, {{host}} and "
                         "{time} may be filled in (double other braces)") from None


def _writable_dir(key: str, value: str, directory: str) -> None:
    if not os.path.isdir(directory):
        raise ValueError(f"bad option {key}={value}: directory {directory} does not "
                         "exist")
    from .analysis.formats import probe_directory
    e = probe_directory(directory)
    if e is not None:
        raise ValueError(f"bad option {key}={value}: cannot write in directory "
                         f"{directory}: {e.strerror}") from None


def resolve(text: str) -> dict:
    """The full option set of *text*: parsed, defaults filled in, and checked against
    the file system.  Raises ValueError with a one-line message."""
    from . import _core
    # The option table's defaults (profiler/_options.py, compiled into the core);
    # budget's is None: 1% in continuous mode; it needs period= (it is checked once
    # per period).
    opts = _core.option_defaults()
    opts.update(_core.parse_options(text))
    opts["start_stamp"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = opts["output"]
    if opts["period_ns"]:
        if not out:
            raise ValueError(f"option period={opts['period_ns'] / 1e9:g}s needs "
                             "output=DIRECTORY for its files")
        if opts["format"] not in (None, "pprof"):
            raise ValueError(f"bad option format={opts['format']}: continuous mode "
                             "(period=) writes pprof only")
        directory = _expand(out, opts["start_stamp"])
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise ValueError(f"bad option output={out}: cannot create directory "
                             f"{directory}: {e.strerror}") from None
        _writable_dir("output", out, directory)
        if opts["budget"] is None:
            opts["budget"] = 0.01
    else:
        if out:
            from .analysis import formats
            path = _expand(out, opts["start_stamp"])
            opts["format"] = formats.format_for(path, opts["format"])
            if os.path.isdir(path):
                raise ValueError(f"bad option output={out}: {path} is a directory; give "
                                 "a file name, or period= for periodic files in it")
            if path != "-":
                _writable_dir("output", out, os.path.dirname(os.path.abspath(path)))
        if opts["budget"]:
            raise ValueError(f"option budget={100 * opts['budget']:g}% needs period=: "
                             "the budget is checked once per period")
        opts["budget"] = 0.0
    return opts


class Session:
    """One profiled process: the Profiler, and the periodic writer and dump listener
    if asked for.  Started by run(); stopped at exit."""

    def __init__(self, opts: dict, comments: list):
        from ._api import Profiler
        self.opts = opts
        self.comments = comments
        self.pid = os.getpid()
        # Nothing to report (quiet, no output file): no calibration is needed.
        correct = not (opts["quiet"] and not opts["output"])
        self.profiler = Profiler(interval=f"{opts['interval_ns']}ns", mode=opts["mode"],
                                 max_depth=opts["max_depth"], fork=opts["fork"],
                                 native=opts["native"], correct_overhead=correct)
        self.profiler._requicken_at_stop = False   # it stops at exit
        self.writer = None
        self.dumper = None

    def _dump_dir(self) -> str:
        out = self.opts["output"]
        if out and self.opts["period_ns"]:
            return _expand(out, self.opts["start_stamp"])
        if out and out != "-":
            return os.path.dirname(os.path.abspath(_expand(out, self.opts["start_stamp"])))
        return os.getcwd() if os.access(".", os.W_OK) else "/tmp"

    def start(self) -> None:
        # The profiler's own threads (dump, writer) mark themselves before the core
        # starts, so that none of their frames is ever tracked.
        opts = self.opts
        if opts["signal"]:
            from ._dump import DumpListener
            self.dumper = DumpListener(opts["signal"], self._dump_profile,
                                       self._dump_dir(), quiet=opts["quiet"])
            if not self.dumper.install():
                self.dumper = None
        if opts["period_ns"]:
            from .continuous import PeriodicWriter
            p = self.profiler
            self.writer = PeriodicWriter(
                _expand(opts["output"], opts["start_stamp"]), opts["period_ns"] / 1e9,
                keep=opts["keep"], budget=opts["budget"], comments=self.comments,
                on_message=None if opts["quiet"] else _message,
                session=dict(interval_ns=p.interval_ns, mode=p.mode,
                             max_depth=p.max_depth, fork=p.fork, hook=p.hook,
                             **({"native": True} if p.native else {})),
                sigprof=p.sigprof).start()
        if not (self.writer is not None and self.writer.duty_cycled):
            self.profiler.start()   # duty-cycled: the writer starts each window
        if opts["fork"] == "continue" and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork_in_child)
        atexit.register(self.stop)

    def _save(self, profile, path: str, fmt) -> None:
        """Write *profile* (the Profiler's, without shadowprof's own frames) to
        *path*; pprof straight from the core in C, which strips the same frames."""
        from .analysis import formats
        if (fmt or formats.format_for(path, None)) == "pprof":
            from . import pprof_writer
            snap = self.profiler.last_snapshot or {"functions": {}}
            own = [fid for fid, (name, filename, _) in snap["functions"].items()
                   if fid > 0 and filename.startswith(_own_dir())]
            # strip_pth: a .pth line run again by site (a venv's lib and lib64)
            if pprof_writer.write_profiler(self.profiler, path, strip=own, strip_pth=True):
                return
        formats.write_profile(profile, path, fmt, top=self.opts["top"])

    def _dump_profile(self):
        from .analysis.model import strip_own_frames, strip_pth_lines
        if self.writer is not None:
            return self.writer.current_profile()
        return strip_pth_lines(strip_own_frames(self.profiler.snapshot(), _is_own))

    @property
    def running(self) -> bool:
        if self.writer is not None and self.writer.duty_cycled:
            return self.writer._thread is not None
        return self.profiler.running

    def _after_fork_in_child(self) -> None:
        if not self.running:
            return
        if self.writer is not None:
            self.writer.after_fork_in_child()
        if self.dumper is not None:
            self.dumper.after_fork_in_child()

    def stop(self) -> None:
        """Stop profiling and write the results (at exit).  A profile that cannot be
        written goes to the temporary directory if it can, with one line on stderr
        saying where, and the process exits with status 120 (_exit_status_120)."""
        try:
            self._stop()
        except Exception as e:
            _message(f"cannot write the profile: {e}")
            _exit_status_120()

    def _write(self, write, path: str) -> bool:
        """write(path), else a fallback file (see stop()); True if *path* was written."""
        from .analysis import formats
        where, error = formats.write_or_fall_back(write, path)
        if error is not None:
            went = (f"written to {where} instead" if where
                    else "the profile is lost (the temporary directory failed too)")
            _message(f"cannot write the profile to {path}: {error.strerror or error}; "
                     f"{went}")
            _exit_status_120()
        return error is None

    def _stop(self) -> None:
        from . import _core
        if not self.running:
            return
        if self.dumper is not None:
            self.dumper.uninstall()
        opts = self.opts
        if self.writer is not None:
            w = self.writer
            if w.duty_cycled:
                w.close()
                w._thread = None
                if _core.is_running():   # the writer thread did not finish in time
                    _core.stop()
            else:
                w._stop.set()
                if w._thread is not None:
                    w._thread.join(timeout=max(5.0, 2 * w.period_s))
                self.profiler.stop()
                # The end of the last period: the core's counters when it stopped.
                w.close(self.profiler._end_mark)
            if not opts["quiet"]:
                _message(f"{w.files_written} periodic profiles in "
                         f"{w.directory} ({w.samples_written} "
                         f"samples in total)")
            return
        out = opts["output"]
        if opts["quiet"] and not out:
            self.profiler.stop(profile=False)   # nothing to report: build nothing
            return
        from .analysis.model import strip_own_frames, strip_pth_lines
        profile = strip_pth_lines(strip_own_frames(self.profiler.stop(), _is_own))
        if self.dumper is not None and self.dumper.cost_ns:
            profile.add_overhead(self.dumper.cost_ns)
        from .analysis import formats
        if os.getpid() != self.pid:   # a forked child: a file of its own, no report
            if out and out != "-":
                path = _expand(out, opts["start_stamp"])
                if "{pid}" not in out:
                    path = formats.path_for_pid(path, os.getpid())
                self._write(lambda p: self._save(profile, p, opts["format"]), path)
            return
        if out:
            path = _expand(out, opts["start_stamp"])
            written = self._write(lambda p: self._save(profile, p, opts["format"]),
                                  path)
            if written and not opts["quiet"] and path != "-":
                _message(f"profile written to {path} ({profile.samples} samples)")
        elif not opts["quiet"]:
            text = profile.report(top=opts["top"])
            for c in self.comments:
                text += c + "\n"
            sys.stderr.write(text)
            sys.stderr.flush()


class _FlushFails:
    """Stands in for sys.stderr (or sys.stdout) once a profile could not be written
    at exit: everything passes through, but flush() fails after flushing, so the
    interpreter's finalization, which flushes both streams after the atexit
    callbacks, ends the process with status 120 (Py_FinalizeEx() < 0).  That is the
    one way left to make the loss visible in the exit status once the program has
    ended that neither cuts finalization short (os._exit would drop unflushed
    files) nor prints a traceback."""

    def __init__(self, stream):
        self._stream = stream

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def flush(self):
        self._stream.flush()
        raise OSError("shadowprof: the profile was not written (see above)")


def _exit_status_120() -> None:
    """Make the process exit with status 120 whatever the program's status (see
    _FlushFails).  sys.stdout is used when there is no sys.stderr."""
    if isinstance(sys.stderr, _FlushFails) or isinstance(sys.stdout, _FlushFails):
        return
    name = "stderr" if sys.stderr is not None else "stdout"
    setattr(sys, name, _FlushFails(getattr(sys, name)))


def _own_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__)) + os.sep


def _is_own(fn) -> bool:
    return fn.filename.startswith(_own_dir())


def _draw() -> float:
    """A uniform number in [0, 1) without importing random."""
    return int.from_bytes(os.urandom(7), "big") / float(1 << 56)


def run() -> None:
    """Start profiling as the flag or the variable asks (called by shadowprof.pth).
    Never raises: a problem is one line on stderr and the program runs unprofiled."""
    global session, _ran
    if _ran:
        return   # the .pth can be seen twice (a venv's lib and lib64 are one directory)
    _ran = True
    text, source = option_text()
    try:
        opts = resolve(text)
    except ValueError as e:
        _message(f"{e} (from {source}); the program runs unprofiled")
        return
    except Exception as e:   # e.g. the extension cannot be loaded
        _message(f"cannot start ({type(e).__name__}: {e}); the program runs unprofiled")
        return
    comments = []
    rate = opts["sample_rate"]
    if rate < 1.0:
        draw = _draw()
        if draw >= rate:
            return   # not in this canary slice: nothing else is imported or started
        comments.append(f"shadowprof.canary sample_rate={rate:g} draw={draw:.6f} "
                        f"selected=yes pid={os.getpid()}")
    try:
        session = Session(opts, comments)
        session.start()
    except Exception as e:
        session = None
        _message(f"cannot start ({type(e).__name__}: {e}); the program runs unprofiled")
