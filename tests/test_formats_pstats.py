"""pstats output: pstats.Stats loads it, python -m pstats prints it, and its ncalls
and callers agree with cProfile's on a deterministic program (tests/data/cc_program.py,
the program of the call-count parity tests); tottime and cumtime are the sampled
estimates."""

import io
import json
import marshal
import os
import pstats
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "data"))
import fmt_common as fc  # noqa: E402

from shadowprof.analysis import formats  # noqa: E402
from shadowprof.analysis.pstats_export import to_pstats  # noqa: E402

PROGRAM = os.path.join(HERE, "data", "cc_program.py")
DRIVER = os.path.join(HERE, "data", "cc_driver.py")


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    """(cProfile's counts from cc_driver.py, our pstats file of the same program run
    by the command line)."""
    proc = subprocess.run([sys.executable, DRIVER, "cprofile", PROGRAM],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    expected = json.loads(proc.stdout)
    out = tmp_path_factory.mktemp("pstats") / "cc.pstats"
    code = (f"import runpy; runpy.run_path({PROGRAM!r}, "
            f"run_name='cc_program')['main']()")
    r = fc.run_cli("-q", "-i", "1ms", "-o", str(out), "-c", code)
    assert r.returncode == 0, r.stderr
    return expected, str(out)


def test_ncalls_and_callers_match_cprofile(parity):
    expected, path = parity
    stats = pstats.Stats(path).stats
    calls, edges = {}, {}
    for func, (cc, nc, tt, ct, callers) in stats.items():
        if func[0] != PROGRAM:
            continue
        calls[json.dumps(list(func))] = nc
        for caller, (enc, ecc, ett, ect) in callers.items():
            if caller[0] == PROGRAM and enc:
                edges[json.dumps([list(caller), list(func)])] = enc
    assert len(expected["calls"]) > 60
    assert calls == expected["calls"]
    assert edges == expected["edges"]


def test_python_m_pstats_and_print_methods(parity):
    _, path = parity
    st = pstats.Stats(path, stream=io.StringIO())
    st.sort_stats("cumulative").print_stats(10)
    st.print_callers("main")
    text = st.stream.getvalue()
    assert "function calls" in text and "cc_program.py" in text
    r = subprocess.run([sys.executable, "-m", "pstats", path],
                       input="sort tottime\nstats cc_program 5\nquit\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "ncalls" in r.stdout and "cc_program.py" in r.stdout


def test_times_and_primitive_calls(tmp_path):
    """tottime/cumtime are the sampled seconds; recursion shows as total/primitive
    calls (fact: 5/1); callers carry exact counts and the time per caller."""
    path = tmp_path / "w.json"
    fc.profile_workload(path)
    from shadowprof.analysis.model import Profile
    prof = Profile.load_json(path)
    out = tmp_path / "w.pstats"
    formats.write_profile(prof, str(out), "pstats")
    stats = pstats.Stats(str(out)).stats
    by_name = {k[2]: v for k, v in stats.items() if k[0] == fc.WORKLOAD}
    fstats = {fn.name: st for st in prof.function_stats().values()
              for fn in [st.function] if fn.filename == fc.WORKLOAD}
    for name, st in fstats.items():
        cc, nc, tt, ct, callers = by_name[name]
        assert nc == st.calls, name
        assert tt == pytest.approx(st.self_ns / 1e9, rel=1e-9, abs=1e-12), name
        assert ct == pytest.approx(st.total_ns / 1e9, rel=1e-9, abs=1e-12), name
    cc, nc, tt, ct, callers = by_name["fact"]
    assert (nc, cc) == (5, 1)
    fact_key = next(k for k in stats if k[2] == "fact")
    main_key = next(k for k in stats if k[2] == "main" and k[0] == fc.WORKLOAD)
    assert callers[fact_key][:2] == (4, 0)
    assert callers[main_key][:2] == (1, 1)
    helper_key = next(k for k in stats if k[2] == "helper")
    assert by_name["tiny"][4][helper_key][:2] == (70, 70)
    burn = by_name["burn"]
    assert sum(v[0] for v in burn[4].values()) == 4
    assert sum(v[3] for v in burn[4].values()) == pytest.approx(burn[3])
    total_tt = sum(v[2] for v in stats.values())
    assert total_tt == pytest.approx(prof.total_ns / 1e9)


def test_made_up_profile_keys_and_synthetic_frames(tmp_path):
    prof = fc.made_up_profile()
    stats = to_pstats(prof)
    marshal.loads(marshal.dumps(stats))    # marshal-able as pstats needs
    keys = set(stats)
    assert ("/src/app.py", 20, "parse;v2") in keys     # co_name: last part
    assert ("~", 0, "[shadowprof overhead]") in keys
    assert ("~", 0, "[lost samples]") in keys
    cc, nc, tt, ct, callers = stats[("/src/lib/util é.py", 5, "rec")]
    assert (nc, cc) == (9, 3)
    assert callers[("/src/lib/util é.py", 5, "rec")][:2] == (6, 0)
    assert callers[("/src/app.py", 10, "main")][:2] == (3, 3)
    assert ct == pytest.approx(7_300_000.4 / 1e9)
    only = stats[("/src/app.py", 40, "only_called")]
    assert only[:4] == (7, 7, 0.0, 0.0)
    path = tmp_path / "m.pstats"
    formats.write_profile(prof, str(path), "pstats")
    st = pstats.Stats(str(path))
    assert st.total_calls == sum(v[1] for v in stats.values())
    assert st.prim_calls == sum(v[0] for v in stats.values())
