"""Command line: ``python -m shadowprof [options] (script.py | -m module | -c code) [args]``.

Also the ``shadowprof`` console script, whose first word may be a subcommand:
``shadowprof run ...`` (the same as above) or ``shadowprof report PROFILE.json``.
"""

import os
import sys
import types

from ._options import OPTIONS, parse_interval, parse_option

# Start-up: this module imports no more than it needs to run a program.  argparse is
# imported only for --help and for errors (the fast parser below hands anything it
# does not know to it); the output formats only with -o or -f; the profile model only
# when a profile is reported or written.

USAGE = ("python -m shadowprof [options] script.py [args ...]\n"
         "       python -m shadowprof [options] -m module [args ...]\n"
         "       python -m shadowprof [options] -c code [args ...]\n"
         "       shadowprof report PROFILE (.json, .pb.gz)\n"
         "       shadowprof merge|diff|flamegraph ... (see shadowprof CMD -h)")

DESCRIPTION = """\
Profile a Python program: sample its stacks on a timer (statistical time per function
and line) and count every Python call exactly.  At exit a report goes to stderr: top
functions by self and total time, with samples, estimated seconds and exact call counts,
then a call tree of the hottest paths."""

EPILOG = """\
output formats (-f, or from -o's extension): {formats}
  extensions: {extensions}

examples:
  python -m shadowprof app.py --port 8000
  python -m shadowprof -i 1ms -o prof.json -m mypackage.cli
  python -m shadowprof --mode wall -c "import time; time.sleep(1)"
"""

# The command line's options: the option table's rows with "c" (profiler/_options.py).
_CLI = [o for o in OPTIONS if "c" in o.where]
_BY_FLAG = {flag: o for o in _CLI for flag in o.flags}
# Options that take a value, for splitting our arguments from the program's.
_VALUE_OPTS = {flag for o in _CLI if o.kind != "bool" for flag in o.flags}


def _parser():
    import argparse
    from .analysis import formats
    p = argparse.ArgumentParser(
        prog="python -m shadowprof", usage=USAGE, description=DESCRIPTION,
        epilog=EPILOG.format(
            formats=", ".join(formats.FORMATS),
            extensions=", ".join(f"{e} ({n})" for e, n in formats.EXTENSIONS)),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    for o in _CLI:
        kw = {"dest": o.key, "help": o.help}
        if o.kind == "bool":   # a flag; one whose default is on turns it off
            kw["action"] = "store_false" if o.value else "store_true"
        else:
            kw.update(default=o.value, metavar=o.metavar)
            if o.default is not None:
                kw["help"] += f" (default {o.default})"
            if o.kind == "choice":
                kw["choices"] = o.choices
            elif o.kind == "uint":
                kw["type"] = int
        p.add_argument(*o.flags, **kw)
    p.add_argument("-m", dest="module", metavar="MODULE",
                   help="run library module MODULE as a script")
    p.add_argument("-c", dest="code", metavar="CODE", help="run the program CODE")
    return p


def _fast_parse(ours: list):
    """The options *ours* as argparse would parse them, for the common case (known
    flags, valid choices, whole numbers); None for anything else (--help, an
    abbreviation, a bad value), which argparse then parses and reports."""
    opts = types.SimpleNamespace(module=None, code=None,
                                 **{o.key: o.value for o in _CLI})
    i = 0
    while i < len(ours):
        flag, value = ours[i], None
        if flag.startswith("--") and "=" in flag:
            flag, value = flag.split("=", 1)
        if flag in ("-m", "-c") and value is None and i + 1 < len(ours):
            setattr(opts, "module" if flag == "-m" else "code", ours[i + 1])
            i += 2
            continue
        o = _BY_FLAG.get(flag)
        if o is None:
            return None
        if o.kind == "bool":
            if value is not None:
                return None
            setattr(opts, o.key, not o.value)
            i += 1
            continue
        if value is None:
            if i + 1 >= len(ours):
                return None
            value = ours[i + 1]
            i += 1
        i += 1
        if o.kind == "choice" and value not in o.choices:
            return None
        if o.kind == "uint":
            if not value.isdigit():
                return None
            value = int(value)
        setattr(opts, o.key, value)
    return opts


def _split(argv: list) -> tuple:
    """Split argv into (our options, target words, program arguments)."""
    ours = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-m", "-c"):
            return ours + argv[i:i + 2], argv[i + 1:i + 2], argv[i + 2:]
        if a == "--":
            return ours, argv[i + 1:i + 2], argv[i + 2:]
        if a.startswith("-") and a != "-":
            ours.append(a)
            if a in _VALUE_OPTS and i + 1 < len(argv):
                ours.append(argv[i + 1])
                i += 1
            i += 1
            continue
        return ours, [a], argv[i + 1:]
    return ours, [], []


def _error(msg: str) -> int:
    print(f"shadowprof: error: {msg}", file=sys.stderr)
    return 2


# The exit status of a run whose program succeeded but whose profile could not be
# written to -o: CPython's own status when it cannot finish cleanly at exit, also
# what -X shadowprof and SHADOWPROF give in that case (_startup.py).
WRITE_FAILED = 120


def _write(write, path: str) -> bool:
    """write(path); on failure, a fallback file in the temporary directory and one
    line on stderr saying where the profile went.  True if *path* was written."""
    from .analysis import formats
    where, error = formats.write_or_fall_back(write, path)
    if error is None:
        return True
    shown = "stdout" if path == "-" else repr(path)
    went = (f"written to {where} instead" if where
            else "the profile is lost (the temporary directory failed too)")
    print(f"shadowprof: error: cannot write the profile to {shown}: "
          f"{error.strerror or error}; {went}", file=sys.stderr)
    return False


def _failed_status(code):
    """The exit status once the profile was not written: the program's own if it
    failed, else WRITE_FAILED."""
    return code if code not in (None, 0) else WRITE_FAILED


def _is_our_file(filename: str) -> bool:
    import runpy
    here = os.path.dirname(os.path.abspath(__file__))
    return (filename.startswith(here + os.sep) or filename == runpy.__file__
            or filename.startswith("<frozen runpy"))


def _is_our_frame(fn) -> bool:
    return _is_our_file(fn.filename)


def _write_profile(profiler, profile, path: str, fmt: str, **report_options) -> None:
    """Write *profile* (*profiler*'s, with the command line's own frames stripped) to
    *path*; pprof straight from the core's tables in C (pprof_writer), which strips
    the same frames.  *profile* None: the profiler was stopped for the C writer alone
    (Profiler._stop_for_writer, which made sure that writer can take it)."""
    if fmt == "pprof":
        from . import _core, pprof_writer
        if profile is None:
            ours = [fid for fid, (_, filename, _) in _core.functions().items()
                    if _is_our_file(filename)]
        else:
            ours = [fid for fid, fn in profile.functions.items()
                    if fid > 0 and _is_our_frame(fn)]
        if pprof_writer.write_profiler(profiler, path, strip=ours):
            return
        if profile is None:
            raise RuntimeError("shadowprof: the pprof writer refused the profile "
                               "it was stopped for")
    from .analysis import formats
    formats.write_profile(profile, path, fmt, **report_options)


class _ForkedChildExit:
    """Writes the profile of a forked child that ends through multiprocessing, which
    leaves with os._exit (no atexit, no return through run()): a finalizer that
    multiprocessing runs at the child's exit writes FILE.PID.ext, as run() does for a
    child that returns."""

    current = None        # (profiler, output, fmt) of the CLI run in progress
    written_pid = None    # the process whose profile was written

    @classmethod
    def after_fork_in_child(cls) -> None:
        util = sys.modules.get("multiprocessing.util")
        if cls.current is None or util is None:
            return
        # multiprocessing clears its finalizers in the child, then runs the
        # after-fork callbacks: register the finalizer from one of those.
        util.register_after_fork(
            cls, lambda _: util.Finalize(None, cls.write, exitpriority=-100))

    @classmethod
    def write(cls) -> None:
        if cls.current is None or cls.written_pid == os.getpid():
            return
        cls.written_pid = os.getpid()
        from .analysis import formats
        from .analysis.model import strip_outer_frames
        profiler, output, fmt = cls.current
        try:
            profile = profiler.stop() if profiler.running else profiler.profile
        except RuntimeError as e:
            print(f"shadowprof: error: cannot stop profiling process {os.getpid()}: "
                  f"{e}", file=sys.stderr)
            return
        if profile is None:
            return
        profile = strip_outer_frames(profile, _is_our_frame)
        # multiprocessing leaves with os._exit: the exit status is not ours to set.
        _write(lambda p: _write_profile(profiler, profile, p, fmt),
               formats.path_for_pid(output, os.getpid()))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ForkedChildExit.after_fork_in_child)


def _profile_subprocesses(opts, interval_ns: int, fmt: str) -> None:
    """Make the Python programs this one starts profile themselves: SHADOWPROF (read at
    their start-up, see _startup.py) asks each for FILE.PID.ext, and a sitecustomize
    directory on PYTHONPATH starts it where shadowprof.pth is not installed (a source
    tree, Bazel).  The directory goes when this process exits."""
    import atexit
    import shutil
    import tempfile
    from .analysis import formats
    output = formats.path_for_pid(os.path.abspath(opts.output), "{pid}")
    child = [f"interval={interval_ns}ns", f"mode={opts.mode}", f"output={output}",
             f"format={fmt}", f"max_depth={opts.max_depth}", "quiet=1", "signal=off",
             f"fork={opts.fork}"]
    if getattr(opts, "native", False):
        child.append("native=1")
    os.environ["SHADOWPROF"] = ",".join(child)
    site_dir = tempfile.mkdtemp(prefix="shadowprof-site-")
    with open(os.path.join(site_dir, "sitecustomize.py"), "w") as f:
        f.write(_SITECUSTOMIZE)
    atexit.register(shutil.rmtree, site_dir, True)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [site_dir, package_root] + [
        p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)


# Started in child processes by --subprocesses: start shadowprof (once, even if
# shadowprof.pth also runs), then hand over to the program's own sitecustomize, if any.
_SITECUSTOMIZE = """\
import os, sys
try:
    import shadowprof._startup
    shadowprof._startup.run()
except Exception as e:
    sys.stderr.write(f"shadowprof: cannot profile this subprocess: {e}\\n")
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
_ours = sys.modules.pop("sitecustomize", None)
try:
    import sitecustomize
except ImportError:
    sys.modules["sitecustomize"] = _ours   # none of the program's: ours stays
"""


def run(argv: list) -> int:
    ours, target, prog_args = _split(argv)
    opts = _fast_parse(ours)
    if opts is None:
        opts = _parser().parse_args(ours)
    fmt = None
    try:
        interval = parse_interval(opts.interval)
        for key in ("max_depth", "top"):
            parse_option(key, getattr(opts, key))
        if opts.output or opts.format:
            from .analysis import formats
            if opts.output:
                fmt = formats.format_for(opts.output, opts.format)
    except ValueError as e:
        return _error(str(e))
    problem = formats.check_destination(opts.output) if opts.output else None
    if problem:
        return _error(f"-o: {problem}")
    if opts.subprocesses and (not opts.output or opts.output == "-"):
        return _error("--subprocesses needs -o FILE: each child process writes "
                      "FILE.PID.ext next to it")
    if opts.subprocesses and "," in os.path.abspath(opts.output):
        return _error(f"--subprocesses: the path {opts.output!r} has a comma, which the "
                      "children's option string cannot carry; choose another name")
    if opts.hook == "monitoring" and sys.version_info < (3, 12):
        return _error("--hook monitoring needs CPython 3.12 or later (this is "
                      f"{sys.version.split()[0]}); use --hook eval or auto")
    if opts.module is None and opts.code is None:
        if not target:
            _parser().print_usage(sys.stderr)
            return _error("no program given: pass a script, -m module or -c code")
        script = target[0]
        if not os.path.exists(script):
            return _error(f"can't open file {script!r}: no such file")

    from ._api import Profiler

    main_mod = types.ModuleType("__main__")
    saved_main = sys.modules.get("__main__")
    if opts.module is not None:
        sys.argv = [opts.module] + prog_args
        sys.path.insert(0, os.getcwd())
    elif opts.code is not None:
        sys.argv = ["-c"] + prog_args
        sys.path.insert(0, "")
        code = compile(opts.code, "<string>", "exec")
    else:
        sys.argv = [script] + prog_args
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        with open(script, "rb") as f:
            source = f.read()
        code = compile(source, script, "exec")
        main_mod.__file__ = script
    main_mod.__dict__.update(__builtins__=__builtins__, __package__=None,
                             __cached__=None, __loader__=None, __spec__=None)

    profiler = Profiler(interval=f"{interval}ns", mode=opts.mode,
                        max_depth=opts.max_depth, correct_overhead=opts.correct_overhead,
                        fork=opts.fork, native=opts.native or opts.native_internals,
                        native_internals=opts.native_internals, hook=opts.hook,
                        sigprof=opts.sigprof)
    profiler._requicken_at_stop = False   # it stops when the program ends
    if opts.subprocesses:
        _profile_subprocesses(opts, interval, fmt)
    exit_code = 0
    pending = None
    parent_pid = os.getpid()
    if opts.module is not None:
        import runpy   # (already imported under python -m)
    profiler.start()
    if opts.output and opts.output != "-" and opts.fork == "continue":
        _ForkedChildExit.current = (profiler, opts.output, fmt)
    try:
        if opts.module is not None:
            runpy.run_module(opts.module, run_name="__main__", alter_sys=True)
        else:
            sys.modules["__main__"] = main_mod
            exec(code, main_mod.__dict__)
    except SystemExit as e:
        exit_code = e.code
    except BaseException as e:  # reported after the profile, as Python would
        pending = e
    finally:
        # A quiet run builds no Profile: without -o it reports nothing, and a pprof
        # -o is written from the core's tables.
        if opts.quiet and fmt == "pprof" and profiler._stop_for_writer():
            profile = None
        else:
            profile = profiler.stop(profile=bool(opts.output or not opts.quiet))
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
    if profile is not None:
        from .analysis.model import strip_outer_frames
        profile = strip_outer_frames(profile, _is_our_frame)
    if os.getpid() != parent_pid:
        # A forked child that returned through here: its own profile (from the fork
        # on) goes next to the parent's, named with its pid; the report is the
        # parent's alone.
        if opts.output and opts.output != "-" and opts.fork == "continue":
            _ForkedChildExit.written_pid = os.getpid()
            path = formats.path_for_pid(opts.output, os.getpid())
            if not _write(lambda p: _write_profile(profiler, profile, p, fmt), path):
                exit_code = _failed_status(exit_code)
        if pending is not None:
            raise pending
        return exit_code
    text = None
    if not opts.quiet:
        text = profile.report(top=opts.top, machinery=opts.machinery)
    if opts.output:
        written = _write(lambda p: _write_profile(profiler, profile, p, fmt,
                                                  top=opts.top, machinery=opts.machinery),
                         opts.output)
        if not written:
            exit_code = _failed_status(exit_code)
    if not opts.quiet:
        try:
            sys.stderr.write(text)
        except (OSError, ValueError):
            pass   # stderr closed by the program: nothing left to tell
    if pending is not None:
        if isinstance(pending, KeyboardInterrupt):
            raise pending
        tb = pending.__traceback__
        while tb is not None and _is_our_frame(
                types.SimpleNamespace(filename=tb.tb_frame.f_code.co_filename)):
            tb = tb.tb_next
        sys.excepthook(type(pending), pending.with_traceback(tb), tb)
        return 1
    return exit_code


def main(argv: "list | None" = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("report", "merge", "diff", "flamegraph") \
            and not os.path.exists(argv[0]):
        from .analysis.commands import COMMANDS   # the subcommands that read profiles
        return COMMANDS[argv[0]](argv[1:])
    if argv and argv[0] == "run" and not os.path.exists("run"):
        argv = argv[1:]
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
