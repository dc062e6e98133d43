"""Continuous mode's steady cost inside one process, against its own accounting.

The production table (production.py) compares separate processes; their CPU time
varies by a few percent from one process to the next here, as much as the 1% budget
being checked.  This harness runs one process: blocks of a fixed amount of work
(a program of benchmarks/production/ at a SIZE) alternate between the continuous
writer on (duty-cycled windows, ``budget``) and off, the order swapped in every
pair.  Per block: the CPU time of the whole process (every thread: the writer's
included) and, for blocks with the writer on, what its windows said they cost
(``PeriodicWriter.windows``: the hook's calibrated cost x exact calls, handler,
drain and the writer's own CPU time).  Reported:

- measured: median over pairs of (CPU on - CPU off) / CPU off: what the host pays;
- accounted: the windows' cost over the same CPU off: what the budget saw.

A block covers several periods and ends with the writer's close (the open window
is written), a cost the steady state would spread over more periods: the measured
figure is, if anything, high.

A cost that outlives the writer weighs on both kinds of block alike when they run
the same code: on CPython 3.12, before requicken.c, every function that ran in a window
lost its superinstructions for the rest of the process (about 3% on call-only code),
and the off blocks paid it as much as the on blocks.  ``--fresh`` compiles the program
afresh for every block (each block meets new code, as a process meets its code once):
the on blocks then pay what their windows leave behind, and the off blocks do not.

    VENV/bin/python benchmarks/continuous_ab.py [--program calls] [--size 16]
        [--pairs 10] [--period 2] [--budget 0.01] [--fresh] [--json FILE]

VENV: an interpreter with shadowprof importable (installed, or PYTHONPATH set to a
tools/devbuild.sh directory).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAMS = os.path.join(HERE, "production")


def load(program: str, size: int):
    """The program's code, run in a fresh namespace by each call (one code object:
    the functions' code is the same across blocks, as in a long-running process)."""
    path = os.path.join(PROGRAMS, program + ".py")
    with open(path) as f:
        code = compile(f.read(), path, "exec")

    def run():
        saved = sys.argv
        sys.argv = [path, str(size)]
        try:
            exec(code, {"__name__": "__main__", "__file__": path})
        finally:
            sys.argv = saved
    return run


def block(run, writer_args=None):
    """(process CPU ns of one block, its windows' accounted cost ns, windows)."""
    if writer_args is None:
        t = time.process_time_ns()
        run()
        return time.process_time_ns() - t, 0, 0
    from shadowprof.continuous import PeriodicWriter
    t = time.process_time_ns()
    w = PeriodicWriter(**writer_args).start()
    run()
    w.close()
    cpu = time.process_time_ns() - t
    return cpu, sum(c for _, _, c, _ in w.windows), len(w.windows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--program", default="calls",
                    help="a program of benchmarks/production/ (default calls)")
    ap.add_argument("--size", type=int, default=16,
                    help="its SIZE per block (units of about 0.5 s; default 16)")
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--period", type=float, default=2.0, help="seconds (default 2)")
    ap.add_argument("--budget", type=float, default=0.01, help="share (default 0.01)")
    ap.add_argument("--fresh", action="store_true",
                    help="compile the program afresh for every block")
    ap.add_argument("--json", help="write the raw blocks here")
    args = ap.parse_args(argv)

    import shadowprof   # noqa: F401  (fail before the first block if missing)
    run = load(args.program, args.size)
    run()   # warm up: specialisation, first imports
    out = tempfile.mkdtemp(prefix="sp-ab-")
    writer_args = dict(directory=out, period_s=args.period, keep=2, budget=args.budget,
                       session=dict(interval_ns=10_000_000, mode="cpu", hook="auto"))
    # the writer's first start imports and calibrates: not a steady-state cost
    block(load(args.program, 1), writer_args)
    rows = []
    for i in range(args.pairs):
        order = (True, False) if i % 2 == 0 else (False, True)
        pair = {}
        for on in order:
            if args.fresh:
                run = load(args.program, args.size)
            cpu, accounted, windows = block(run, writer_args if on else None)
            pair["on" if on else "off"] = (cpu, accounted, windows)
        rows.append(pair)
        on, off = pair["on"], pair["off"]
        print(f"pair {i}: off {off[0] / 1e9:.3f} s, on {on[0] / 1e9:.3f} s "
              f"({100 * (on[0] - off[0]) / off[0]:+.2f}%), accounted "
              f"{100 * on[1] / off[0]:.2f}% in {on[2]} windows", flush=True)
    measured = sorted((p["on"][0] - p["off"][0]) / p["off"][0] for p in rows)
    accounted = sorted(p["on"][1] / p["off"][0] for p in rows)
    q = len(measured) // 4
    print(f"\n{args.program} x {args.size}, period {args.period:g} s, budget "
          f"{100 * args.budget:g}%, {args.pairs} pairs"
          f"{', fresh code per block' if args.fresh else ''}, CPython "
          f"{platform.python_version()}")
    print(f"measured:  median {100 * statistics.median(measured):+.2f}% "
          f"(quartiles {100 * measured[q]:+.2f}% .. {100 * measured[-1 - q]:+.2f}%)")
    print(f"accounted: median {100 * statistics.median(accounted):.2f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"program": args.program, "size": args.size,
                       "period": args.period, "budget": args.budget,
                       "fresh": args.fresh,
                       "python": platform.python_version(),
                       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       "loadavg": os.getloadavg(), "pairs": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
