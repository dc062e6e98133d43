"""shadowprof: a low-overhead sampling-hybrid profiler for CPython.

A C hook keeps a per-thread shadow stack of the running Python functions and counts
every call exactly; a SIGPROF timer samples those stacks.  You get statistical time per
function and line plus exact call counts, at a sampler's cost.

    import shadowprof

    with shadowprof.Profiler(interval="10ms") as prof:
        work()
    print(prof.profile.report())

From the command line: ``python -m shadowprof script.py [args]``.
"""

from ._api import Profiler, profile
from .analysis import __version__
from .analysis.model import Function, Profile, Stack
from ._options import parse_interval

__all__ = ["Profiler", "profile", "Profile", "Function", "Stack", "parse_interval"]
