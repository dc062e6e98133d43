"""fork: the child gets a clean profiler of its own (or none, by option); the parent
is unaffected; multiprocessing with the fork start method works while profiling."""

import glob
import os
import subprocess
import sys

from conftest import run_shadowprof

FORK_PROGRAM = """\
import os, sys, time
def parent_work():
    return sum(i * i for i in range(300000))
def child_work(n):
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    return n
parent_work()
pid = os.fork()
if pid == 0:
    for i in range(7):
        child_work(i)
    sys.exit(0)
_, status = os.waitpid(pid, 0)
parent_work()
print("child", pid, os.waitstatus_to_exitcode(status))
"""


def load(path):
    from shadowprof import Profile
    p = Profile.load_json(path)
    return p, {p.functions[k].name: v for k, v in p.calls.items()}


def test_child_continues_into_its_own_file(tmp_path, write_script):
    script = write_script(FORK_PROGRAM)
    out = tmp_path / "p.json"
    r = run_shadowprof("-q", "-i", "1ms", "-o", str(out), script)
    assert r.returncode == 0, r.stderr
    child_pid = int(r.stdout.split()[1])
    assert r.stdout.split()[2] == "0"
    parent, pcalls = load(out)
    child, ccalls = load(tmp_path / f"p.{child_pid}.json")
    # Each profile holds only its own process's calls after the fork.
    assert pcalls.get("parent_work") == 2 and "child_work" not in pcalls
    assert ccalls.get("child_work") == 7 and "parent_work" not in ccalls
    # The child re-armed a timer for its thread: it was sampled.
    assert child.samples >= 5
    assert any(child.functions[s.frames[-1][0]].name == "child_work"
               for s in child.stacks)


def test_child_stops_by_option(tmp_path, write_script):
    script = write_script(FORK_PROGRAM)
    out = tmp_path / "p.json"
    r = run_shadowprof("-q", "--fork", "stop", "-o", str(out), script)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["p.json", "prog.py"]
    _, pcalls = load(out)
    assert pcalls.get("parent_work") == 2


def test_multiprocessing_fork_pool_while_profiling(write_script):
    script = write_script(
        "import multiprocessing as mp\n"
        "def square(x):\n    return x * x\n"
        "if __name__ == '__main__':\n"
        "    ctx = mp.get_context('fork')\n"
        "    for _ in range(3):\n"
        "        with ctx.Pool(4) as pool:\n"
        "            print(sum(pool.map(square, range(1000))))\n")
    r = run_shadowprof("-i", "1ms", script, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["332833500"] * 3
    assert r.stderr.count("Top functions by self time") == 1


def test_multiprocessing_fork_children_write_their_own_profiles(tmp_path, write_script):
    # multiprocessing ends its children with os._exit: each worker's profile is still
    # written, next to the parent's, and holds the work done in that worker.  (A pool
    # left by `with Pool()` is terminated with SIGTERM: those workers write nothing.)
    script = write_script(
        "import multiprocessing as mp, os\n"
        "def square(x):\n    return x * x\n"
        "if __name__ == '__main__':\n"
        "    ctx = mp.get_context('fork')\n"
        "    pool = ctx.Pool(3)\n"
        "    print(sum(pool.map(square, range(3000), chunksize=10)))\n"
        "    pool.close()\n"
        "    pool.join()\n"
        "    p = ctx.Process(target=square, args=(7,))\n"
        "    p.start()\n"
        "    p.join()\n")
    out = tmp_path / "p.json"
    r = run_shadowprof("-q", "-o", str(out), script, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == str(sum(x * x for x in range(3000)))
    children = sorted(glob.glob(str(tmp_path / "p.*.json")))
    assert len(children) == 4, (children, r.stderr)
    squares = 0
    for path in children:
        _, calls = load(path)
        squares += calls.get("square", 0)
    assert squares == 3001            # every call, in exactly one child's file
    _, parent_calls = load(out)
    assert "square" not in parent_calls


def test_api_fork_in_child_profile_is_fresh():
    code = """
import os, shadowprof
def f():
    return 1
with shadowprof.Profiler() as outer:
    f()
    with shadowprof.Profiler() as inner:
        f()
        pid = os.fork()
        if pid == 0:
            f(); f(); f()
    if pid == 0:
        pass
if pid == 0:
    n = sum(v for k, v in inner.profile.calls.items()
            if inner.profile.functions[k].name == "f")
    m = sum(v for k, v in outer.profile.calls.items()
            if outer.profile.functions[k].name == "f")
    os._exit(0 if (n, m) == (3, 3) else 10 + n)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0"
