"""Where a function's file lives, independently of where the program was deployed.

A profile names each function's file by its absolute path, which changes with every
deployment (``/srv/releases/v1/app.py``, ``/srv/releases/v2/app.py``) and every
interpreter (``/root/.pyenv/versions/3.11.7/lib/python3.11/json/decoder.py``).  Python
itself knows a module by its path relative to the ``sys.path`` entry it was imported
from, the *import root*; that is what survives a deployment, and what ``diff`` and
``merge`` match functions by.

The import roots are recorded by the profiled process: ``Profile.roots`` is its
``sys.path`` (directories only, absolute) when the profile was taken, carried in
shadowprof JSON and in pprof comments.  A file's *module path* is its path relative to
the longest root that holds it.  Profiles without roots (foreign pprof files, older
files) fall back to the layout of a Python installation: after ``site-packages/`` or
``dist-packages/``, after ``lib/pythonX.Y/`` (the standard library); and for the
program's own files, relative to the deepest directory holding all of them.

Reports show library files by module path (``json/decoder.py``), the program's own
files relative to the working directory when they are under it.
"""

from __future__ import annotations

import os
import sys

__all__ = ["import_roots", "PathMapper", "library_module_path", "display_path",
           "is_machinery"]

# site-packages / dist-packages first: they live under lib/pythonX.Y/ too.
_LIBRARY_PATTERNS = (r"^.*?[/\\](?:site|dist)-packages[/\\](.+)$",
                     r"^.*?[/\\]lib(?:64)?[/\\]python\d+(?:\.\d+)?t?[/\\]"
                     r"(?:lib-dynload[/\\])?(.+)$")
_library = None   # the patterns compiled, at first use: the live writer imports this
                  # module (import_roots) in the profiled process, and re costs it 5 ms


def import_roots() -> list:
    """This process's import roots: the directories on ``sys.path`` as absolute,
    normalised paths, in ``sys.path`` order without repeats ("" is the working
    directory)."""
    out = []
    for entry in list(sys.path):
        if not isinstance(entry, str):
            continue
        path = os.path.normpath(os.path.abspath(entry or "."))
        if path not in out and os.path.isdir(path):
            out.append(path)
    return out


def library_module_path(filename: str) -> str | None:
    """The module path of a file of an installed library or of the standard library
    (``.../site-packages/requests/api.py`` -> ``requests/api.py``), else None."""
    global _library
    if _library is None:
        import re
        _library = tuple(map(re.compile, _LIBRARY_PATTERNS))
    for rx in _library:
        m = rx.match(filename)
        if m:
            return m.group(1).replace("\\", "/")
    return None


def _under(path: str, root: str) -> str | None:
    if root == os.sep:
        return path[1:] if path.startswith(os.sep) else None
    if path.startswith(root) and path[len(root):len(root) + 1] == os.sep:
        return path[len(root) + 1:]
    return None


class PathMapper:
    """Module paths of one profile's files.  ``how`` says in words how they were
    found (for the output of diff and merge)."""

    def __init__(self, profile) -> None:
        roots = [os.path.normpath(r) for r in getattr(profile, "roots", None) or ()]
        # Longest first: a file belongs to the most specific root that holds it.
        self.roots = sorted(set(roots), key=len, reverse=True)
        self.guessed = None
        self._cache: dict = {}
        if self.roots:
            self.how = "import roots recorded in the profile"
            return
        own = {os.path.dirname(fn.filename) for fn in profile.functions.values()
               if os.path.isabs(fn.filename)
               and library_module_path(fn.filename) is None}
        if own:
            common = os.path.commonpath(sorted(own))
            if common != os.sep:
                self.guessed = common
        self.how = ("no import roots recorded: library layout, and the program's files "
                    "relative to the directory holding them all"
                    + (f" ({self.guessed})" if self.guessed else ""))

    def module_path(self, filename: str) -> str:
        """*filename* relative to its import root; unchanged when no root holds it
        (names in angle brackets, files from outside every root)."""
        got = self._cache.get(filename)
        if got is not None:
            return got
        out = None
        if filename.startswith("<"):
            out = filename
        elif not os.path.isabs(filename):
            out = self._relative(filename)
        else:
            for root in self.roots:
                out = _under(filename, root)
                if out is not None:
                    break
            if out is None:
                out = library_module_path(filename)
            if out is None and self.guessed:
                out = _under(filename, self.guessed)
            if out is None:
                out = filename
        out = out.replace("\\", "/")
        self._cache[filename] = out
        return out


    def _relative(self, filename: str) -> str:
        """A file named relative to the profiled process's working directory (a
        script run as ``python -m shadowprof releases/v1/app.py``): its directory
        part names the end of the root it is in (``.../releases/v1``); a path that
        climbs (``../v1/app.py``) is read from each root in turn."""
        norm = os.path.normpath(filename)
        head = os.path.dirname(norm)
        if head and not head.startswith(os.pardir):
            for root in self.roots:
                if root == head or root.endswith(os.sep + head):
                    return norm[len(head) + 1:]
        elif head:
            # ../../srv/v1/app.py: the working directory was one of the roots (the
            # command line's is); take the reading that lands deepest in a root.
            best = None
            for cwd in self.roots:
                path = os.path.normpath(os.path.join(cwd, norm))
                for root in self.roots:
                    got = _under(path, root)
                    if got is not None:
                        if best is None or len(root) > best[0]:
                            best = (len(root), got)
                        break
            if best is not None:
                return best[1]
        return norm


def display_path(filename: str, roots=(), cwd: str | None = None) -> str:
    """How a report shows *filename*: a library file by its module path
    (``json/decoder.py``), another file relative to the working directory when it is
    at most one level above it, else relative to its import root in *roots*, else
    as it is."""
    if filename.startswith("<") or not os.path.isabs(filename):
        return filename
    lib = library_module_path(filename)
    if lib is not None:
        return lib
    try:
        rel = os.path.relpath(filename, cwd or os.getcwd())
    except (ValueError, OSError):
        rel = None
    if rel is not None and not rel.startswith(os.pardir + os.sep + os.pardir):
        return rel
    for root in sorted(roots, key=len, reverse=True):
        got = _under(filename, os.path.normpath(root))
        if got:
            return got
    return filename


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def is_machinery(fn, module_path: str | None = None) -> bool:
    """Whether *fn* (a model.Function) is the interpreter's or shadowprof's machinery
    rather than the program's code: the import system (frozen importlib, zipimport,
    setuptools' import hook), the ``threading`` bootstrap and its private helpers,
    and shadowprof itself.  *module_path*: the file's module path, if known."""
    filename = fn.filename
    if filename.startswith("<frozen "):
        return filename.startswith(("<frozen importlib", "<frozen zipimport"))
    if filename.startswith("<"):
        return filename == "<shadowprof>"
    path = module_path or library_module_path(filename) or filename
    if path.startswith(("importlib/_bootstrap", "zipimport.py", "_distutils_hack/")):
        return True
    if path.startswith("shadowprof/") or os.path.dirname(filename) == _PACKAGE_DIR:
        return True
    if path == "threading.py":
        last = fn.name.rsplit(".", 1)[-1]
        return (last.startswith("_") and not last.startswith("__")) \
            or fn.name in ("Thread.run", "run")
    return False
