"""The C pprof writer (profiler/export.c, pprof_enc.c, deflate.c;
shadowprof.pprof_writer): the profile it writes from the core's tables is, byte for
byte, what pprof.encode() writes for the Profile built from snapshots of the same
data, with differences of marks (periods, nested profilers), the per-call overhead
correction, thread names, the command line's stripped frames and comments; each
deflater gzips exactly those bytes; go tool pprof and protoc read its files; errors
are one clear line.

Made-up stacks go into the core's table with _core._table_add (as the drain would
add them), so the data is exact and the tables can be large."""

import ctypes
import gzip
import os
import re
import subprocess
import sys
import threading

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
import fmt_common as fc  # noqa: E402

import shadowprof  # noqa: E402
from shadowprof import _core, continuous, pprof_writer  # noqa: E402
from shadowprof.analysis import pprof  # noqa: E402
from shadowprof.continuous import PeriodicWriter  # noqa: E402
from shadowprof.analysis.model import (  # noqa: E402
    Profile, strip_outer_frames, strip_own_frames, strip_pth_lines)

N_FUNCS = 12


def _made_up_functions():
    """N_FUNCS functions of a made-up module; fn3 calls fn2 calls fn1."""
    src = "".join(f"def fn{i}(x=0):\n    return fn{i - 1}() if x else {i}\n"
                  if i else "def fn0(x=0):\n    return 0\n" for i in range(N_FUNCS))
    ns = {}
    exec(compile(src, "/made/up/mod_é.py", "exec"), ns)
    return [ns[f"fn{i}"] for i in range(N_FUNCS)]


@pytest.fixture
def session():
    """A stopped session (interval 1 s: no real samples) whose registry knows the
    made-up functions, with exact calls and edges; yields their code ids."""
    fns = _made_up_functions()
    prof = shadowprof.Profiler(interval="1s", correct_overhead=False)
    prof.start()
    for i, f in enumerate(fns):
        for _ in range(i + 1):
            f(1)
    prof.stop()
    ids = [_core.code_id(f.__code__) for f in fns]
    assert all(ids)
    yield ids


MAIN = threading.get_native_id()


def _add(ids, seed, n, tids=(MAIN, 0, 424242)):
    """n made-up stacks (some repeated across calls with the same seed)."""
    import random
    rnd = random.Random(seed)
    for k in range(n):
        depth = rnd.randint(1, 6)
        frames = [(ids[rnd.randrange(N_FUNCS)], rnd.randint(1, 3)) for _ in range(depth)]
        _core._table_add(rnd.choice(tids), frames, rnd.randint(1, 3),
                         rnd.randint(1, 10**7))
    _core._table_add(MAIN, [], 1, 5)   # a stack with no frame at all


def _threads():
    return {MAIN: "MainThread"}


def _c_encode(base=None, end=None, per_call=0.0, cap=0.5, strip=None, strip_pth=False):
    info, mark, raw = _core.write_pprof(
        None, base, end, threads=_threads(), per_call_overhead_ns=per_call,
        per_call_overhead_cap=cap, strip=strip, comments=pprof_writer._comment_fn([]),
        compress=False, strip_pth=strip_pth)
    return raw


def _py_profile(snap, base=None, per_call=0.0, cap=0.5, err=0.0):
    return Profile.from_snapshot(snap, base, per_call_overhead_ns=per_call,
                                 per_call_overhead_cap=cap, per_call_overhead_err_ns=err)


def _samples_by_name(raw: bytes) -> dict:
    """{(frames as (name, file, line), labels): summed values}: what a reader sees,
    whatever the ids and the order of the tables."""
    pp = pprof.decode(raw)
    out: dict = {}
    for s in pp.samples:
        frames = tuple((pp.functions[f].name, pp.functions[f].filename, line)
                       for lid in s.location_ids for f, line in pp.locations[lid].lines)
        key = (frames, tuple(sorted(map(str, s.labels))))
        prev = out.get(key, [0] * len(s.values))
        out[key] = [a + b for a, b in zip(prev, s.values)]
    return out


def _same(c_raw: bytes, py_raw: bytes):
    """Equal bytes; on failure, the first field that differs."""
    if c_raw == py_raw:
        return
    a, b = pprof.decode(c_raw), pprof.decode(py_raw)
    for k in a.__dict__:
        assert getattr(a, k) == getattr(b, k), k
    assert c_raw == py_raw


def test_cumulative_profile_is_the_python_encoders_bytes(session):
    _add(session, 1, 300)
    mark, snap = _core.mark(True)
    prof = _py_profile(snap)
    assert len(prof.stacks) > 200 and prof.edges and prof.calls
    raw = _c_encode(end=mark)
    _same(raw, pprof.encode(prof))
    pp = pprof.decode(raw)
    threads = {s.label("thread") for s in pp.samples if s.label("thread")}
    assert {"MainThread", "thread-424242", "thread-0"} <= threads
    assert "/made/up/mod_é.py" in pp.string_table


def test_difference_of_marks_is_the_profile_of_two_snapshots(session):
    _add(session, 2, 200)
    m1, s1 = _core.mark(True)
    _add(session, 2, 200)    # the same stacks again ...
    _add(session, 3, 100)    # ... and new ones
    m2, s2 = _core.mark(True)
    prof = _py_profile(s2, s1)
    assert prof.stacks and not prof.calls   # no call between the marks
    _same(_c_encode(m1, m2), pprof.encode(prof))
    # Nothing happened between a mark and itself: no sample at all.
    assert not [s for s in pprof.decode(_c_encode(m2, m2)).samples]


def test_per_call_overhead_correction_moves_the_same_time(session):
    _add(session, 4, 300)
    mark, snap = _core.mark(True)
    for per_call, cap in ((50.0, 0.5), (3.3e5, 0.37), (1e9, 0.9)):
        prof = _py_profile(snap, per_call=per_call, cap=cap)
        assert prof.corrected_ns > 0
        _same(_c_encode(end=mark, per_call=per_call, cap=cap), pprof.encode(prof))


def test_stripped_outer_frames_match_the_models(session):
    _add(session, 5, 300)
    outer = set(session[:3])
    _core._table_add(MAIN, [(session[0], 1), (session[1], 2)], 2, 77)   # all outer
    mark, snap = _core.mark(True)
    prof = strip_outer_frames(_py_profile(snap, per_call=2e5, cap=0.5),
                              lambda fn: fn.id in outer)
    raw = _c_encode(end=mark, per_call=2e5, cap=0.5, strip=sorted(outer))
    _same(raw, pprof.encode(prof))
    names = {f.name for f in pprof.decode(raw).functions.values()}
    assert "[shadowprof overhead]" in names


# A venv whose lib64 is lib: site runs shadowprof.pth a second time after profiling
# began, as <module> of <string> called from site.addpackage.  `python -c` code is
# <module> of <string> too (one code id with it), called from no Python function.
SITE_SRC = """\
def addpackage(line):
    exec(compile(line, "<string>", "exec"), {})
"""


def test_pth_lines_are_left_out_as_the_models():
    ns = {}
    exec(compile(SITE_SRC, "/venv/lib/python3/site.py", "exec"), ns)
    fn3 = _made_up_functions()[3]
    for also_c in (False, True):
        prof = shadowprof.Profiler(interval="1s", correct_overhead=False)
        prof.start()
        ns["addpackage"]("import os")                   # the .pth line, again
        fn3(1)
        if also_c:
            exec(compile("import os", "<string>", "exec"), {})   # as python -c
        prof.stop()
        fids = {(name, filename): fid
                for fid, (name, filename, _) in _core.snapshot()["functions"].items()}
        site, pth = fids[("addpackage", "/venv/lib/python3/site.py")], fids[
            ("<module>", "<string>")]
        code3 = _core.code_id(fn3.__code__)
        _core._table_add(MAIN, [(site, 2), (pth, 1), (site, 2), (pth, 1), (code3, 2)],
                         3, 300)
        _core._table_add(MAIN, [(pth, 1)], 2, 200)   # nothing left: overhead
        _core._table_add(MAIN, [(code3, 1)], 1, 100)
        mark, snap = _core.mark(True)
        want = strip_pth_lines(_py_profile(snap))
        assert (pth in want.functions) == also_c
        raw = _c_encode(end=mark, strip_pth=True)
        _same(raw, pprof.encode(want))
        names = {(f.name, f.filename) for f in pprof.decode(raw).functions.values()}
        assert (("<module>", "<string>") in names) == also_c
        assert ("[shadowprof overhead]" in {n for n, _ in names}) != also_c
        # Without strip_pth, the frame is there.
        names = {(f.name, f.filename)
                 for f in pprof.decode(_c_encode(end=mark)).functions.values()}
        assert ("<module>", "<string>") in names


def test_live_session_with_threads_and_real_samples():
    """A real run: sampled stacks, named threads, the calibrated correction, the
    command line's strip; Profiler.save() writes the Profile's exact bytes although
    stop() runs the calibration (counted calls) after the profile ends."""
    def spin(n):
        s = 0
        for i in range(n):
            s += i * i
        return s

    def work():
        for _ in range(40):
            spin(20000)

    prof = shadowprof.Profiler(interval="1ms")
    with prof:
        t = threading.Thread(target=work, name="worker-ü")
        t.start()
        work()
        t.join()
    profile = prof.profile
    assert profile.stacks and profile.calls
    path = os.path.join(os.environ.get("TEST_TMPDIR", "/tmp"), f"sp-w-{os.getpid()}.pb.gz")
    try:
        prof.save(path)
        raw = gzip.decompress(open(path, "rb").read())
    finally:
        os.unlink(path)
    _same(raw, pprof.encode(profile))
    assert "worker-ü" in pprof.decode(raw).string_table
    # The live core now also holds the calibration's calls: "now" is another profile.
    assert _c_encode(per_call=prof._correction[0]) != raw


def test_nested_profiler_save(tmp_path):
    outer = shadowprof.Profiler(interval="1s", correct_overhead=False)
    with outer:
        fns = _made_up_functions()
        fns[5](1)
        inner = shadowprof.Profiler(interval="1s", correct_overhead=False)
        with inner:
            for f in fns:
                f(1)
        fns[7](1)
    inner.save(tmp_path / "inner.pb.gz")
    outer.save(tmp_path / "outer.pb.gz")
    for p, name in ((inner, "inner"), (outer, "outer")):
        raw = gzip.decompress((tmp_path / f"{name}.pb.gz").read_bytes())
        _same(raw, pprof.encode(p.profile))
    inner_calls = pprof.read_pprof(str(tmp_path / "inner.pb.gz")).calls
    assert sum(inner_calls.values()) >= N_FUNCS


def test_periodic_files_are_the_differences(session, tmp_path):
    """Continuous mode's files (PeriodicWriter -> pprof_writer.write_period) hold
    exactly each period's difference, with the period's comments."""
    w = PeriodicWriter(str(tmp_path), 3600, keep=0)
    snaps = [None]
    paths = []
    for seed in (6, 7, 6):
        _add(session, seed, 150)
        snaps.append(_core.snapshot())
        paths.append(w.write_period())
    per_call, cap, err = shadowprof._api.calibration()
    umask = os.umask(0o22)
    os.umask(umask)
    for path, base, snap in zip(paths, snaps, snaps[1:]):
        raw = gzip.decompress(open(path, "rb").read())
        notes = pprof.decode(raw).comments[2:]
        assert notes[0].startswith("shadowprof.period file=" + os.path.basename(path))
        # The writer leaves out shadowprof's own functions (its own calls are counted:
        # this test writes from a profiled thread), as strip_own_frames does.
        want = strip_own_frames(_py_profile(snap, base, per_call, cap, err),
                                continuous._is_own)
        assert _samples_by_name(raw) == _samples_by_name(pprof.encode(want, notes))
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask   # as open() makes it
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_marks_of_an_earlier_session_are_refused(session):
    old = _core.mark()
    p = shadowprof.Profiler(interval="1s", correct_overhead=False)
    p.start()
    p.stop()
    with pytest.raises(ValueError, match="earlier profiling session.*take a new mark"):
        _core.write_pprof(None, old)
    with pytest.raises(TypeError, match="must come from _core.mark"):
        _core.write_pprof(None, {"stacks": []})


def test_unwritable_path_is_an_oserror_naming_it(session, tmp_path):
    bad = tmp_path / "no-such-dir" / "p.pb.gz"
    with pytest.raises(OSError) as e:
        _core.write_pprof(str(bad))
    assert e.value.filename == str(bad)
    with pytest.raises(ValueError, match="gzip level 0: choose 1..9"):
        _core.write_pprof(None, level=0)


def _loadable(soname, symbol):
    try:
        return hasattr(ctypes.CDLL(soname), symbol)
    except OSError:
        return False


# What this machine has, found here rather than asked of the writer: ISA-L's igzip
# needs its header at build time (libisal-dev) and libisal.so.2 at run time.
HAVE = {
    "isal": (os.path.exists("/usr/include/isa-l/igzip_lib.h")
             and _loadable("libisal.so.2", "isal_deflate")),
    "libdeflate": _loadable("libdeflate.so.0", "libdeflate_gzip_compress"),
    "zlib": True,
}


def _fastest(level=1):
    """The deflater the writer should pick at *level* on this machine."""
    if level == 1 and HAVE["isal"]:
        return "isal"
    return "libdeflate" if HAVE["libdeflate"] else "zlib"


def test_each_deflater_writes_the_encoded_bytes(session, tmp_path):
    """Every deflater the machine has writes a gzip file (mtime 0, gzip -t clean) of
    exactly the bytes written uncompressed; the writer picks ISA-L at level 1 when
    libisal is there, libdeflate or zlib above; a deflater not there, or unknown, is
    refused."""
    _add(session, 5, 2000)
    end = _core.mark()
    raw = _c_encode(end=end)
    assert len(raw) > 50_000
    for level in (1, 6):
        path = tmp_path / f"any{level}.pb.gz"
        info, _, _ = _core.write_pprof(str(path), None, end, threads=_threads(),
                                       comments=pprof_writer._comment_fn([]), level=level)
        assert info["deflater"] == _fastest(level)
        assert gzip.decompress(path.read_bytes()) == raw
    for name, have in HAVE.items():
        path = tmp_path / f"{name}.pb.gz"
        if not have:
            with pytest.raises(ValueError, match=f"deflater {name} is not on this system"):
                _core.write_pprof(str(path), None, end, deflater=name)
            continue
        info, _, _ = _core.write_pprof(str(path), None, end, threads=_threads(),
                                       comments=pprof_writer._comment_fn([]), deflater=name)
        data = path.read_bytes()
        assert info["deflater"] == name and info["file_bytes"] == len(data)
        assert data[:4] == b"\x1f\x8b\x08\x00" and data[4:8] == bytes(4)   # mtime 0
        assert gzip.decompress(data) == raw and info["raw_bytes"] == len(raw)
        assert len(data) < len(raw) / 2
        subprocess.run(["gzip", "-t", str(path)], check=True)
    info, _, _ = _core.write_pprof(None, None, end, compress=False)
    assert info["deflater"] == "none"
    with pytest.raises(ValueError, match="unknown deflater 'lz4': choose isal"):
        _core.write_pprof(None, None, end, deflater="lz4")


@pytest.fixture
def big_file(session, tmp_path):
    _add(session, 8, 3000)
    path = tmp_path / "big.pb.gz"
    info, _, _ = _core.write_pprof(str(path), threads=_threads(),
                                   comments=pprof_writer._comment_fn(["note"]))
    assert info["deflater"] == _fastest()   # what go tool pprof and protoc read below
    return path, _py_profile(_core.snapshot())


def test_go_tool_pprof_reads_the_c_writers_file(big_file, tmp_path):
    path, prof = big_file
    go = fc.tool("go")
    r = subprocess.run([go, "tool", "pprof", "-raw", str(path)], capture_output=True,
                       text=True, timeout=120, env=fc.go_env(tmp_path))
    assert r.returncode == 0, r.stderr
    values = [tuple(int(v) for v in m.group(1).split())
              for m in re.finditer(r"^\s+([\d ]+):", r.stdout.split("Locations")[0], re.M)]
    # go tool pprof merges samples of identical stacks and labels and drops those
    # without a location: compare totals
    stacks = [s for s in prof.stacks if s.frames]
    assert sum(v[0] for v in values) == sum(s.count for s in stacks)
    assert sum(v[1] for v in values) == sum(s.weight_ns for s in stacks)
    assert sum(v[2] for v in values) == sum(prof.calls.values())


def test_protoc_decodes_the_c_writers_file(big_file):
    path, prof = big_file
    protoc = fc.tool("protoc")
    r = subprocess.run([protoc, "--decode=perftools.profiles.Profile",
                        "-I", os.path.dirname(fc.PROTO), fc.PROTO],
                       input=gzip.decompress(path.read_bytes()), capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    text = r.stdout.decode()
    assert text.count("sample {") == len(prof.stacks) + len(prof.edges)
    assert 'comment: ' in text and '"note"' in text
    assert not re.search(r"^\s*\d+: ", text, re.M)   # no field protoc did not know
