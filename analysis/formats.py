"""Output formats: which exist, how a file name chooses one, and atomic writing.

Each format is a function (profile, binary file) -> None that lives in a module of
its own (pprof.py, collapsed.py, speedscope.py, pstats_export.py); this module only
names them and maps file extensions to them.  The text format is the report
(report.py); the options of report.render given to write_profile shape it, and the
other formats have no use for them.
"""

from __future__ import annotations

import importlib
import os
import stat
import time

__all__ = ["FORMATS", "EXTENSIONS", "format_for", "write_profile", "write_bytes",
           "check_destination", "write_or_fall_back"]


def _write_text(profile, f, **report_options) -> None:
    f.write(profile.report(**report_options).encode("utf-8"))


def _write_json(profile, f, **_report_options) -> None:
    f.write(profile.to_json().encode("utf-8"))


def _lazy(module: str, function: str):
    """The writer *function* of the format module *module*, imported on first use (the
    command line names the formats before the program runs, and should not pay for
    importing them)."""
    def write(profile, f, **_report_options) -> None:
        mod = importlib.import_module(f".{module}", __package__)
        getattr(mod, function)(profile, f)
    write.__name__ = function
    return write


FORMATS = {
    "text": _write_text,
    "json": _write_json,
    "pprof": _lazy("pprof", "write_pprof"),
    "collapsed": _lazy("collapsed", "write_collapsed"),
    "speedscope": _lazy("speedscope", "write_speedscope"),
    "pstats": _lazy("pstats_export", "write_pstats"),
}

# Checked in order: a longer suffix before any suffix of it (.speedscope.json before
# .json).
EXTENSIONS = [
    (".pb.gz", "pprof"),
    (".pprof", "pprof"),
    (".collapsed", "collapsed"),
    (".speedscope.json", "speedscope"),
    (".pstats", "pstats"),
    (".txt", "text"),
    (".json", "json"),
]


def format_for(path: str | None, fmt: str | None) -> str:
    """The format named by *fmt*, else by *path*'s extension, else text.  Raises
    ValueError naming the valid choices."""
    choices = ", ".join(FORMATS)
    if fmt:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}: choose one of {choices}")
        return fmt
    if path:
        for ext, name in EXTENSIONS:
            if path.endswith(ext):
                return name
        if path in ("-", os.devnull):
            return "text"
        exts = ", ".join(e for e, _ in EXTENSIONS)
        raise ValueError(
            f"cannot tell the format of {path!r} from its extension: use one of {exts}, "
            f"or pass -f with one of {choices}")
    return "text"


def path_for_pid(path: str, pid: int) -> str:
    """*path* with ``.PID`` before its format extension: prof.pb.gz -> prof.123.pb.gz."""
    for ext, _name in EXTENSIONS:
        if path.endswith(ext):
            return f"{path[:-len(ext)]}.{pid}{ext}"
    return f"{path}.{pid}"


def write_profile(profile, path: str, fmt: str, **report_options) -> None:
    """Write *profile* in format *fmt* to *path* ('-': stdout), atomically.
    report_options (top, machinery, ...: see report.render) shape the text format."""
    writer = FORMATS[fmt]
    _write_atomic(path, lambda f: writer(profile, f, **report_options))


def write_bytes(data: bytes, path: str) -> None:
    """Write already encoded *data* to *path* ('-': stdout), atomically."""
    _write_atomic(path, lambda f: f.write(data))


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it
    (/proc/self/status, 4.7+): setting it to read it would, for a moment, apply to
    files the program's other threads create."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _file_mode(path: str) -> int:
    """The mode a plain open(path, "w") would give: an existing file's own, else
    0o666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def check_destination(path: str) -> str | None:
    """Why a profile could not be written to *path* ('-': stdout), or None if it can:
    checked before a run, so that a bad -o costs nothing.  The directory is tried
    with a real file (access() says yes to root even where writes fail, as in /sys)."""
    if path in ("-", os.devnull):
        return None
    if os.path.isdir(path):
        ext = next((e for e, _ in EXTENSIONS if path.endswith(e)), ".json")
        return f"{path!r} is a directory: give a file name in it, such as " \
               f"{os.path.join(path, 'profile' + ext)!r}"
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return f"cannot write {path!r}: directory {directory!r} does not exist; " \
               "create it or choose another path"
    error = probe_directory(directory)
    if error is not None:
        return f"cannot write {path!r}: cannot create a file in {directory!r} " \
               f"({error.strerror}); choose another directory"
    return None


# Temporary files are made here rather than with tempfile: importing tempfile imports
# shutil, bz2 and threading, and a profiler thread (the dump's, the writer's) that is
# the first to import threading makes threading take it for the main thread (on 3.9
# the process then waits for it at exit).  It also keeps the start-up light.

def _temporary(directory: str) -> tuple:
    """A new file of our own in *directory*, mode 0600: (fd, path)."""
    for attempt in range(100):
        path = os.path.join(directory, f".shadowprof-{os.getpid()}-"
                                       f"{time.monotonic_ns()}-{attempt}.tmp")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {directory}")


def probe_directory(directory: str) -> "OSError | None":
    """Why no file can be created in *directory*, or None if one can: tried with a
    real file (access() says yes to root even where writes fail, as in /sys)."""
    try:
        fd, tmp = _temporary(directory)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        return e
    return None


def _temporary_directory() -> str:
    """Where a profile goes when its own destination fails: $TMPDIR, else /tmp."""
    for directory in (os.environ.get("TMPDIR"), "/tmp", "/var/tmp", os.getcwd()):
        if directory and os.path.isdir(directory) and probe_directory(directory) is None:
            return directory
    return os.getcwd()


def write_or_fall_back(write, path: str) -> tuple:
    """Call ``write(path)``; if that fails, ``write(fallback)`` with a fallback file in
    the temporary directory (shadowprof-PID-NAME).  Returns (where the profile went,
    or None if nowhere, the OSError of the first attempt, or None)."""
    try:
        write(path)
        return path, None
    except OSError as e:
        error = e
    name = "stdout.txt" if path == "-" else os.path.basename(os.path.normpath(path))
    fallback = os.path.join(_temporary_directory(), f"shadowprof-{os.getpid()}-{name}")
    try:
        write(fallback)
    except OSError:
        return None, error
    return fallback, error


def _write_atomic(path: str, write) -> None:
    """Write to a temporary file in the same directory, then rename, so an
    interrupted write never leaves a truncated profile under *path*.  The file gets
    the mode open() would give it (the temporary file is made 0600)."""
    if path == "-":
        import sys
        sys.stdout.flush()
        write(sys.stdout.buffer)
        sys.stdout.flush()
        return
    if path == os.devnull:
        with open(path, "wb") as f:
            write(f)
        return
    fd, tmp = _temporary(os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _file_mode(path))
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
