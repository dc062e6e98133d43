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

__all__ = ["Profiler", "profile", "Profile", "Function", "Stack", "parse_interval"]

# The names are imported on first use (PEP 562): `python -X shadowprof` and
# `python -m shadowprof` import this package first, and start faster without the
# profile model and the API they may not need.
_WHERE = {"Profiler": "._api", "profile": "._api", "parse_interval": "._options",
          "Profile": ".analysis.model", "Function": ".analysis.model",
          "Stack": ".analysis.model", "__version__": ".analysis"}


def __getattr__(name):
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module
    value = getattr(import_module(where, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
