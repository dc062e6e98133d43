"""The mechanism that keeps the shadow stacks, per CPython version: the PEP 523 hook
("eval") on 3.9-3.11, sys.monitoring ("monitoring") by default on 3.12+, and the
hook= option that forces one.  On 3.12+: shadowprof's own tool id, other monitoring
users (debuggers, coverage, cProfile) undisturbed, deep recursion unchanged."""

import json
import subprocess
import sys
import textwrap

import pytest

import shadowprof
from shadowprof import _core

from conftest import DATA, PROGRAM, run_driver, run_shadowprof

MONITORING = sys.version_info >= (3, 12)
needs_monitoring = pytest.mark.skipif(not MONITORING,
                                      reason="sys.monitoring exists from CPython 3.12")
DEFAULT_HOOK = "monitoring" if MONITORING else "eval"


def run_py(code, timeout=120):
    """Run *code* in a fresh interpreter; return the CompletedProcess."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------ selection

def _leaf(x):
    return x + 1


def _work(n):
    return sum(_leaf(i) for i in range(n))


def test_default_hook_per_version():
    with shadowprof.Profiler(interval="10ms", correct_overhead=False) as p:
        _work(10)
    assert _core.snapshot()["hook"] == DEFAULT_HOOK
    assert p.profile.calls[_core.code_id(_leaf.__code__)] == 10


@pytest.mark.parametrize("hook", ["eval", "monitoring"])
def test_forced_hook_counts_exactly(hook):
    if hook == "monitoring" and not MONITORING:
        with pytest.raises(ValueError, match="needs CPython 3.12") as e:
            shadowprof.Profiler(hook=hook)
        assert "\n" not in str(e.value) and "hook 'eval'" in str(e.value)
        with pytest.raises(ValueError, match="needs CPython 3.12"):
            _core.start(hook=hook)
        assert not _core.is_running()
        return
    with shadowprof.Profiler(interval="10ms", hook=hook, correct_overhead=False) as p:
        _work(25)
    assert _core.snapshot()["hook"] == hook
    leaf, work = _core.code_id(_leaf.__code__), _core.code_id(_work.__code__)
    assert p.profile.calls[leaf] == 25
    assert p.profile.calls[work] == 1
    # the generator expression between them, resumed 26 times, calls _leaf 25 times
    gen = [a for (a, b), n in p.profile.edges.items() if b == leaf]
    assert len(gen) == 1 and p.profile.functions[gen[0]].name.endswith("<genexpr>")


def test_bad_hook_names_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="bad option hook=fast: choose auto, eval or monitoring"):
        shadowprof.Profiler(hook="fast")
    with pytest.raises(ValueError, match="hook must be 'auto', 'eval' or 'monitoring'"):
        _core.start(hook="fast")
    assert not _core.is_running()
    script = tmp_path / "p.py"
    script.write_text("print('ran')\n")
    r = run_shadowprof("--hook", "fast", str(script))
    assert r.returncode != 0 and "ran" not in r.stdout
    r = run_shadowprof("-q", "--hook", "monitoring", str(script))
    if MONITORING:
        assert r.returncode == 0 and r.stdout == "ran\n", r.stderr
    else:
        assert r.returncode == 2 and "ran" not in r.stdout
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "--hook monitoring needs CPython 3.12" in lines[0]


# ------------------------------------------------------------------ deep recursion

DEEP = r'''
import json, sys
sys.setrecursionlimit(int(sys.argv[2]))
deepest = 0
def down(n):
    global deepest
    deepest = max(deepest, n)
    return 0 if n == DEPTH else 1 + down(n + 1)
DEPTH = 10_000
hook = sys.argv[1]
if hook != "none":
    import shadowprof
    p = shadowprof.Profiler(interval="1ms", hook=hook, correct_overhead=False).start()
try:
    outcome = ["ok", down(0)]
except RecursionError:
    outcome = ["RecursionError", deepest]
if hook != "none":
    prof = p.stop()
    calls = [n for fid, n in prof.calls.items() if prof.functions[fid].name == "down"]
    outcome.append(calls)
print(json.dumps(outcome))
'''


@pytest.mark.parametrize("limit", [12_000, 5_000])
def test_deep_recursion_behaves_as_without_the_profiler(tmp_path, limit):
    """10,000 deep with the limit raised succeeds exactly when it succeeds without us
    (on 3.12+ a frame-evaluation hook would turn off CPython's inlined calls and hit
    the C recursion limit near 1,500 frames; sys.monitoring does not), and a limit
    below the depth fails at the same depth."""
    script = tmp_path / "deep.py"
    script.write_text(DEEP)

    def run(hook):
        r = subprocess.run([sys.executable, str(script), hook, str(limit)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    bare = run("none")
    assert bare[0] == ("ok" if limit > 10_000 else "RecursionError")
    prof = run("auto")
    assert prof[:2] == bare
    # Every frame counted, none lost.  The PEP 523 hook also counts the one call that
    # CPython's recursion check then refuses (the hook sees the frame first);
    # sys.monitoring reports only frames that start, as cProfile counts.
    refused = 1 if bare[0] == "RecursionError" and not MONITORING else 0
    assert prof[2] == [bare[1] + 1 + refused]
    if MONITORING and bare[0] == "ok":
        # the PEP 523 hook, forced, is what would change behaviour on 3.12+: every
        # call then recurses in C, and the C recursion limit stops it much earlier
        ev = run("eval")
        assert ev[0] == "RecursionError" and ev[1] < bare[1] // 2


# ------------------------------------------------------------------ parity per hook

PARITY = r'''
import json, sys
sys.path.insert(0, sys.argv[3])
import cc_driver, shadowprof
p = shadowprof.Profiler(interval="1ms", hook=sys.argv[1]).start()
try:
    result = cc_driver.run_program(sys.argv[2])
finally:
    profile = p.stop()
calls, edges = cc_driver.shadowprof_counts(profile, sys.argv[2])
print(json.dumps({"calls": calls, "edges": edges, "result": repr(result)}))
'''


@needs_monitoring
def test_both_hooks_match_cprofile_on_312_and_later(tmp_path):
    """Both mechanisms count what cProfile counts, except where CPython itself skips
    the PEP 523 hook: 3.13 calls a class's __init__ through a specialised shim frame
    that never goes through the frame-evaluation function."""
    script = tmp_path / "parity.py"
    script.write_text(PARITY)
    cp = run_driver("cprofile")

    def run(hook):
        r = subprocess.run([sys.executable, str(script), hook, PROGRAM, DATA],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    mon = run("monitoring")
    assert mon["result"] == cp["result"]
    assert mon["calls"] == cp["calls"]
    assert mon["edges"] == cp["edges"]
    ev = run("eval")
    assert ev["result"] == cp["result"]
    if sys.version_info[:2] == (3, 12):
        assert ev["calls"] == cp["calls"]
        assert ev["edges"] == cp["edges"]
    else:
        differ = {k for k in set(cp["calls"]) | set(ev["calls"])
                  if cp["calls"].get(k) != ev["calls"].get(k)}
        assert differ and all(json.loads(k)[2] == "__init__" for k in differ), differ
        assert all(ev["calls"].get(k, 0) < cp["calls"][k] for k in differ)


# ------------------------------------------------------------------ coexistence

@needs_monitoring
def test_own_tool_id_taken_and_released():
    mon = sys.monitoring
    assert mon.get_tool(3) is None and mon.get_tool(4) is None
    p = shadowprof.Profiler(interval="10ms", hook="monitoring").start()
    try:
        assert mon.get_tool(3) == "shadowprof"
        assert mon.get_tool(mon.PROFILER_ID) is None   # cProfile's id stays free
        events = mon.get_events(3)
        E = mon.events
        # one event per frame entry: returns, yields and unwinds are found lazily
        assert events == E.PY_START | E.PY_RESUME | E.PY_THROW
    finally:
        p.stop()
    assert mon.get_tool(3) is None and mon.get_events(3) == 0
    # a second id when the first is taken; a clear error when both are
    mon.use_tool_id(3, "someone")
    try:
        with shadowprof.Profiler(interval="10ms", hook="monitoring"):
            assert mon.get_tool(4) == "shadowprof"
        assert mon.get_tool(4) is None
        mon.use_tool_id(4, "another")
        try:
            with pytest.raises(RuntimeError, match="tool ids 3 and 4 are both taken") as e:
                shadowprof.Profiler(interval="10ms", hook="monitoring").start()
            assert "'someone'" in str(e.value) and "hook='eval'" in str(e.value)
            assert not _core.is_running()
            assert mon.get_tool(3) == "someone" and mon.get_tool(4) == "another"
        finally:
            mon.free_tool_id(4)
    finally:
        mon.free_tool_id(3)


@needs_monitoring
def test_callbacks_called_directly_change_nothing():
    """The callbacks (objects of shadowprof's own vectorcall type) return None and
    record nothing when called other than by CPython for the frame that starts: no
    arguments, keywords, another code object."""
    mon = sys.monitoring
    E = mon.events
    with shadowprof.Profiler(interval="10ms", hook="monitoring",
                             correct_overhead=False) as p:
        tool = 3 if mon.get_tool(3) == "shadowprof" else 4
        cb = mon.register_callback(tool, E.PY_START, None)   # borrow it back
        mon.register_callback(tool, E.PY_START, cb)
        assert callable(cb) and type(cb).__name__ == "_monitor_callback"
        assert cb() is None
        assert cb(x=1) is None
        assert cb(_leaf.__code__, 0) is None
        assert cb(_leaf.__code__, 0, code=1) is None
        _work(5)
    calls = p.profile.calls
    assert calls[_core.code_id(_leaf.__code__)] == 5
    assert calls[_core.code_id(_work.__code__)] == 1


def _traced(n):
    total = 0
    for i in range(n):
        total += _leaf(i)
    try:
        _leaf(None)
    except TypeError:
        total += 1
    return total


def _record_other_tools():
    """Events seen by a debugger-like tool (id 0: LINE) and a coverage-like tool
    (id 1: PY_START, LINE with DISABLE after the first hit) while _traced runs."""
    mon = sys.monitoring
    E = mon.events
    seen = []
    mine = (_traced.__code__, _leaf.__code__)

    def line0(code, line):
        if code in mine:
            seen.append(("dbg", code.co_name, line))

    def start1(code, offset):
        if code in mine:
            seen.append(("cov-start", code.co_name))

    def line1(code, line):
        if code in mine:
            seen.append(("cov", code.co_name, line))
        return mon.DISABLE

    mon.use_tool_id(0, "test-debugger")
    mon.use_tool_id(1, "test-coverage")
    try:
        mon.register_callback(0, E.LINE, line0)
        mon.register_callback(1, E.PY_START, start1)
        mon.register_callback(1, E.LINE, line1)
        mon.set_events(0, E.LINE)
        mon.set_events(1, E.PY_START | E.LINE)
        result = _traced(4)
        result += _traced(3)
    finally:
        for tool in (0, 1):
            mon.set_events(tool, 0)
        mon.register_callback(0, E.LINE, None)
        mon.register_callback(1, E.PY_START, None)
        mon.register_callback(1, E.LINE, None)
        mon.free_tool_id(0)
        mon.free_tool_id(1)
        mon.restart_events()
    return seen, result


@needs_monitoring
def test_other_monitoring_tools_keep_their_events():
    alone = _record_other_tools()
    assert alone[0] and alone[1] == (10 + 1) + (6 + 1)
    with shadowprof.Profiler(interval="1ms", hook="monitoring") as p:
        together = _record_other_tools()
    assert together == alone
    # and shadowprof counted every call, the tools' callbacks changing nothing
    assert p.profile.calls[_core.code_id(_traced.__code__)] == 2
    assert p.profile.calls[_core.code_id(_leaf.__code__)] == 4 + 3 + 2
    # a tool that starts while shadowprof runs and stops before it
    with shadowprof.Profiler(interval="1ms", hook="monitoring") as p:
        _traced(2)
        inner = _record_other_tools()
        _traced(2)
    assert inner == alone
    assert p.profile.calls[_core.code_id(_leaf.__code__)] == (2 + 1) * 2 + 4 + 3 + 2


@needs_monitoring
def test_cprofile_alongside_monitoring():
    import cProfile
    import pstats
    cp = cProfile.Profile(builtins=False)
    cp.enable()
    try:
        with shadowprof.Profiler(interval="1ms", hook="monitoring") as p:
            _work(30)
        _work(5)   # cProfile still sees calls after shadowprof stopped
    finally:
        cp.disable()
    stats = pstats.Stats(cp).stats
    ncalls = {k[2]: v[1] for k, v in stats.items() if k[0] == __file__}
    assert ncalls["_leaf"] == 35 and ncalls["_work"] == 2
    assert p.profile.calls[_core.code_id(_leaf.__code__)] == 30
    assert sys.monitoring.get_tool(sys.monitoring.PROFILER_ID) is None   # cProfile off


@needs_monitoring
def test_fork_stop_releases_the_tool_id_in_the_child():
    r = run_py('''
        import os, sys, shadowprof
        p = shadowprof.Profiler(interval="10ms", hook="monitoring", fork="stop").start()
        pid = os.fork()
        if pid == 0:
            os._exit(0 if sys.monitoring.get_tool(3) is None else 3)
        _, status = os.waitpid(pid, 0)
        assert sys.monitoring.get_tool(3) == "shadowprof"
        p.stop()
        print(os.waitstatus_to_exitcode(status), sys.monitoring.get_tool(3))
    ''')
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "None"]


# ------------------------------------------------------------------ thread states

C_THREAD = r'''
#include <pthread.h>
typedef void (*cb_t)(int);
static void *run(void *arg) { cb_t cb = (cb_t)arg; for (int i = 0; i < 3; i++) cb(i); return 0; }
int run_in_thread(cb_t cb)
{
    pthread_t t;
    if (pthread_create(&t, 0, run, (void *)cb))
        return -1;
    return pthread_join(t, 0);
}
'''

C_THREAD_PROG = r'''
import ctypes, json, sys, threading
import shadowprof
lib = ctypes.CDLL(sys.argv[2])
CB = ctypes.CFUNCTYPE(None, ctypes.c_int)
threads = set()
def leaf(i):
    return i * 2
def work(n):
    return sum(leaf(i) for i in range(n))
def cb(i):
    threads.add(threading.get_ident())
    work(100 + i)
c = CB(cb)
with shadowprof.Profiler(interval="1ms", hook=sys.argv[1]) as p:
    for _ in range(10):
        assert lib.run_in_thread(c) == 0
names = {fid: f.name for fid, f in p.profile.functions.items()}
print(json.dumps({"threads": len(threads),
                  "calls": {names[k]: n for k, n in p.profile.calls.items()
                            if names[k] in ("cb", "work", "leaf")}}))
'''


@pytest.mark.parametrize("hook", ["auto", "eval"])
def test_c_thread_with_a_new_thread_state_per_callback(tmp_path, hook):
    """A C thread that calls Python three times gets a new PyThreadState each time
    (ctypes' PyGILState_Ensure/Release): every call is counted on every mechanism
    (monitoring caches the thread state and must notice it changed)."""
    src = tmp_path / "cthread.c"
    src.write_text(C_THREAD)
    lib = tmp_path / "libcthread.so"
    cc = subprocess.run(["gcc", "-O2", "-fPIC", "-shared", str(src), "-o", str(lib),
                         "-lpthread"], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    prog = tmp_path / "prog.py"
    prog.write_text(C_THREAD_PROG)
    r = subprocess.run([sys.executable, str(prog), hook, str(lib)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert 1 <= out["threads"] <= 10   # pthread ids are reused after a join
    assert out["calls"] == {"cb": 30, "work": 30, "leaf": 10 * (100 + 101 + 102)}
