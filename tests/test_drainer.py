"""The drain thread: no sample is lost while the program makes no Python call (a
sleep, a join, a long C call), in wall and CPU mode and with native stacks; the thread
never shows in a profile, is gone after stop(), is re-created in a fork child that keeps
profiling, and never holds up the interpreter's exit (issue 12, item 1).

The programs run with small rings (128 or 256 records)
and check that they took more samples than the ring holds: without the drain thread
they lose everything past it."""

import os
import subprocess
import sys

import pytest

PRELUDE = """\
import json, os, sys, threading, time
from shadowprof import _core

def drain_threads():
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return names.count("sp-drain")

def report(snap, **extra):
    stack_tids = sorted({s[0] for s in snap["stacks"] if s[2]})
    out = dict(samples=snap["samples"], lost=snap["lost"],
               drainer_drains=snap["drainer_drains"], stack_tids=stack_tids,
               main_tid=threading.get_native_id(), **extra)
    print(json.dumps(out), flush=True)
"""


def run(body, timeout=60):
    proc = subprocess.run([sys.executable, "-c", PRELUDE + body], capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    import json
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def check_nothing_lost(r, least):
    assert r["lost"] == 0, r
    assert r["samples"] >= least, r
    assert r["drainer_drains"] >= 1, r
    # Only the program's own thread was sampled: the drain thread never is.
    assert r["stack_tids"] == [r["main_tid"]], r


def test_sleep_in_wall_mode_loses_nothing():
    (r,) = run("""
_core.start(interval_ns=1_000_000, mode="wall", ring_size=256)
during = drain_threads()
time.sleep(1.5)
_core.stop()
report(_core.snapshot(), during=during, after=drain_threads())
""")
    check_nothing_lost(r, least=300)
    assert r["during"] == 1 and r["after"] == 0


# A C loop without Python calls: hashing big buffers (the GIL is released inside), for
# a second of CPU time (CPU timers fire at the kernel's tick rate, often 250 Hz).
C_LOOP = """
import hashlib
buf = b"x" * (1 << 20)
_core.start(interval_ns=1_000_000, mode="{mode}", ring_size={ring}, native={native})
end = time.process_time() + 1.0
while time.process_time() < end:
    hashlib.sha256(buf).digest()
_core.stop()
report(_core.snapshot())
"""


@pytest.mark.parametrize("mode,ring,least", [("cpu", 128, 160), ("wall", 256, 300)])
def test_c_loop_loses_nothing(mode, ring, least):
    (r,) = run(C_LOOP.format(mode=mode, ring=ring, native=False))
    check_nothing_lost(r, least)


def test_c_loop_with_native_stacks_loses_nothing():
    (r,) = run(C_LOOP.format(mode="cpu", ring=128, native=True))
    check_nothing_lost(r, least=160)


# C calls that hold the GIL for longer than the ring lasts, with no Python call: sum()
# over a range and a regex over a big string, each about half a second or more (the
# rings last about 0.26 s in wall mode, 256 records at 1 kHz, and 0.5 s in CPU mode, 128
# at 250 Hz).  The drain thread cannot take the GIL then; it moves the records out of
# the ring without it (spill.h).  Without that, everything past the ring is lost.
GIL_HELD = """
import re
big = "abc " * 3_000_000
_core.start(interval_ns=1_000_000, mode="{mode}", ring_size={ring}, native={native})
end = time.process_time() + 1.5
while time.process_time() < end:
    sum(range(30_000_000))
    re.findall(r"[a-z]+\\d", big)
_core.stop()
report(_core.snapshot())
"""


@pytest.mark.parametrize("mode,ring,native,least", [("wall", 256, False, 500),
                                                     ("cpu", 128, False, 250),
                                                     ("wall", 256, True, 500)])
def test_c_call_holding_the_gil_loses_nothing(mode, ring, native, least):
    (r,) = run(GIL_HELD.format(mode=mode, ring=ring, native=native))
    check_nothing_lost(r, least)


def test_thread_does_not_take_the_gil_while_python_calls_drain():
    # A busy Python loop: the hook drains, the drain thread only asks it to (every
    # 250 ms).  It drains itself only if the program made no call for a whole period,
    # which on a loaded machine can happen when the program is not scheduled.
    (r,) = run("""
def f(i):
    return i * i
_core.start(interval_ns=1_000_000, mode="cpu", ring_size=128)
end = time.process_time() + 1.0
while time.process_time() < end:
    for i in range(1000):
        f(i)
_core.stop()
report(_core.snapshot())
""")
    assert r["lost"] == 0 and r["samples"] >= 160, r
    assert r["drainer_drains"] <= 2, r


def test_fork_child_that_keeps_profiling_gets_a_drain_thread():
    rows = run("""
_core.start(interval_ns=1_000_000, mode="wall", ring_size=128, fork="continue")
pid = os.fork()
if pid == 0:
    during = drain_threads()
    time.sleep(1.5)
    _core.stop()
    report(_core.snapshot(), child=True, during=during, after=drain_threads())
    os._exit(0)
_, status = os.waitpid(pid, 0)
_core.stop()
report(_core.snapshot(), child=False, status=status)
""")
    child = next(r for r in rows if r["child"])
    parent = next(r for r in rows if not r["child"])
    assert parent["status"] == 0
    assert child["during"] == 1 and child["after"] == 0, child
    check_nothing_lost(child, least=160)
    check_nothing_lost(parent, least=160)


def test_fork_child_that_stops_profiling_has_no_drain_thread():
    (r,) = run("""
_core.start(interval_ns=1_000_000, mode="wall", ring_size=64, fork="stop")
pid = os.fork()
if pid == 0:
    time.sleep(0.3)
    print(json.dumps(dict(child=drain_threads())), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
_core.stop()
""")
    assert r == {"child": 0}


def test_exit_while_profiling_does_not_hang():
    # Never stopped: the drain thread is stopped before the interpreter finalizes, even
    # while another thread keeps the ring filling.
    proc = subprocess.run([sys.executable, "-c", PRELUDE + """
def spin():
    while True:
        time.sleep(0.001)
threading.Thread(target=spin, daemon=True).start()
_core.start(interval_ns=1_000_000, mode="wall", ring_size=64)
time.sleep(0.5)
print("bye", drain_threads())
"""], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["bye", "1"]
