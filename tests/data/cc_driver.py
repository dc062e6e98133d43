"""Runs a program's main() under cProfile or shadowprof in this (fresh) process and
prints exact call and edge counts as JSON, keyed the way cProfile keys functions:
[filename, firstlineno, co_name].  Used by tests/test_callcounts.py and
tests/test_coexist.py.

usage: python cc_driver.py cprofile|shadowprof|both PROGRAM.py
  both: cProfile runs inside a shadowprof session; prints both results.
  both_cprofile_first: shadowprof runs inside a cProfile session.
"""

import asyncio  # noqa: F401  (imported here so that its import is not profiled)
import functools  # noqa: F401
import json
import sys


def key_of_code_name(filename, firstlineno, qualname):
    return [filename, firstlineno, qualname.rsplit(".", 1)[-1]]


def run_program(path):
    with open(path) as f:
        code = compile(f.read(), path, "exec")
    ns = {"__name__": "cc_program", "__file__": path}
    exec(code, ns)
    return ns["main"]()


def cprofile_counts(prof, only_file):
    import pstats
    stats = pstats.Stats(prof).stats
    calls, edges = {}, {}
    for func, (cc, nc, tt, ct, callers) in stats.items():
        if func[0] != only_file:
            continue
        k = json.dumps(list(func))
        calls[k] = calls.get(k, 0) + nc
        for caller, data in callers.items():
            if caller[0] != only_file:
                continue
            ek = json.dumps([list(caller), list(func)])
            edges[ek] = edges.get(ek, 0) + data[0]
    return calls, edges


def shadowprof_counts(profile, only_file):
    fkey = {}
    for fid, fn in profile.functions.items():
        if fn.filename == only_file:
            fkey[fid] = json.dumps(key_of_code_name(fn.filename, fn.firstlineno,
                                                    fn.name))
    calls, edges = {}, {}
    for fid, n in profile.calls.items():
        if fid in fkey:
            calls[fkey[fid]] = calls.get(fkey[fid], 0) + n
    for (a, b), n in profile.edges.items():
        if a in fkey and b in fkey:
            ek = json.dumps([json.loads(fkey[a]), json.loads(fkey[b])])
            edges[ek] = edges.get(ek, 0) + n
    return calls, edges


def main():
    mode, path = sys.argv[1], sys.argv[2]
    out = {}
    if mode == "cprofile":
        import cProfile
        prof = cProfile.Profile(builtins=False)
        prof.enable()
        try:
            result = run_program(path)
        finally:
            prof.disable()
        out["calls"], out["edges"] = cprofile_counts(prof, path)
    elif mode == "shadowprof":
        import shadowprof
        p = shadowprof.Profiler(interval="1ms")
        p.start()
        try:
            result = run_program(path)
        finally:
            profile = p.stop()
        out["calls"], out["edges"] = shadowprof_counts(profile, path)
    elif mode == "both":
        import cProfile
        import shadowprof
        p = shadowprof.Profiler(interval="1ms")
        p.start()
        try:
            prof = cProfile.Profile(builtins=False)
            prof.enable()
            try:
                result = run_program(path)
            finally:
                prof.disable()
        finally:
            profile = p.stop()
        out["calls"], out["edges"] = cprofile_counts(prof, path)
        out["sp_calls"], out["sp_edges"] = shadowprof_counts(profile, path)
    elif mode == "both_cprofile_first":
        import cProfile
        import shadowprof
        prof = cProfile.Profile(builtins=False)
        prof.enable()
        try:
            p = shadowprof.Profiler(interval="1ms")
            p.start()
            try:
                result = run_program(path)
            finally:
                profile = p.stop()
        finally:
            prof.disable()
        out["calls"], out["edges"] = cprofile_counts(prof, path)
        out["sp_calls"], out["sp_edges"] = shadowprof_counts(profile, path)
    else:
        raise SystemExit(f"bad mode {mode!r}")
    out["result"] = repr(result)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
