"""Start-up cost of the shadowprof.pth hook without the flag, and the overhead of
continuous mode.

    python3 benchmarks/startup.py VENV_PYTHON [--runs N]

VENV_PYTHON must have shadowprof and shadowprof.pth in its site-packages (`pip
install .`, or tests/data/canary_venv.py).  Prints:
- the hook's own cost: site.addpackage() on shadowprof.pth, best of 5 x 1000;
- `-X importtime` lines mentioning shadowprof without the flag (there should be none);
- interpreter start-up (python -c pass) with and without the .pth, median of N runs,
  interleaved (the difference is within the machine's noise);
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("python")
    ap.add_argument("--runs", type=int, default=30)
    opts = ap.parse_args()
    py = opts.python
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
