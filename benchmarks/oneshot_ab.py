"""One-shot shadowprof against the bare PEP 523 mechanism, inside one process.

The production table (production.py) compares separate processes; on a shared host
their CPU time can vary by 10-25% from one process to the next (2026-12-04: the
unprofiled `oo` at size 8 took 0.93-1.56 s), far more than the 5% being checked.
This harness runs one process: rounds of three blocks of the same work (a program
of benchmarks/production/ at a SIZE), each block under one configuration, the order
rotated in every round:

- ``none``: the program alone;
- ``mechanism``: under hookcost's ``eval_pass`` (an evaluation function that only
  calls CPython's own: what any exact per-call hook pays on 3.11, where CPython
  stops inlining Python calls once one is set);
- ``shadowprof``: ``Profiler().start()`` (10 ms CPU sampling, the hook, the timers),
  the work, ``stop(profile=False)``: one-shot's steady cost without the output.

Per round, the ratio of each block's process CPU time (every thread) to the others
of the same round: slow drifts of the host cancel.  Reported: the median and the
quartiles over rounds of shadowprof/mechanism, mechanism/none and shadowprof/none.

    VENV/bin/python benchmarks/oneshot_ab.py HOOKCOST_DIR [--program calls]
        [--size 4] [--rounds 12] [--json FILE]

HOOKCOST_DIR: benchmarks/hookcost/build.sh DIR PYTHON.  VENV: an interpreter with
shadowprof importable.  CPython 3.9-3.11 (the mechanism is a PEP 523 evaluator).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from continuous_ab import load   # noqa: E402  (one loader for both harnesses)

CONFIGS = ("none", "mechanism", "shadowprof")


def block(program, size, config, hookcost):
    """Process CPU ns of one block of work under config.  The program is compiled
    afresh for each block: on 3.11 a call specialised while no evaluation function
    was set stays inlined after one is, so the mechanism must meet new code, as it
    does in a process it starts with (shadowprof's hook deals with code that ran
    before it, pep523.c)."""
    run = load(program, size)
    t = time.process_time_ns()
    if config == "mechanism":
        hookcost.install("eval_pass")
        try:
            run()
        finally:
            hookcost.uninstall()
    elif config == "shadowprof":
        import shadowprof
        p = shadowprof.Profiler().start()
        try:
            run()
        finally:
            p.stop(profile=False)
    else:
        run()
    return time.process_time_ns() - t


def quartiles(values):
    v = sorted(values)
    q = len(v) // 4
    return statistics.median(v), v[q], v[-1 - q]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("hookcost", help="directory holding the hookcost extension")
    ap.add_argument("--program", default="calls",
                    help="a program of benchmarks/production/ (default calls)")
    ap.add_argument("--size", type=int, default=4,
                    help="its SIZE per block (units of about 0.5 s; default 4)")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--json", help="write the raw blocks here")
    args = ap.parse_args(argv)
    if sys.version_info >= (3, 12):
        ap.error("the mechanism is a PEP 523 evaluator: CPython 3.9-3.11 only")

    sys.path.insert(0, args.hookcost)
    import hookcost
    import shadowprof   # noqa: F401  (fail before the first block if missing)
    block(args.program, 1, "none", hookcost)         # first imports
    block(args.program, 1, "shadowprof", hookcost)   # shadowprof's first start
    rows = []
    for i in range(args.rounds):
        order = CONFIGS[i % 3:] + CONFIGS[:i % 3]
        if i // 3 % 2:
            order = order[::-1]
        row = {c: block(args.program, args.size, c, hookcost) for c in order}
        rows.append(row)
        print(f"round {i}: " + ", ".join(f"{c} {row[c] / 1e9:.3f} s" for c in CONFIGS)
              + f" (shadowprof/mechanism {row['shadowprof'] / row['mechanism']:.3f})",
              flush=True)
    print(f"\n{args.program} x {args.size}, {args.rounds} rounds, CPython "
          f"{platform.python_version()}: median (quartiles) of the per-round ratios")
    for a, b in (("shadowprof", "mechanism"), ("mechanism", "none"),
                 ("shadowprof", "none")):
        m, lo, hi = quartiles([r[a] / r[b] for r in rows])
        print(f"  {a}/{b}: {m:.3f}x ({lo:.3f} .. {hi:.3f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"program": args.program, "size": args.size,
                       "python": platform.python_version(),
                       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       "loadavg": os.getloadavg(), "rounds": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
