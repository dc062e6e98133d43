"""CPython 3.12's lost superinstructions, counted in instructions (no timing noise).

sys.monitoring's instrumentation takes a code object's superinstructions out (3.12
forms them once, when the code is created) and its de-instrumentation does not put
them back: code that ran while shadowprof's events were on runs slower for the rest
of the process unless requicken.c forms them again.  This harness counts, under
callgrind, the instructions per call of a small recursive function (fib) in three
states:

- ``fresh``: never instrumented;
- ``after``: after one ``Profiler().start()`` / ``stop()`` during which it ran
  (sys.monitoring backend);
- ``requickened``: the same, then ``_core._requicken()`` (what continuous mode does
  after each window).

Per state, the difference of two runs (REPS and 2 x REPS calls of fib(20)) cancels
start-up; divided by the calls.

    python3 benchmarks/requicken_instr.py PYTHON_3_12 [--reps 20]

PYTHON_3_12: an interpreter with shadowprof importable (PYTHONPATH is passed on).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

FIB_CALLS = 21891   # calls of fib made by fib(20)

WORKER = """
import sys
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
state, reps = sys.argv[1], int(sys.argv[2])
fib(20)   # specialised before anything else happens
if state != "fresh":
    import shadowprof
    from shadowprof import _core
    p = shadowprof.Profiler(hook="monitoring").start()
    fib(20)
    p.stop(profile=False)
    fib(20)   # CPython takes the instrumentation out as the code next starts
    if state == "requickened":
        _core._requicken()
for _ in range(reps):
    fib(20)
"""


def instructions(python, state, reps):
    with tempfile.TemporaryDirectory() as tmp:
        worker = os.path.join(tmp, "worker.py")
        with open(worker, "w") as f:
            f.write(WORKER)
        p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                            python, worker, state, str(reps)],
                           capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"requicken_instr: {state} x {reps} failed:\n{p.stderr[-2000:]}")
    m = re.search(r"Collected : (\d+)", p.stderr)
    if not m:
        sys.exit("requicken_instr: no instruction count in callgrind's output")
    return int(m.group(1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("python", help="a CPython 3.12 with shadowprof importable")
    ap.add_argument("--reps", type=int, default=20, help="fib(20) calls per unit")
    args = ap.parse_args(argv)
    per = {}
    for state in ("fresh", "after", "requickened"):
        one = instructions(args.python, state, args.reps)
        two = instructions(args.python, state, 2 * args.reps)
        per[state] = (two - one) / (args.reps * FIB_CALLS)
        print(f"{state:12s} {per[state]:8.1f} instructions per call", flush=True)
    print(f"after / fresh {per['after'] / per['fresh']:.4f}, "
          f"requickened / fresh {per['requickened'] / per['fresh']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
