"""Start-up cost of the shadowprof.pth hook without the flag, of profiling an empty
program (`-X shadowprof=quiet`, `-m shadowprof -q`), and the overhead of continuous mode.

    python3 benchmarks/startup.py VENV_PYTHON [--runs N] [--only-empty] [--callgrind]

VENV_PYTHON must have shadowprof and shadowprof.pth in its site-packages (`pip
install .`, or tests/data/canary_venv.py), with the package's .pyc files compiled
(pip does; else `python -m compileall` on it: with PYTHONDONTWRITEBYTECODE set, every
run would compile shadowprof's sources again).  Prints:
- the hook's own cost: site.addpackage() on shadowprof.pth, best of 5 x 1000;
- `-X importtime` lines mentioning shadowprof without the flag (there should be none);
- interpreter start-up (python -c pass) with and without the .pth, median of N runs,
  interleaved (the difference is within the machine's noise);
- an empty program: `python empty.py` against `python -X shadowprof=quiet empty.py`,
  `python -m shadowprof -q empty.py`, and `python -m emptymod` (what any `python -m`
  costs: runpy and its imports, before shadowprof's code runs): medians of N paired,
  interleaved runs (wall and CPU of the child, difference to `python empty.py` within
  each pair); with --callgrind also the instructions each executes (valgrind), which
  the load of a shared machine does not change; --only-empty stops there;
- the CPU time of a CPU-bound workload unprofiled, and with
  SHADOWPROF=period=1s,output=DIR (continuous mode, 10 ms interval), median of N.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

WORK = ("def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"
        "import time\nt = time.process_time()\n"
        "while time.process_time() - t < 3.0:\n    fib(18)\n")


def run(py, args, env=None):
    e = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SHADOWPROF")}
    e.update(env or {})
    return subprocess.run([py, *args], capture_output=True, text=True, env=e)


def child_cpu(py, args, env=None) -> float:
    t0 = os.times()
    p = run(py, args, env)
    t1 = os.times()
    assert p.returncode == 0, p.stderr
    return (t1.children_user - t0.children_user) + (t1.children_system - t0.children_system)


def child_run(py, args, cwd):
    """(wall ms, CPU ms) of one run of *py* *args*."""
    import resource

    def cpu():
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime
    e = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SHADOWPROF")}
    c0, t0 = cpu(), time.perf_counter()
    p = subprocess.run([py, *args], env=e, cwd=cwd, capture_output=True)
    assert p.returncode == 0, p.stderr
    return (time.perf_counter() - t0) * 1e3, (cpu() - c0) * 1e3


def instructions(py, args, cwd) -> int:
    """Instructions executed by *py* *args* (valgrind's callgrind, whole process)."""
    e = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SHADOWPROF")}
    out = os.path.join(cwd, "callgrind.out")
    p = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        py, *args], env=e, cwd=cwd, capture_output=True, text=True)
    os.unlink(out)
    line = [l for l in p.stderr.splitlines() if "Collected :" in l][-1]
    return int(line.split(":")[-1])


def empty_program(py, runs, callgrind) -> None:
    with tempfile.TemporaryDirectory() as d:
        for name in ("empty.py", "emptymod.py"):
            open(os.path.join(d, name), "w").close()
        cases = [("python empty.py", ["empty.py"]),
                 ("python -X shadowprof=quiet empty.py",
                  ["-X", "shadowprof=quiet", "empty.py"]),
                 ("python -m emptymod (the -m mechanism alone)", ["-m", "emptymod"]),
                 ("python -m shadowprof -q empty.py",
                  ["-m", "shadowprof", "-q", "empty.py"])]
        for _, args in cases:   # warm the page cache; write nothing in the results
            child_run(py, args, d)
        res = [[] for _ in cases]
        for i in range(runs):   # interleaved, the order reversed every other round
            order = range(len(cases)) if i % 2 == 0 else reversed(range(len(cases)))
            for j in order:
                res[j].append(child_run(py, cases[j][1], d))
        print(f"empty program, median of {runs} paired runs (difference to "
              "`python empty.py` within each pair):")
        print("| command | wall | paired wall diff | CPU | paired CPU diff |"
              + (" instructions | diff |" if callgrind else ""))
        print("|---|---|---|---|---|" + ("---|---|" if callgrind else ""))
        base_i = None
        for (name, args), r in zip(cases, res):
            dw = statistics.median(a[0] - b[0] for a, b in zip(r, res[0]))
            dc = statistics.median(a[1] - b[1] for a, b in zip(r, res[0]))
            row = (f"| `{name}` | {statistics.median(a[0] for a in r):.1f} ms | "
                   f"{dw:+.1f} ms | {statistics.median(a[1] for a in r):.1f} ms | "
                   f"{dc:+.1f} ms |")
            if callgrind:
                n = instructions(py, args, d)
                base_i = n if base_i is None else base_i
                row += f" {n / 1e6:.1f} M | {(n - base_i) / 1e6:+.1f} M |"
            print(row)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("python")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--only-empty", action="store_true",
                    help="measure the empty program only")
    ap.add_argument("--callgrind", action="store_true",
                    help="also count instructions of the empty-program runs (valgrind)")
    opts = ap.parse_args()
    py = opts.python
    empty_program(py, opts.runs, opts.callgrind)
    if opts.only_empty:
        return
    site = run(py, ["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
               ).stdout.strip()
    pth = os.path.join(site, "shadowprof.pth")
    assert os.path.exists(pth), f"no {pth}"

    code = ("import site, time\nbest = 1e9\n"
            "for _ in range(5):\n    t = time.perf_counter()\n"
            "    for _ in range(1000): site.addpackage(%r, 'shadowprof.pth', set())\n"
            "    best = min(best, (time.perf_counter() - t) / 1000)\n"
            "print(best * 1e6)\n") % site
    print(f"hook cost (site.addpackage of shadowprof.pth): "
          f"{float(run(py, ['-c', code]).stdout):.1f} us")

    p = run(py, ["-X", "importtime", "-c", "pass"])
    ours = [l for l in p.stderr.splitlines() if "shadowprof" in l]
    print(f"-X importtime lines naming shadowprof without the flag: {len(ours)}")

    saved = pth + ".off"
    with_pth, without = [], []
    for _ in range(opts.runs):
        for lst, on in ((with_pth, True), (without, False)):
            if not on:
                shutil.move(pth, saved)
            try:
                t = time.perf_counter()
                run(py, ["-c", "pass"])
                lst.append(time.perf_counter() - t)
            finally:
                if not on:
                    shutil.move(saved, pth)
    a, b = statistics.median(with_pth) * 1e3, statistics.median(without) * 1e3
    print(f"python -c pass: {a:.2f} ms with the .pth, {b:.2f} ms without "
          f"(median of {opts.runs}; difference {a - b:+.2f} ms)")

    runs = max(3, opts.runs // 10)
    with tempfile.TemporaryDirectory() as d:
        base, cont = [], []
        for _ in range(runs):
            base.append(child_cpu(py, ["-c", WORK]))
            cont.append(child_cpu(py, ["-c", WORK], {
                "SHADOWPROF": f"period=1s,keep=5,quiet,output={d}"}))
    # The workload stops after 3 s of its own CPU time, so the profiler's cost shows
    # as CPU time beyond those 3 s (start-up, hook, samples, the writer).
    mb, mc = statistics.median(base), statistics.median(cont)
    print(f"continuous mode (period=1s, 10 ms interval): process CPU {mc:.3f} s vs "
          f"{mb:.3f} s unprofiled for the same 3 s workload loop, median of {runs}")
    print("  note: the loop runs for 3 s of CPU whatever the overhead; the profiled "
          "run's fib rate is the real measure:")
    rate = ("def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"
            "import time\nt = time.process_time(); n = 0\n"
            "while time.process_time() - t < 2.0:\n    fib(18); n += 1\n"
            "print(n)\n")
    with tempfile.TemporaryDirectory() as d:
        r0, r1 = [], []
        for _ in range(runs):
            r0.append(int(run(py, ["-c", rate]).stdout))
            r1.append(int(run(py, ["-c", rate], {
                "SHADOWPROF": f"period=1s,keep=5,quiet,output={d}"}).stdout))
    m0, m1 = statistics.median(r0), statistics.median(r1)
    print(f"  fib(18) per 2 s of CPU: {m1} profiled vs {m0} unprofiled: overhead "
          f"{100 * (m0 / m1 - 1):.1f}%")


if __name__ == "__main__":
    main()
