"""pstats: the marshalled dict that ``pstats.Stats(path)`` loads, so that
``python -m pstats``, snakeviz and gprof2dot open a shadowprof profile.

The dict is cProfile's: ``{(file, first line, name): (cc, nc, tt, ct, callers)}``
with ``callers = {(file, line, name): (nc, cc, tt, ct)}`` (note the order in
callers, as cProfile writes it).  Here:

- name is the code object's name (the last part of the qualified name), as cProfile
  keys functions; synthetic frames are ``("~", 0, name)``, the way pstats shows
  built-ins.  Functions that share a key are summed.
- nc (ncalls) and the callers' nc are the exact counts.  cc (primitive calls)
  leaves out direct recursion (calls from the function itself); calls that recurse
  through another function count as primitive (the core keeps caller -> callee
  counts, not whole call chains).
- tt (tottime) and ct (cumtime) are the sampled estimates in seconds: the time of
  the samples in which the function was the leaf, or anywhere on the stack (counted
  once per stack, so recursion is not counted twice).  A caller entry's tt and ct are
  the time of the samples in which that caller called the function directly.
  Caller -> callee pairs seen in samples but never called while profiling (frames
  already running when the profiler started) appear with 0 calls.
"""

from __future__ import annotations

import marshal

from .model import Profile

__all__ = ["write_pstats", "to_pstats"]


def _key(fn) -> tuple:
    if fn.synthetic:
        return ("~", 0, fn.name)
    return (fn.filename, fn.firstlineno, fn.name.rsplit(".", 1)[-1])


def to_pstats(profile: Profile) -> dict:
    """The stats dict of pstats.Stats for *profile*."""
    keys: dict = {}

    def key(fid: int) -> tuple:
        k = keys.get(fid)
        if k is None:
            fn = profile.functions.get(fid)
            k = keys[fid] = _key(fn) if fn is not None else ("~", 0, f"<id {fid}>")
        return k

    tt: dict = {}
    ct: dict = {}
    edge_tt: dict = {}
    edge_ct: dict = {}
    for s in profile.stacks:
        if not s.frames:
            continue
        w = s.weight_ns / 1e9
        fids = [fid for fid, _ in s.frames]
        leaf = fids[-1]
        tt[leaf] = tt.get(leaf, 0.0) + w
        for fid in set(fids):
            ct[fid] = ct.get(fid, 0.0) + w
        pairs = set(zip(fids, fids[1:]))
        for pair in pairs:
            edge_ct[pair] = edge_ct.get(pair, 0.0) + w
        if len(fids) > 1:
            pair = (fids[-2], leaf)
            edge_tt[pair] = edge_tt.get(pair, 0.0) + w

    calls = dict(profile.calls)
    edges = {pair: n for pair, n in profile.edges.items() if pair[0] != 0}
    for pair in edge_ct:
        edges.setdefault(pair, 0)

    stats: dict = {}
    for fid in set(calls) | set(tt) | set(ct):
        k = key(fid)
        nc = calls.get(fid, 0)
        cc = nc - profile.edges.get((fid, fid), 0)
        old = stats.get(k)
        entry = [cc, nc, tt.get(fid, 0.0), ct.get(fid, 0.0), {}]
        if old is not None:
            entry = [old[0] + cc, old[1] + nc, old[2] + entry[2], old[3] + entry[3],
                     old[4]]
        stats[k] = entry
    for (caller, callee), n in edges.items():
        k = key(callee)
        if k not in stats:
            stats[k] = [0, 0, 0.0, 0.0, {}]
        callers = stats[k][4]
        ck = key(caller)
        pair = (caller, callee)
        cc = 0 if caller == callee else n
        vals = (n, cc, edge_tt.get(pair, 0.0), edge_ct.get(pair, 0.0))
        old = callers.get(ck)
        if old is not None:
            vals = tuple(a + b for a, b in zip(old, vals))
        callers[ck] = vals
    return {k: tuple(v) for k, v in stats.items()}


def write_pstats(profile: Profile, f) -> None:
    """Write *profile* to the binary file *f* in pstats' marshal format."""
    f.write(marshal.dumps(to_pstats(profile)))
