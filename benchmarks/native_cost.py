"""In-process A/B of --native's cost: the same CPU-bound work profiled with and
without native stacks, interleaved, median CPU time of this thread (the signal
handler's time is charged to the thread it interrupts, so it is included).

Usage: python benchmarks/native_cost.py [ROUNDS] [INTERVAL]
(shadowprof must be importable, e.g. PYTHONPATH=/tmp/dev-native.)
"""
import statistics
import sys
import time

from shadowprof import _core
from shadowprof.native import resolve_snapshot


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def work():
    fib(27)
    sorted(str(i) for i in range(600_000))


def run(native, interval_ns):
    t0 = time.thread_time()
    _core.start(interval_ns=interval_ns, native=native)
    work()
    _core.stop()
    t1 = time.thread_time()
    snap = _core.snapshot()
    resolve_snapshot(snap)
    t2 = time.thread_time()
    return t1 - t0, t2 - t1, snap["samples"]


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    interval_ns = int(float(sys.argv[2]) * 1e6) if len(sys.argv) > 2 else 10_000_000
    run(True, interval_ns)   # warm: libunwind's caches, the ELF symbol tables
    res = {False: [], True: []}
    for i in range(rounds):
        for native in ((False, True) if i % 2 else (True, False)):
            res[native].append(run(native, interval_ns))
    for native in (False, True):
        runs = res[native]
        print(f"native={native!s:5}  run {statistics.median(r[0] for r in runs) * 1e3:7.1f} ms"
              f"  symbolize {statistics.median(r[1] for r in runs) * 1e3:6.1f} ms"
              f"  samples {statistics.median(r[2] for r in runs):5.0f}")
    off = statistics.median(r[0] for r in res[False])
    on = statistics.median(r[0] for r in res[True])
    samples = statistics.median(r[2] for r in res[True])
    print(f"added: {(on - off) * 1e3:.1f} ms ({(on / off - 1) * 100:+.1f}%), "
          f"~{(on - off) / max(samples, 1) * 1e6:.0f} us per sample")


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)
    main()
