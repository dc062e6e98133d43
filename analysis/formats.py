"""Output formats: which exist, how a file name chooses one, and atomic writing.

Each format is a function (profile, binary file) -> None that lives in a module of
its own (pprof.py, collapsed.py, speedscope.py, pstats_export.py); this module only
names them and maps file extensions to them.
"""

from __future__ import annotations

import importlib
import os
import stat

__all__ = ["FORMATS", "EXTENSIONS", "format_for", "write_profile", "write_bytes"]


def _write_text(profile, f) -> None:
    f.write(profile.report().encode("utf-8"))


def _write_json(profile, f) -> None:
    f.write(profile.to_json().encode("utf-8"))


def _lazy(module: str, function: str):
    """The writer *function* of the format module *module*, imported on first use (the
    command line names the formats before the program runs, and should not pay for
    importing them)."""
    def write(profile, f) -> None:
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


def write_profile(profile, path: str, fmt: str) -> None:
    """Write *profile* in format *fmt* to *path* ('-': stdout), atomically."""
    writer = FORMATS[fmt]
    _write_atomic(path, lambda f: writer(profile, f))


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


def _write_atomic(path: str, write) -> None:
    """Write to a temporary file in the same directory, then rename, so an
    interrupted write never leaves a truncated profile under *path*.  The file gets
    the mode open() would give it (mkstemp's temporary files are 0600)."""
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
    import tempfile   # here, not at import: keep the profiler's start-up light
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".shadowprof-", suffix=".tmp", dir=directory)
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
