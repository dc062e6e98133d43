"""A C thread (pthread_create, no Python thread state of its own) that calls into
Python through ctypes callbacks: each callback runs on a new thread state
(PyGILState_Ensure/Release), which the profiler must bind afresh every time (issue 12,
item 13).  Exact call counts; the thread's samples land in its Python functions, not in
"[no Python frame]"; no crash."""

import json
import os
import shutil
import subprocess
import sys

import pytest

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
CALLBACKS = 300

PROGRAM = """\
import ctypes, json, sys, threading, time
from shadowprof import _core

lib = ctypes.CDLL(sys.argv[1])
CB = ctypes.CFUNCTYPE(None, ctypes.c_int)

def leaf(i):
    end = time.thread_time() + 0.002
    while time.thread_time() < end:
        pass

def callback(i):
    leaf(i)

cb = CB(callback)
_core.start(interval_ns=1_000_000, mode=sys.argv[2])
assert lib.cthread_run(cb, {n}) == 0
_core.stop()
s = _core.snapshot()
names = {{f: v[0] for f, v in s["functions"].items()}}
calls = {{names[f]: n for f, n in s["calls"].items() if names[f] in ("leaf", "callback")}}
main = threading.get_native_id()
c_thread = [(st, n) for st in s["stacks"] for n in [st[2]] if st[0] not in (0, main)]
in_leaf = sum(n for st, n in c_thread if any(names[f] == "leaf" for f, _ in st[1]))
print(json.dumps(dict(calls=calls, c_samples=sum(n for _, n in c_thread), in_leaf=in_leaf,
                      tids=sorted({{st[0] for st, _ in c_thread}}))))
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build tests/data/cthread_callback.c"
    out = tmp_path_factory.mktemp("cthread") / "libcthread_callback.so"
    r = subprocess.run([gcc, "-O2", "-fPIC", "-shared", "-pthread",
                        os.path.join(DATA, "cthread_callback.c"), "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return str(out)


@pytest.mark.parametrize("mode", ["cpu", "wall"])
def test_callbacks_from_a_c_thread(lib, mode):
    proc = subprocess.run([sys.executable, "-c", PROGRAM.format(n=CALLBACKS), lib, mode],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    r = json.loads(proc.stdout.splitlines()[-1])
    assert r["calls"] == {"leaf": CALLBACKS, "callback": CALLBACKS}, r
    # 300 x 2 ms of the thread's CPU time: 150+ samples at 250 Hz, one thread.
    assert len(r["tids"]) == 1 and r["c_samples"] >= 100, r
    # Each callback's frames are seen through its new thread state: nearly every
    # sample of the thread is in leaf (a stale state would read "[no Python frame]").
    assert r["in_leaf"] >= 0.85 * r["c_samples"], r
