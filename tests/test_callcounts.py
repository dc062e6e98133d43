"""Exact call counts: parity with cProfile, seeding in the middle of a stack,
stop() really stopping, repeated and nested sessions.

The hook counts one call per frame entry, like cProfile counts one call per "call"
profile event: every generator/coroutine resumption counts, builtins do not.  cProfile
runs with builtins=False so that the caller of a Python function called from C code
(sorted's key=, map, property.__get__ ...) is, as for shadowprof, the Python frame
that called the builtin.
"""

import json
import subprocess
import sys
import time
import types

import pytest

import shadowprof
from shadowprof import _core

from conftest import DATA, DRIVER, HERE, PROGRAM, code_name, run_driver


def short(key):
    """'["/path/cc_program.py", 52, "count_up"]' -> 'count_up:52'."""
    k = json.loads(key)
    if isinstance(k[0], list):
        return f"{k[0][2]}:{k[0][1]} -> {k[1][2]}:{k[1][1]}"
    return f"{k[2]}:{k[1]}"


def diff(expected, got):
    out = []
    for k in sorted(set(expected) | set(got)):
        if expected.get(k) != got.get(k):
            out.append(f"  {short(k)}: cProfile {expected.get(k)}, "
                       f"shadowprof {got.get(k)}")
    return "\n".join(out)


@pytest.fixture(scope="module")
def parity_runs():
    return run_driver("cprofile"), run_driver("shadowprof")


def test_program_keys_are_unique():
    """Premise of the comparison: cProfile keys functions by (file, first line,
    co_name) and keeps only one of several code objects sharing a key."""
    with open(PROGRAM) as f:
        code = compile(f.read(), PROGRAM, "exec")
    seen = {}

    def walk(c):
        seen.setdefault((c.co_firstlineno, c.co_name), []).append(c)
        for k in c.co_consts:
            if isinstance(k, types.CodeType):
                walk(k)
    walk(code)
    assert [k for k, v in seen.items() if len(v) > 1] == []
    assert len(seen) > 60


def test_program_result_unchanged(parity_runs):
    cp, sp = parity_runs
    assert cp["result"] == sp["result"]


def test_calls_match_cprofile(parity_runs):
    cp, sp = parity_runs
    # Sanity: cProfile saw the program's constructs.
    assert len(cp["calls"]) > 60
    names = {json.loads(k)[2] for k in cp["calls"]}
    for n in ("fib", "count_up", "co_leaf", "<genexpr>", "<lambda>",
              "<module>", "Base", "Local", "wrapper", "prop", "make", "__await__"):
        assert n in names
    # 3.12 inlines list comprehensions into their function (PEP 709): no frame.
    assert ("<listcomp>" in names) == (sys.version_info < (3, 12))
    assert sp["calls"] == cp["calls"], (
        "exact call counts differ from cProfile's:\n" + diff(cp["calls"], sp["calls"]))


def test_edges_match_cprofile(parity_runs):
    cp, sp = parity_runs
    assert len(cp["edges"]) > 60
    assert sp["edges"] == cp["edges"], (
        "caller->callee counts differ from cProfile's:\n" + diff(cp["edges"], sp["edges"]))


GEN_SCRIPT = r'''
import asyncio, cProfile, json, pstats, sys
import shadowprof

def gen():
    yield 1
    yield 2

async def coro():
    return 1

def creator():
    list(gen())                 # created once, resumed 3 times
    c = coro()                  # created, resumed once
    try:
        c.send(None)
    except StopIteration:
        pass

def sp_counts():
    p = shadowprof.Profiler(interval="10ms")
    with p:
        creator()
    prof = p.profile
    out = {}
    for fid, n in prof.calls.items():
        f = prof.functions[fid]
        if f.filename == __file__:
            out[f.name] = n
    return out

def cp_counts():
    pr = cProfile.Profile(builtins=False)
    pr.enable()
    creator()
    pr.disable()
    return {k[2]: v[1] for k, v in pstats.Stats(pr).stats.items() if k[0] == __file__}

print(json.dumps({"sp": sp_counts(), "cp": cp_counts()}))
'''


def test_generator_creation_is_not_a_call(write_script):
    """Creating a generator or coroutine is not a call: cProfile counts only the
    frame's resumptions (3 for a generator yielding twice and run to the end).  On
    3.11+ the creating call does evaluate the new frame briefly (it runs up to
    RETURN_GENERATOR, before the RESUME that emits the 'call' event), so a PEP 523
    hook sees one extra frame evaluation per generator created; it must not count
    it (on 3.9/3.10 the frame is not evaluated at creation, so counting it would also
    make counts differ between Python versions)."""
    path = write_script(GEN_SCRIPT, "cc_gen.py")
    proc = subprocess.run([sys.executable, path], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["cp"] == {"creator": 1, "gen": 3, "coro": 1}
    assert res["sp"] == res["cp"]


# --------------------------------------------------------------------- seeding

SEED_SCRIPT = r'''
import json, sys, time
import shadowprof

PROF = shadowprof.Profiler(interval="1ms")

def spin(seconds):
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1
    return n

def after_start(x):
    return x + 1

def after_return(x):
    return x * 2

def burn_seeded():
    return spin(0.3)

def burn_after():
    return spin(0.3)

def level5():
    PROF.start()
    for i in range(3):
        after_start(i)
    burn_seeded()
    return "done"

def level4():
    return level5()

def level3():
    return level4()

def level2():
    return level3()

def level1():
    return level2()

def main():
    level1()
    # The seeded frames level1..level5 have returned without passing the hook.
    for i in range(4):
        after_return(i)
    burn_after()
    end = time.process_time() + 0.2     # samples in main itself, no call
    while time.process_time() < end:
        pass
    return PROF.stop()

prof = main()
names = {fid: f.name for fid, f in prof.functions.items()}
here = {fid for fid, f in prof.functions.items() if f.filename == __file__}
print(json.dumps({
    "calls": {names[f]: n for f, n in prof.calls.items() if f in here},
    "edges": [[names.get(a, "<root>"), names[b], n]
              for (a, b), n in prof.edges.items() if b in here],
    "stacks": [[[names[f] for f, _ in s.frames], s.count, s.thread_id]
               for s in prof.stacks],
    "lines": [[[names[f], line - prof.functions[f].firstlineno]
               for f, line in s.frames] for s in prof.stacks],
}))
'''


def test_seeded_start_deep_in_stack(write_script):
    path = write_script(SEED_SCRIPT, "cc_seed.py")
    proc = subprocess.run([sys.executable, path], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    # Frames entered before start() are not counted; everything after, exactly.
    assert res["calls"] == {"after_start": 3, "burn_seeded": 1, "spin": 2,
                            "after_return": 4, "burn_after": 1}
    edges = {(a, b): n for a, b, n in res["edges"]}
    assert edges == {("level5", "after_start"): 3, ("level5", "burn_seeded"): 1,
                     ("burn_seeded", "spin"): 1, ("main", "after_return"): 4,
                     ("main", "burn_after"): 1, ("burn_after", "spin"): 1}

    seeded = ["<module>", "main", "level1", "level2", "level3", "level4", "level5"]
    by_leaf = {}
    for frames, count, _tid in res["stacks"]:
        if not frames or frames[0].startswith("["):
            continue
        by_leaf.setdefault(frames[-1] if frames[-1] != "spin" else frames[-2], []
                           ).append((frames, count))
    # While the seeded frames run, samples show them (outer frames included).
    inside = by_leaf.get("burn_seeded", [])
    assert sum(c for _, c in inside) >= 5, res["stacks"]
    for frames, _ in inside:
        assert frames[:-1] in (seeded, seeded + ["burn_seeded"]), frames
    # After they returned, no sample contains them.
    after = by_leaf.get("burn_after", [])
    assert sum(c for _, c in after) >= 5, res["stacks"]
    for frames, _ in after:
        assert frames in (["<module>", "main", "burn_after"],
                          ["<module>", "main", "burn_after", "spin"]), frames
    in_main = by_leaf.get("main", [])
    assert sum(c for _, c in in_main) >= 3, res["stacks"]
    for frames, _ in in_main:
        assert frames == ["<module>", "main"], frames
    for frames, _, _ in res["stacks"]:
        if "level1" in frames:
            assert frames[:len(seeded)] == seeded, frames
    # Lines of the seeded (outer) frames are their call sites.
    call_line = {"main": 1, "level1": 1, "level2": 1, "level3": 1, "level4": 1,
                 "level5": 4, "burn_seeded": 1, "burn_after": 1}
    n = 0
    for lines in res["lines"]:
        names = [nm for nm, _ in lines]
        if names[:len(seeded)] == seeded and "burn_seeded" in names:
            for nm, rel in lines:
                if nm in call_line:
                    assert rel == call_line[nm], lines
            n += 1
    assert n > 0


# --------------------------------------------------------------------- stop

def _work(n):
    for i in range(n):
        _leaf(i)


def _leaf(i):
    return i


def _fid(prof, func):
    co = func.__code__
    ids = [fid for fid, f in prof.functions.items()
           if f.filename == co.co_filename and f.firstlineno == co.co_firstlineno
           and f.name == code_name(co)]
    assert len(ids) <= 1
    return ids[0] if ids else None


def test_stop_really_stops():
    import cProfile
    import pstats
    p = shadowprof.Profiler(interval="1ms")
    p.start()
    try:
        _work(10)
    finally:
        prof = p.stop()
    assert not _core.is_running()
    assert prof.calls[_fid(prof, _work)] == 1
    assert prof.calls[_fid(prof, _leaf)] == 10
    snap1 = _core.snapshot()

    cp = cProfile.Profile(builtins=False)
    cp.enable()
    try:
        _work(7)
        _work(5)
    finally:
        cp.disable()
    _work(3)
    snap2 = _core.snapshot()
    for k in ("calls", "edges", "stacks", "samples", "functions", "cpu_ns",
              "duration_ns"):
        assert snap2[k] == snap1[k], k
    assert snap2["running"] is False

    stats = pstats.Stats(cp).stats
    mine = {k[2]: v[1] for k, v in stats.items() if k[0] == __file__}
    assert mine == {"_work": 2, "_leaf": 12}
    assert sys.getprofile() is None


# --------------------------------------------------------------------- repeated

def _a(n):
    for _ in range(n):
        _b()


def _b():
    return 1


def _begin(p):
    p.start()          # returns into the caller: a seeded frame goes away


def _end(p):
    return p.stop()


def test_repeated_start_stop():
    for i in range(50):
        _a(3)                        # not profiled
        p = shadowprof.Profiler(interval="1ms", correct_overhead=(i % 2 == 0))
        if i % 3 == 0:
            _begin(p)
        else:
            p.start()
        try:
            for _ in range(i % 5 + 1):
                _a(i % 4)
        finally:
            prof = _end(p) if i % 3 == 1 else p.stop()
        _a(2)                        # not profiled
        a, b = _fid(prof, _a), _fid(prof, _b)
        assert prof.calls.get(a) == i % 5 + 1, i
        assert prof.calls.get(b, 0) == (i % 5 + 1) * (i % 4), i
        assert prof.edges.get((a, b), 0) == (i % 5 + 1) * (i % 4), i
        me = _fid(prof, test_repeated_start_stop)
        assert me is not None
        assert prof.edges.get((me, a)) == i % 5 + 1, i
        assert not _core.is_running()


def test_nested_profilers():
    outer = shadowprof.Profiler(interval="1ms")
    inner = shadowprof.Profiler(interval="1ms")
    outer.start()
    try:
        _a(1)
        _a(1)
        inner.start()
        try:
            assert _core.is_running()
            _b()
            _b()
            _b()
            _a(2)
        finally:
            pin = inner.stop()
        assert _core.is_running()        # the outer one still runs
        for _ in range(4):
            _a(3)
    finally:
        pout = outer.stop()
    assert not _core.is_running()
    a, b = _fid(pin, _a), _fid(pin, _b)
    assert pin.calls[a] == 1
    assert pin.calls[b] == 5
    assert {k: v for k, v in pin.calls.items() if k in (a, b)} == {a: 1, b: 5}
    assert pin.edges[(a, b)] == 2
    a, b = _fid(pout, _a), _fid(pout, _b)
    assert pout.calls[a] == 7
    assert pout.calls[b] == 1 + 1 + 3 + 2 + 12
    assert pout.edges[(a, b)] == 1 + 1 + 2 + 12
    assert sum(s.count for s in pin.stacks) <= sum(s.count for s in pout.stacks)


def test_nested_profilers_stopped_out_of_order():
    outer = shadowprof.Profiler(interval="1ms")
    inner = shadowprof.Profiler(interval="1ms")
    outer.start()
    try:
        _a(1)                      # outer only
        inner.start()
        try:
            _a(2)                  # both
            pout = outer.stop()
            assert _core.is_running()
            _a(3)                  # inner only
        finally:
            pin = inner.stop()
    finally:
        if outer.running:
            outer.stop()
    assert not _core.is_running()
    assert pout.calls[_fid(pout, _a)] == 2
    assert pout.calls[_fid(pout, _b)] == 3
    assert pin.calls[_fid(pin, _a)] == 2
    assert pin.calls[_fid(pin, _b)] == 5


# --------------------------------------------------------------------- depth

def _recurse(n):
    if n == 0:
        return _spin(0.15)
    return _recurse(n - 1) + 1


def _spin(seconds):
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1
    return n


def test_counts_exact_beyond_max_depth():
    """Frames deeper than max_depth are not stored on the shadow stack, but they are
    still counted exactly, and the stack is right again once they return."""
    p = shadowprof.Profiler(interval="1ms", max_depth=16)
    p.start()
    try:
        snap = p.snapshot()
        _recurse(60)
        mid = p.snapshot()
        _recurse(3)
        _spin(0.15)
    finally:
        prof = p.stop()
    r, s = _fid(prof, _recurse), _fid(prof, _spin)
    assert _fid(snap, _recurse) is None or _fid(snap, _recurse) not in snap.calls
    assert mid.calls[_fid(mid, _recurse)] == 61
    assert prof.calls[r] == 61 + 4
    assert prof.calls[s] == 3
    assert prof.edges[(r, r)] == 60 + 3
    assert prof.edges[(r, s)] == 2
    me = _fid(prof, test_counts_exact_beyond_max_depth)
    assert prof.edges[(me, s)] == 1
    names = {fid: f.name for fid, f in prof.functions.items()}
    shallow = deep = 0
    for st in prof.stacks:
        frames = [names[fid] for fid, _ in st.frames]
        if frames[-1:] == ["_spin"] and "_recurse" not in frames:
            # the last _spin, called from this test at shallow depth
            assert "[stack too deep]" not in frames
            assert frames[-2] == "test_counts_exact_beyond_max_depth", frames
            shallow += st.count
        if "[stack too deep]" in frames:
            deep += st.count
            assert len(frames) <= 16 + 2
    assert shallow >= 3
    assert deep >= 3


def _seeded_gen(p):
    p.start()
    yield 1            # the seeded generator frame suspends: it leaves the stack
    _b()
    yield 2
    _b()


def test_start_inside_generator():
    p = shadowprof.Profiler(interval="1ms")
    g = _seeded_gen(p)
    try:
        assert next(g) == 1        # starts the profiler inside g
        _b()
        assert next(g) == 2
        _b()
        assert next(g, "end") == "end"
    finally:
        if p.running:
            p.stop()
    prof = p.profile
    g_id, b, me = (_fid(prof, _seeded_gen), _fid(prof, _b),
                   _fid(prof, test_start_inside_generator))
    assert prof.calls[g_id] == 2           # two resumptions after start
    assert prof.calls[b] == 4
    assert prof.edges[(me, g_id)] == 2
    assert prof.edges[(g_id, b)] == 2
    assert prof.edges[(me, b)] == 2
