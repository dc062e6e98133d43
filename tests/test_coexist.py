"""shadowprof next to other users of the interpreter's hooks, and the program's own
semantics under the profiler: trace and profile functions see the same events,
cProfile counts the same, exceptions/returns/generators behave the same, threads are
profiled, sys.exit propagates."""

import inspect
import json
import subprocess
import sys
import threading
import time
import traceback

import pytest

import shadowprof
from shadowprof import _core

from conftest import DATA, DRIVER, HERE, PROGRAM, code_name, run_driver, run_shadowprof


# ------------------------------------------------------------------ workload

class WError(Exception):
    pass


def w_leaf(x):
    return x * 3


def w_gen(n):
    total = 0
    for i in range(n):
        got = yield i
        total += got or 0
    return total


def w_raise(n):
    if n == 0:
        raise WError("deep")
    return w_raise(n - 1)


class WThing:
    def __init__(self, v):
        self.v = v

    @property
    def double(self):
        return self.v * 2


def w_workload():
    out = [w_leaf(i) for i in range(3)]
    g = w_gen(3)
    out.append(next(g))
    out.append(g.send(5))
    out.append(g.send(6))
    try:
        g.send(7)
    except StopIteration as e:
        out.append(("stop", e.value))
    try:
        w_raise(3)
    except WError as e:
        out.append(str(e))
    out.append(WThing(4).double)
    out.append(sorted([3, 1, 2], key=lambda v: -v))
    return out


W_CODES = {f.__code__ for f in (w_leaf, w_gen, w_raise, w_workload, WThing.__init__,
                                WThing.double.fget)}


def _is_workload(code):
    return code in W_CODES or (code.co_filename == __file__ and
                               code.co_name in ("<listcomp>", "<lambda>"))


def record_trace(start_profiler_inside=None):
    """Run w_workload under sys.settrace; return (events, result)."""
    events = []

    def tracer(frame, event, arg):
        code = frame.f_code
        if not _is_workload(code):
            return None
        if event == "return":
            a = repr(arg)
        elif event == "exception":
            a = arg[0].__name__
        else:
            a = None
        events.append((event, code_name(code), frame.f_lineno, a))
        return tracer

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        if start_profiler_inside is not None:
            start_profiler_inside.start()
        result = w_workload()
    finally:
        sys.settrace(old)
    return events, result


def record_profile():
    events = []

    def prof(frame, event, arg):
        code = frame.f_code
        if event.startswith("c_"):
            if _is_workload(code):
                events.append((event, code_name(code), getattr(arg, "__name__", "?")))
        elif _is_workload(code):
            events.append((event, code_name(code), frame.f_lineno,
                           repr(arg) if event == "return" else None))

    old = sys.getprofile()
    sys.setprofile(prof)
    try:
        result = w_workload()
    finally:
        sys.setprofile(old)
    return events, result


def test_settrace_events_unchanged():
    base_events, base_result = record_trace()
    kinds = {e[0] for e in base_events}
    assert kinds == {"call", "line", "return", "exception"}
    assert len(base_events) > 50

    # settrace while shadowprof already runs
    p = shadowprof.Profiler(interval="1ms")
    p.start()
    try:
        events, result = record_trace()
    finally:
        p.stop()
    assert result == base_result
    assert events == base_events

    # shadowprof started while a trace function is installed
    p = shadowprof.Profiler(interval="1ms")
    try:
        events, result = record_trace(start_profiler_inside=p)
    finally:
        if p.running:
            p.stop()
    assert result == base_result
    assert events == base_events
    # and shadowprof counted the workload exactly
    prof = p.profile
    ids = {(f.name): fid for fid, f in prof.functions.items()
           if f.filename == __file__}
    assert prof.calls[ids["w_leaf"]] == 3
    assert prof.calls[ids["w_raise"]] == 4
    assert prof.calls[ids["w_workload"]] == 1


def test_setprofile_events_unchanged():
    base_events, base_result = record_profile()
    assert {e[0] for e in base_events} == {"call", "return", "c_call", "c_return",
                                           "c_exception"}
    p = shadowprof.Profiler(interval="1ms")
    p.start()
    try:
        events, result = record_profile()
    finally:
        p.stop()
    assert result == base_result
    assert events == base_events
    assert sys.getprofile() is None


@pytest.fixture(scope="module")
def alone_runs():
    return run_driver("cprofile"), run_driver("shadowprof")


@pytest.mark.parametrize("mode", ["both", "both_cprofile_first"])
def test_cprofile_and_shadowprof_together_count_the_same(alone_runs, mode):
    alone, sp_alone = alone_runs
    both = run_driver(mode)
    assert both["result"] == alone["result"]
    assert both["calls"] == alone["calls"]
    assert both["edges"] == alone["edges"]
    # and cProfile running does not change shadowprof's counts
    assert both["sp_calls"] == sp_alone["calls"]
    assert both["sp_edges"] == sp_alone["edges"]
    assert len(both["sp_calls"]) > 60


# ------------------------------------------------------------------ semantics

def s_inner(n):
    if n == 0:
        raise KeyError("k")
    return s_inner(n - 1)


def s_chain():
    try:
        s_inner(2)
    except KeyError as e:
        raise ValueError("v") from e


def s_gen():
    try:
        x = yield 1
        while True:
            try:
                x = yield x * 2
            except TypeError as e:
                x = yield f"caught {e}"
    finally:
        s_log.append("gen finally")


s_log = []


class SuppressingCM:
    def __enter__(self):
        s_log.append("enter")
        return self

    def __exit__(self, tp, val, tb):
        s_log.append(("exit", tp.__name__ if tp else None))
        return True


def s_frames():
    f = sys._getframe()
    names = []
    while f is not None and f.f_code.co_name.startswith("s_"):
        names.append((f.f_code.co_name, f.f_lineno - f.f_code.co_firstlineno))
        f = f.f_back
    return names


def s_caller_of_frames():
    return s_frames()


def s_recursion_depth():
    n = 0

    def r():
        nonlocal n
        n += 1
        r()
    try:
        r()
    except RecursionError:
        pass
    return n


def semantics():
    del s_log[:]
    out = {}
    try:
        s_chain()
    except ValueError as e:
        tb = traceback.extract_tb(e.__traceback__)
        out["tb"] = [(fr.name, fr.lineno) for fr in tb]
        ctb = traceback.extract_tb(e.__cause__.__traceback__)
        out["cause_tb"] = [(fr.name, fr.lineno) for fr in ctb]
        out["cause"] = repr(e.__cause__)
        out["context_is_cause"] = e.__context__ is e.__cause__
    g = s_gen()
    out["gen_states"] = [inspect.getgeneratorstate(g)]
    out["gen"] = [next(g), g.send(5), g.throw(TypeError("t")), g.send(1)]
    out["gen_states"].append(inspect.getgeneratorstate(g))
    out["gen_line"] = g.gi_frame.f_lineno - g.gi_code.co_firstlineno
    g.close()
    out["gen_states"].append(inspect.getgeneratorstate(g))
    with SuppressingCM():
        s_inner(1)
    out["frames"] = s_caller_of_frames()
    out["exc_info_inside"] = None
    try:
        s_inner(0)
    except KeyError:
        out["exc_info_inside"] = sys.exc_info()[0].__name__
    out["exc_info_after"] = sys.exc_info()
    out["recursion_depth"] = s_recursion_depth()
    out["log"] = list(s_log)
    return out


def test_program_semantics_unchanged():
    base = semantics()
    p = shadowprof.Profiler(interval="1ms")
    p.start()
    try:
        profiled = semantics()
    finally:
        p.stop()
    assert profiled == base
    assert base["log"] == ["gen finally", "enter", ("exit", "KeyError")]
    assert base["gen_states"] == ["GEN_CREATED", "GEN_SUSPENDED", "GEN_CLOSED"]


DEEP_SCRIPT = r'''
import sys
sys.setrecursionlimit(200000)

def deep(n):
    return 0 if n == 0 else 1 + deep(n - 1)

if sys.argv[1] == "profile":
    import shadowprof
    p = shadowprof.Profiler(interval="10ms")
    p.start()
try:
    print(deep(60000))
except RecursionError:
    print("RecursionError")
if sys.argv[1] == "profile":
    prof = p.stop()
    print(max(prof.calls.values()))
'''


def test_deep_recursion_does_not_crash(write_script):
    """On 3.11+ CPython runs Python-to-Python calls without C recursion, so with a
    raised recursion limit a program may recurse 60000 deep.  A PEP 523 hook turns
    every Python call into C recursion (hook -> _PyEval_EvalFrameDefault -> vectorcall
    -> hook ...), about 0.5 KB of C stack per call: with an 8 MB stack the process
    dies with SIGSEGV at ~15000-20000 frames.  The profiler must not crash a program
    that works without it: run it, or at least raise RecursionError.  (3.9 and 3.10
    recurse in C on every call anyway: there the plain run itself dies of SIGSEGV,
    and the profiled one must still end cleanly with RecursionError.)"""
    path = write_script(DEEP_SCRIPT, "coex_deep.py")
    plain = subprocess.run([sys.executable, path, "plain"], capture_output=True,
                           text=True, timeout=60)
    if sys.version_info >= (3, 11):
        assert plain.returncode == 0 and plain.stdout.split() == ["60000"], plain
    prof = subprocess.run([sys.executable, path, "profile"], capture_output=True,
                          text=True, timeout=60)
    assert prof.returncode == 0, (
        f"the profiled program died (returncode {prof.returncode}): {prof.stderr}")
    result, deepest = prof.stdout.split()
    if sys.version_info >= (3, 12):
        # sys.monitoring (the default hook there) adds no C recursion: the program
        # runs as it does unprofiled, every call counted.
        assert (result, deepest) == ("60000", "60001"), prof.stdout
    else:
        # The PEP 523 hook recurses in C: the guard must turn the would-be SIGSEGV
        # into RecursionError, after thousands of counted calls.
        assert result == "RecursionError", prof.stdout
        assert int(deepest) > 5000, prof.stdout


# ------------------------------------------------------------------ threads

def t_leaf(i):
    return i + 1


def t_spin(seconds):
    end = time.thread_time() + seconds
    n = 0
    while time.thread_time() < end:
        n += 1
    return n


def t_worker(n, out):
    total = 0
    for i in range(n):
        total += t_leaf(i)
    t_spin(0.25)
    out.append(total)


def t_pre_worker(go, n, out):
    go.wait()
    total = 0
    for i in range(n):
        total += t_leaf(i)
    out.append(total)


def _ids(prof):
    return {f.name: fid for fid, f in prof.functions.items() if f.filename == __file__}


def test_threads_are_profiled():
    out_new, out_pre = [], []
    go = threading.Event()
    pre = threading.Thread(target=t_pre_worker, args=(go, 30, out_pre))
    pre.start()                               # running before the profiler starts
    p = shadowprof.Profiler(interval="1ms")
    p.start()
    try:
        th = threading.Thread(target=t_worker, args=(50, out_new))
        th.start()                            # started while profiling
        go.set()
        th.join(30)
        pre.join(30)
    finally:
        prof = p.stop()
    assert out_new == [sum(range(1, 51))]
    assert out_pre == [sum(range(1, 31))]
    ids = _ids(prof)
    assert prof.calls[ids["t_worker"]] == 1
    assert prof.calls[ids["t_spin"]] == 1
    assert prof.calls[ids["t_leaf"]] == 80
    assert prof.edges[(ids["t_worker"], ids["t_leaf"])] == 50
    # t_pre_worker was entered before start(): its calls are attributed to it
    assert "t_pre_worker" not in ids or ids["t_pre_worker"] not in prof.calls
    assert prof.edges[(ids["t_pre_worker"], ids["t_leaf"])] == 30
    run_ids = [fid for fid, f in prof.functions.items()
               if f.name == code_name(threading.Thread.run.__code__)
               and f.filename == threading.__file__]
    assert len(run_ids) == 1
    assert prof.edges[(run_ids[0], ids["t_worker"])] == 1
    # The worker's samples carry its thread id and its own stack.
    worker = [s for s in prof.stacks if s.thread_id == th.native_id]
    assert sum(s.count for s in worker) >= 3, prof.stacks
    for s in worker:
        names = [prof.functions[fid].name for fid, _ in s.frames]
        if "t_worker" in names:
            assert names[names.index("t_worker") - 1] == code_name(
                    threading.Thread.run.__code__), names
            assert names[0] == code_name(threading.Thread._bootstrap.__code__), names
    spins = [s for s in worker if s.frames and s.frames[-1][0] == ids["t_spin"]]
    assert sum(s.count for s in spins) >= 3
    main_tid = threading.main_thread().native_id
    for s in prof.stacks:
        names = {prof.functions[fid].name for fid, _ in s.frames}
        if "t_worker" in names or "t_pre_worker" in names:
            assert s.thread_id != main_tid


# ------------------------------------------------------------------ sys.exit

EXIT_SCRIPT = r'''
import json, sys
import shadowprof

def exit_deep(n):
    if n == 0:
        sys.exit(3)
    return exit_deep(n - 1)

p = shadowprof.Profiler(interval="10ms")
try:
    with p:
        try:
            exit_deep(4)
        finally:
            print("finally ran", flush=True)
except SystemExit as e:
    calls = {p.profile.functions[f].name: n for f, n in p.profile.calls.items()
             if p.profile.functions[f].filename == __file__}
    print(json.dumps({"code": e.code, "calls": calls,
                      "running": shadowprof._core.is_running()}), flush=True)
    raise
print("not reached")
'''


def test_sys_exit_propagates(write_script):
    path = write_script(EXIT_SCRIPT, "coex_exit.py")
    proc = subprocess.run([sys.executable, path], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "finally ran"
    res = json.loads(lines[1])
    assert res == {"code": 3, "calls": {"exit_deep": 5}, "running": False}
    assert "not reached" not in proc.stdout


CLI_EXIT_SCRIPT = r'''
import sys

def leave(code):
    sys.exit(code)

def main():
    leave(int(sys.argv[1]))

main()
print("not reached")
'''


@pytest.mark.parametrize("code", [0, 5])
def test_sys_exit_under_cli(write_script, code):
    path = write_script(CLI_EXIT_SCRIPT, "coex_cli_exit.py")
    proc = run_shadowprof("-q", path, str(code), timeout=60)
    assert proc.returncode == code, proc.stderr
    assert "not reached" not in proc.stdout


def t_hammer(n, barrier):
    barrier.wait()
    for i in range(n):
        t_leaf(i)


def test_concurrent_threads_count_exactly():
    """Threads calling the same function at once: switches between them happen
    while the hook runs its counters; no call may be lost or doubled."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)          # switch threads as often as possible
    n_threads, n_calls = 4, 5000
    barrier = threading.Barrier(n_threads)
    p = shadowprof.Profiler(interval="1ms")
    p.start()
    try:
        threads = [threading.Thread(target=t_hammer, args=(n_calls, barrier))
                   for _ in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
    finally:
        prof = p.stop()
        sys.setswitchinterval(old)
    ids = _ids(prof)
    assert prof.calls[ids["t_hammer"]] == n_threads
    assert prof.calls[ids["t_leaf"]] == n_threads * n_calls
    assert prof.edges[(ids["t_hammer"], ids["t_leaf"])] == n_threads * n_calls
    tids = {s.thread_id for s in prof.stacks
            if any(fid == ids["t_hammer"] for fid, _ in s.frames)}
    assert tids <= {th.native_id for th in threads}
