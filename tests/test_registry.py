"""The code registry: code objects that die, and whose memory is reused by new code
objects, are never confused with them (ids are never reused, counts and names stay
with the right function, samples resolve to the right names and lines)."""

import collections
import gc
import re
import sys
import time

import shadowprof
from shadowprof import _core

from conftest import code_name

DYN_FILE = "<reg_dynamic>"


def _make_function(name, body_offset=0, spin=False):
    """A fresh code object: def NAME(x) at line body_offset + 1 of DYN_FILE."""
    if spin:
        src = ("\n" * body_offset +
               f"def {name}(seconds, clock):\n"
               f"    end = clock() + seconds\n"
               f"    n = 0\n"
               f"    while clock() < end:\n"
               f"        n += 1\n"
               f"    return n\n")
    else:
        src = "\n" * body_offset + f"def {name}(x):\n    return x + 1\n"
    ns = {}
    exec(compile(src, DYN_FILE, "exec"), ns)
    return ns[name]


def _by_name(prof, filename=DYN_FILE):
    out = collections.Counter()
    for fid, n in prof.calls.items():
        f = prof.functions[fid]
        if f.filename == filename and f.name != "<module>":
            out[f.name] += n
    return out


def test_dead_code_objects_never_confused():
    n_funcs = 2000
    addresses = collections.Counter()
    expected = {}
    seen_ids = set()
    id_of = {}
    p = shadowprof.Profiler(interval="1ms")
    p.start()
    try:
        for i in range(n_funcs):
            name = f"f_{i}"
            f = _make_function(name)
            addresses[id(f.__code__)] += 1
            k = i % 7 + 1
            for _ in range(k):
                f(i)
            expected[name] = k
            cid = _core.code_id(f.__code__)
            assert cid is not None
            assert cid not in seen_ids, (name, cid)   # a dead one's id is never reused
            seen_ids.add(cid)
            id_of[name] = cid
            del f
            if i % 50 == 0:
                gc.collect()
    finally:
        prof = p.stop()
    # The test only means something if memory really was reused.
    assert any(c > 1 for c in addresses.values()), "no code object address was reused"
    got = _by_name(prof)
    assert got == expected
    for name, cid in id_of.items():
        assert prof.calls[cid] == expected[name], name
        assert prof.functions[cid].name == name
        assert prof.functions[cid].filename == DYN_FILE
        assert prof.functions[cid].firstlineno == 1


def test_code_id_is_fresh_for_new_code_at_reused_address():
    """A code object never run under the hook has no id; once run it gets one that
    no other code object (dead or alive) ever had, even at a reused address."""
    p = shadowprof.Profiler(interval="10ms")
    p.start()
    try:
        by_address = {}
        reused = 0
        for i in range(500):
            f = _make_function(f"g_{i}")
            assert _core.code_id(f.__code__) is None     # not run yet
            f(1)
            cid = _core.code_id(f.__code__)
            assert cid is not None and cid >= _core.FIRST_CODE_ID
            addr = id(f.__code__)
            if addr in by_address:
                reused += 1
                assert cid != by_address[addr]
                assert cid > by_address[addr]
            by_address[addr] = cid
            del f
            gc.collect(0)
        ids_before = _core.memory()["code_ids"]
    finally:
        p.stop()
    assert reused > 0
    assert ids_before >= 500 + _core.FIRST_CODE_ID


def test_dynamic_lambdas_keep_their_counts():
    # eval'd lambdas: each its own code object, all named <lambda>; tell them apart
    # by first line (and by id).
    expected_by_line = {}
    expected_by_id = {}
    p = shadowprof.Profiler(interval="10ms")
    p.start()
    try:
        for i in range(300):
            fn = eval(compile("\n" * i + f"lambda x: x + {i}", DYN_FILE + "l", "eval"))
            k = i % 5 + 1
            for _ in range(k):
                assert fn(0) == i
            expected_by_line[i + 1] = k
            expected_by_id[_core.code_id(fn.__code__)] = k
            del fn
            if i % 30 == 0:
                gc.collect()
        # closures made by one factory share one code object: one entry
        factory = lambda k: (lambda x: x * k)  # noqa: E731
        for i in range(40):
            g = factory(i)
            g(1)
            g(2)
            del g
    finally:
        prof = p.stop()
    got_by_line = collections.Counter()
    for fid, n in prof.calls.items():
        f = prof.functions[fid]
        if f.filename == DYN_FILE + "l" and f.name != "<module>":  # not eval's code
            assert f.name == "<lambda>"
            got_by_line[f.firstlineno] += n
    assert got_by_line == expected_by_line
    for cid, k in expected_by_id.items():
        assert prof.calls[cid] == k
    # 3.11+ names the inner lambda by its qualified name; 3.9 and 3.10 only say
    # "<lambda>", as for the factory on the same line: the registry id tells them apart.
    inner_code = factory(0).__code__
    assert code_name(inner_code) == (
        "test_dynamic_lambdas_keep_their_counts.<locals>.<lambda>.<locals>.<lambda>"
        if sys.version_info >= (3, 11) else "<lambda>")
    inner = [fid for fid, f in prof.functions.items() if f.name == code_name(inner_code)
             and f.firstlineno == inner_code.co_firstlineno
             and fid == _core.code_id(inner_code)]
    assert len(inner) == 1
    assert prof.calls[inner[0]] == 80


def test_namedtuple_factories():
    """Every namedtuple class has its own eval'd __new__ code object (filename
    '<string>', name '<lambda>').  Each call is counted exactly; a dead one's entry is
    taken over by the next one of the same identity, so entries stay few."""
    expected = {}
    p = shadowprof.Profiler(interval="10ms")
    p.start()
    try:
        for i in range(200):
            fields = [f"a{j}" for j in range(i % 6 + 1)]
            cls = collections.namedtuple(f"NT{i}", fields)
            k = i % 4 + 1
            for j in range(k):
                t = cls(*range(len(fields)))
                assert t._asdict()[fields[-1]] == len(fields) - 1
                assert cls._make(range(len(fields))) == t
            cid = _core.code_id(cls.__new__.__code__)
            expected[cid] = expected.get(cid, 0) + k
            del cls, t
            if i % 20 == 0:
                gc.collect()
    finally:
        prof = p.stop()
    assert len(expected) < 100       # 200 classes, collected every 20
    for cid, k in expected.items():
        assert prof.calls[cid] == k
        assert prof.functions[cid].name == "<lambda>"
        assert prof.functions[cid].filename == "<string>"
    total_new = sum(n for fid, n in prof.calls.items()
                    if prof.functions[fid].filename == "<string>"
                    and prof.functions[fid].name == "<lambda>")
    assert total_new == sum(expected.values())
    # _asdict is one shared code object (defined in collections/__init__.py)
    asdict = [fid for fid, f in prof.functions.items()
              if f.name.endswith("_asdict") and f.filename == collections.__file__]
    assert len(asdict) == 1
    assert prof.calls[asdict[0]] == sum(expected.values())


def test_samples_of_short_lived_functions_resolve_correctly():
    """Many short-lived functions run long enough to be sampled, then die: each
    sample's name and line must belong together (h_I is defined at line 10*I+1, its
    body spans lines 10*I+1 .. 10*I+6)."""
    spin_each = 0.004
    deadline = time.process_time() + 0.6
    p = shadowprof.Profiler(interval="1ms")
    p.start()
    i = 0
    try:
        while time.process_time() < deadline:
            f = _make_function(f"h_{i}", body_offset=10 * i, spin=True)
            f(spin_each, time.process_time)
            del f
            i += 1
            if i % 20 == 0:
                gc.collect()
    finally:
        prof = p.stop()
    assert i > 20
    sampled = 0
    pat = re.compile(r"h_(\d+)$")
    for s in prof.stacks:
        for fid, line in s.frames:
            f = prof.functions[fid]
            if f.filename != DYN_FILE or f.name == "<module>":
                continue
            m = pat.match(f.name)
            assert m, f.name
            idx = int(m.group(1))
            assert f.firstlineno == 10 * idx + 1, (f.name, f.firstlineno)
            assert 10 * idx + 1 <= line <= 10 * idx + 6, (f.name, line)
            sampled += s.count
        if any(prof.functions[fid].filename == DYN_FILE
               and prof.functions[fid].name != "<module>" for fid, _ in s.frames):
            # the dynamic function is the leaf, called from this test (a sample in
            # the exec'd module that defines it has _make_function as its caller)
            assert prof.functions[s.frames[-1][0]].filename == DYN_FILE
            assert prof.functions[s.frames[-2][0]].name == (
                "test_samples_of_short_lived_functions_resolve_correctly")
    assert sampled >= 20, prof.stacks
    names = _by_name(prof)
    assert names == {f"h_{k}": 1 for k in range(i)}
    # most samples land in the loop (lines +4/+5), not on the def line
    lines = collections.Counter()
    for s in prof.stacks:
        fid, line = s.frames[-1] if s.frames else (None, None)
        f = prof.functions.get(fid)
        if f is not None and f.filename == DYN_FILE:
            lines[line - f.firstlineno] += s.count
    assert sum(lines[k] for k in (3, 4)) >= sum(lines.values()) // 2, lines
