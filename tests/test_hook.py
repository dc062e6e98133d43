"""The PEP 523 hook at its edges: C stack exhaustion, and the lazy pop (frames that
ended stay on the shadow stack until the next push) as readers see it."""
import json
import subprocess
import sys
import time

import pytest

import shadowprof

# ------------------------------------------------------------------ C stack exhausted

C_STACK = r'''
import json, sys, threading, weakref, gc
import pytest

import shadowprof

class Token:
    pass

refs = []
out = {}

def gen():
    yield 1

def probe(n, g):
    t = Token()
    refs.append(weakref.ref(t))
    try:
        return probe(n + 1, g)
    except RecursionError as e:
        if "depth" in out:
            raise
        # Deepest level that runs: entering one more frame fails.  Resume the
        # generator through two more C calls, deeper still.
        out["depth"] = n
        out["message"] = str(e)
        try:
            list(map(next, [g]))
            out["resume"] = "ran"
        except RecursionError:
            out["resume"] = "refused"
        out["running_after"] = g.gi_running
        return n

def main():
    g = gen()
    probe(0, g)
    out["running_later"] = g.gi_running
    try:
        out["next_later"] = repr(next(g, "exhausted"))
    except Exception as e:   # "generator already executing" with the bug
        out["next_later"] = type(e).__name__ + ": " + str(e)

sys.setrecursionlimit(1_000_000)
threading.stack_size(128 * 1024)
p = shadowprof.Profiler(interval="10ms", hook="eval").start()
th = threading.Thread(target=main)
th.start()
th.join()
p.stop()
gc.collect()
out["leaked"] = sum(r() is not None for r in refs)
print(json.dumps(out))
'''


def test_c_stack_exhausted_raises_and_cleans_the_frame(tmp_path):
    """A thread whose C stack runs out under the PEP 523 hook gets RecursionError,
    and the refused frame is cleaned up as CPython cleans its own refused frames: a
    generator refused at its resumption is not left running, and the arguments of a
    refused call are released (on 3.12+ the hook used to return without evaluating
    the frame, which then leaked and left its generator marked as running)."""
    script = tmp_path / "cstack.py"
    script.write_text(C_STACK)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["depth"] > 20, out                # the thread did recurse first
    assert out["resume"] == "refused", out       # the generator resume was refused
    assert "C stack is nearly full" in out["message"], out
    assert out["running_after"] is False, out
    assert out["running_later"] is False, out
    assert out["next_later"] == "'exhausted'", out   # finished, as CPython does it
    assert out["leaked"] == 0, out


# ------------------------------------------------------------------ lazy pops


def _leaf():
    return 1


def _spin(seconds):
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1
    return n


def _after_return():
    # _leaf returns at once; its entry stays on the shadow stack until the next push,
    # which never comes while _spin's loop runs in this frame (time.process_time is a
    # C function).  The samples must not show _leaf.
    _leaf()
    end = time.process_time() + 0.3
    n = 0
    while time.process_time() < end:
        n += 1
    return n


def test_samples_after_a_return_belong_to_the_caller():
    with shadowprof.Profiler(interval="1ms") as p:
        _after_return()
    prof = p.profile
    names = {fid: f.name for fid, f in prof.functions.items()}
    mine = leaf = 0
    for st in prof.stacks:
        frames = [names[fid] for fid, _ in st.frames]
        if "_after_return" in frames:
            mine += st.count
            if frames[-1] == "_leaf":
                leaf += st.count
    assert mine >= 10
    assert leaf <= 1   # a sample may land while _leaf really runs


def test_thread_stacks_leave_out_ended_frames():
    from shadowprof import _core
    with shadowprof.Profiler(interval="10ms"):
        _leaf()
        _leaf()
        stacks = _core.thread_stacks()
    import threading
    mine = stacks[threading.get_native_id()]
    names = [name for name, _, _ in mine]
    assert names[-1] == "test_thread_stacks_leave_out_ended_frames", names
    assert "_leaf" not in names


HOOKS = ["eval", "monitoring"] if sys.version_info >= (3, 12) else ["eval"]


def _dive(n):
    if n == 0:
        raise LookupError("bottom")
    return _dive(n - 1)


def _after_unwind(depth, seen):
    try:
        _dive(depth)
    except LookupError:
        pass
    # The `depth + 1` frames of _dive ended by the exception, not by a return: their
    # entries are all still on the shadow stack above this frame's, and the next call
    # finds its caller below them.
    return _look(seen)


def _look(seen):
    from shadowprof import _core
    import threading
    names = [name for name, _, _ in _core.thread_stacks()[threading.get_native_id()]]
    seen.append(names)
    return _leaf()


@pytest.mark.parametrize("hook", HOOKS)
def test_a_call_after_an_exception_unwound_many_frames(hook):
    """After an exception unwinds hundreds of frames, the next call's caller is found
    below their entries (lazy pops: the search goes past every ended frame): the
    stack read at that call shows no ended frame, and the counts and edges are exact."""
    from shadowprof import _core
    seen = []
    with shadowprof.Profiler(interval="10ms", hook=hook, correct_overhead=False) as p:
        for _ in range(3):
            _after_unwind(400, seen)
    for names in seen:
        assert names[-2:] == ["_after_unwind", "_look"], names[-5:]
        assert "_dive" not in names
    ids = {f: _core.code_id(f.__code__) for f in (_after_unwind, _dive, _look, _leaf)}
    calls, edges = p.profile.calls, p.profile.edges
    assert calls[ids[_dive]] == 3 * 401
    assert calls[ids[_look]] == 3 and calls[ids[_leaf]] == 3
    assert edges[(ids[_after_unwind], ids[_look])] == 3
    assert edges[(ids[_look], ids[_leaf])] == 3
    assert edges[(ids[_dive], ids[_dive])] == 3 * 400


THREAD_BEFORE_IMPORT = r'''
import sys, threading
go, done = threading.Event(), threading.Event()
out = {}

def leaf(i):
    return i

def body():
    go.wait()
    out["sum"] = sum(leaf(i) for i in range(1000))
    done.set()

th = threading.Thread(target=body)
th.start()                       # before the extension is loaded
import shadowprof                # noqa: E402
from shadowprof import _core     # noqa: E402
p = shadowprof.Profiler(interval="10ms", hook=sys.argv[1], correct_overhead=False).start()
go.set()
done.wait()
p.stop()
th.join()
print(out["sum"], p.profile.calls[_core.code_id(leaf.__code__)])
'''


@pytest.mark.parametrize("hook", HOOKS)
def test_thread_started_before_the_extension_loaded(tmp_path, hook):
    """A thread that existed before shadowprof's extension was loaded gets the
    trackers' thread-local view of its (absent) state initialised all the same (the
    static TLS image is copied into every running thread at load): its calls are
    counted, not crashed on."""
    script = tmp_path / "before.py"
    script.write_text(THREAD_BEFORE_IMPORT)
    r = subprocess.run([sys.executable, str(script), hook], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["499500", "1000"], r.stdout


# ------------------------------------------------------------------ the caller's entry

CALLERS = r'''
import json, sys, threading
try:
    import greenlet
except ImportError:
    greenlet = None

MINE = set()
looks = []


def mine(fn):
    MINE.add(fn.__code__)
    return fn


def name(code):
    return getattr(code, "co_qualname", code.co_name)


@mine
def look():
    """The shadow stack's view of this thread against the interpreter's, both cut to
    this file's functions."""
    from shadowprof import _core
    if not RECORDING:
        return
    mine_names = {name(c) for c in MINE}
    shadow = [n for n, _, _ in _core.thread_stacks().get(threading.get_native_id(), [])]
    true, f = [], sys._getframe(1)
    while f is not None:
        true.append(name(f.f_code))
        f = f.f_back
    true.reverse()
    looks.append(([n for n in shadow if n in mine_names][:-1] == [n for n in true if n in mine_names],
                  shadow[-6:], true[-6:]))


@mine
def leaf(i):
    return i


@mine
def rec(n):
    # Returns, then calls again from the same frame at varying depths.
    if n <= 0:
        return leaf(0)
    s = rec(n - 1)
    s += leaf(n)
    if n % 3 == 0:
        s += rec(n // 3)
    if n == 5:
        look()
    return s


@mine
def gen(n):
    for i in range(n):
        if i % 10 == 0:
            look()
        yield leaf(i)


@mine
def resume_at(g, depth):
    # Resumes the generator from a different depth each time.
    if depth:
        return resume_at(g, depth - 1)
    return next(g)


@mine
def boom(n):
    if n == 0:
        raise KeyError(n)
    return boom(n - 1)


@mine
def unwind(n):
    try:
        boom(n)
    except KeyError:
        pass
    look()
    return leaf(n)


@mine
def ping(other, n, depth):
    # Greenlets switching at different depths: each switch leaves the other
    # greenlet's frames on the shadow stack, deeper or shallower than its own.
    if depth:
        return ping(other, n, depth - 1)
    for i in range(n):
        leaf(i)
        look()
        other.switch()
    return 0


@mine
def greenlets():
    a = greenlet.greenlet(lambda: ping(b, 20, 9))
    b = greenlet.greenlet(lambda: ping(a, 20, 2))
    a.switch()
    while not (a.dead and b.dead):
        (a if not a.dead else b).switch()


@mine
def work():
    total = 0
    for k in range(30):
        total += rec(k % 9)
    g = gen(100)
    for k in range(100):
        total += resume_at(g, k % 7)
    for k in range(20):
        total += unwind(k * 5)
    if greenlet is not None:
        greenlets()
    return total


@mine
def outer(start):
    # Started before start(): seeded, not counted; its calls after are.
    start()
    r = 0
    for _ in range(3):
        r += leaf(1)
        r += work()
        look()
    return r


@mine
def pre(n, start):
    # Frames started before start(); after outer returns they call again.
    if n == 0:
        return outer(start)
    r = pre(n - 1, start)
    look()
    return r + leaf(n)


def reference():
    """Exact calls and caller->callee edges from sys.setprofile ("call" events are
    function calls and generator resumptions, as shadowprof counts them)."""
    calls, edges = {}, {}

    def prof(frame, event, arg):
        if event == "call" and frame.f_code in MINE:
            k = name(frame.f_code)
            calls[k] = calls.get(k, 0) + 1
            back = frame.f_back
            if back is not None and back.f_code in MINE:
                e = name(back.f_code) + " -> " + k
                edges[e] = edges.get(e, 0) + 1

    def start():
        sys.setprofile(prof)
        threading.setprofile(prof)

    pre(12, start)
    sys.setprofile(None)
    return calls, edges


def measured(hook):
    import shadowprof
    from shadowprof import _core
    p = shadowprof.Profiler(interval="10ms", hook=hook, correct_overhead=False)
    pre(12, p.start)
    p.stop()
    names = {_core.code_id(c): name(c) for c in MINE}
    calls = {names[i]: n for i, n in p.profile.calls.items() if i in names}
    edges = {}
    for (a, b), n in p.profile.edges.items():
        if a in names and b in names:
            k = names[a] + " -> " + names[b]
            edges[k] = edges.get(k, 0) + n
    return calls, edges


RECORDING = False
ref = reference()
RECORDING = True
got = measured(sys.argv[1])
print(json.dumps({"ref": ref, "got": got, "looks": looks,
                  "greenlet": greenlet is not None}))
'''


@pytest.mark.parametrize("hook", HOOKS)
def test_callers_found_at_every_depth(tmp_path, hook):
    """The caller's entry is found wherever it lies on the shadow stack (on 3.11
    through the index its push left in the frame's padding, else by the search):
    recursion that returns and calls again at varying depths, a generator resumed
    from different depths, exceptions that unwind many frames, greenlets that switch
    at different depths (each leaves the other's frames on the stack), and frames
    that were running before start().  Call counts and caller->callee edges equal a
    sys.setprofile count of the same program, and the shadow stack read at many
    points equals the interpreter's chain of frames."""
    script = tmp_path / "callers.py"
    script.write_text(CALLERS)
    r = subprocess.run([sys.executable, str(script), hook], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    (ref_calls, ref_edges), (calls, edges) = out["ref"], out["got"]
    assert calls == ref_calls
    assert edges == ref_edges
    assert ref_edges["resume_at -> gen"] == 300 and ref_edges["ping -> leaf"] in (0, 120)
    assert ref_edges["pre -> leaf"] == 12 and "pre -> pre" not in ref_edges
    assert len(out["looks"]) > 200
    bad = [x for x in out["looks"] if not x[0]]
    assert not bad, bad[:3]
