"""What continuous mode no longer pays per window: the _core.snapshot() it took to
size the window and write its note (now the C writer's totals), and walking every
shadowprof module for its own code ids (now once per module).  CPU time of the
calling thread, median of --reps, over the made-up table of benchmarks/writer.py.

    PYTHONPATH=/tmp/spdev python3.11 benchmarks/window_cost.py [--stacks 2000]
"""

import argparse
import statistics
import sys
import time

import writer
from shadowprof import _core, continuous


def cpu_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.thread_time_ns()
        fn()
        times.append(time.thread_time_ns() - t)
    return statistics.median(times) / 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stacks", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args(argv)
    writer.fill(args.stacks)
    print(f"{_core.memory()['table_stacks']} stacks, median of {args.reps}")
    print(f"_core.snapshot(): {cpu_ms(_core.snapshot, args.reps):.2f} ms CPU")
    t = time.thread_time_ns()
    continuous._own_code_ids()
    print(f"_own_code_ids(), first call: {(time.thread_time_ns() - t) / 1e6:.2f} ms CPU; "
          f"later calls: {cpu_ms(continuous._own_code_ids, args.reps):.3f} ms CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
