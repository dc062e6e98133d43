"""The process-wide timer fallbacks (used only where the kernel refuses per-thread
timers, or POSIX timers altogether), forced with the tests-only knob
SHADOWPROF_TEST_TIMER: they sample, and a process that forks and execs while
profiling on ITIMER_PROF (which, unlike POSIX timers, survives execve) does not die
of SIGPROF, in the child nor in the parent itself (issue 12, item 12)."""

import json
import os
import signal
import subprocess
import sys

import pytest

BURN = """\
import json, os, sys, time
from shadowprof import _core

def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        sum(range(1000))
"""

# Run by the exec'd programs: a fresh interpreter that computes long enough for any
# inherited interval timer to fire (CPU time: 0.3 s against a 1 ms timer).
EXECED = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\nprint('execed ok')"


def run(body, kind, timeout=60):
    env = dict(os.environ, SHADOWPROF_TEST_TIMER=kind)
    proc = subprocess.run([sys.executable, "-c", BURN + body], capture_output=True,
                          text=True, timeout=timeout, env=env)
    return proc


def results(proc):
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("kind,code", [("process", 1), ("itimer", 2)])
def test_forced_fallback_samples(kind, code):
    (r,) = results(run("""
_core.start(interval_ns=1_000_000, mode="cpu")
burn(0.5)
kind = _core.snapshot()["process_timer"]
_core.stop()
s = _core.snapshot()
print(json.dumps(dict(kind=kind, samples=s["samples"], lost=s["lost"],
                      burn=sum(st[2] for st in s["stacks"] if any(
                          s["functions"][f][0] == "burn" for f, _ in st[1])))))
""", kind))
    assert r["kind"] == code, r
    # 0.5 s of CPU at the kernel's tick rate (100-1000 Hz) at least.
    assert r["samples"] >= 40 and r["lost"] == 0, r
    assert r["burn"] >= 0.8 * r["samples"], r


FORK_EXEC = """
_core.start(interval_ns=1_000_000, mode="cpu", fork="{fork}")
burn(0.1)
pid = os.fork()
if pid == 0:
    burn(0.1)   # the child's first Python calls arm its own timer
    os.execv(sys.executable, [sys.executable, "-c", {execed!r}])
_, status = os.waitpid(pid, 0)
burn(0.1)
kind = _core.snapshot()["process_timer"]
_core.stop()
print(json.dumps(dict(status=status, kind=kind)))
"""


@pytest.mark.parametrize("fork", ["continue", "stop"])
def test_exec_after_fork_on_itimer_survives(fork):
    proc = run(FORK_EXEC.format(fork=fork, execed=EXECED), "itimer")
    (r,) = results(proc)
    assert r["kind"] == 2, r
    assert os.WIFEXITED(r["status"]) and os.WEXITSTATUS(r["status"]) == 0, (
        f"exec'd child: {r['status']} "
        f"(signal {os.WTERMSIG(r['status']) if os.WIFSIGNALED(r['status']) else None}, "
        f"SIGPROF is {int(signal.SIGPROF)})")
    assert "execed ok" in proc.stdout


def test_exec_in_the_profiled_process_itself_on_itimer_survives():
    proc = run(f"""
_core.start(interval_ns=1_000_000, mode="cpu")
burn(0.1)
assert _core.snapshot()["process_timer"] == 2
os.execv(sys.executable, [sys.executable, "-c", {EXECED!r}])
""", "itimer")
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert "execed ok" in proc.stdout


def test_failed_exec_keeps_sampling_on_itimer():
    (r,) = results(run("""
_core.start(interval_ns=1_000_000, mode="cpu")
burn(0.1)
try:
    os.execv("/nonexistent/shadowprof-test", ["x"])
except OSError:
    pass
before = _core.snapshot()["signals"]
burn(0.5)
s = _core.snapshot()
_core.stop()
print(json.dumps(dict(kind=s["process_timer"], more=s["signals"] - before)))
""", "itimer"))
    assert r["kind"] == 2 and r["more"] >= 40, r
