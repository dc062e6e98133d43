"""Stress the hook and the signal path: many threads starting and ending, deep
recursion past max_depth, exceptions, generators, short-lived code objects,
start/stop loops (also while other threads run, start and end), high sampling rates.
Exits 0 only if every exact count is right."""
import sys
import threading
import time

import shadowprof
from shadowprof import _core


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def deep(n):
    return 0 if n == 0 else 1 + deep(n - 1)


def raiser(n):
    if n == 0:
        raise KeyError(n)
    try:
        return raiser(n - 1)
    finally:
        pass


def gen(n):
    for i in range(n):
        yield i


def churn(k):
    total = 0
    for i in range(k):
        ns = {}
        exec(f"def f_{i}(x):\n    return x + {i}\n", ns)
        total += ns[f"f_{i}"](1)
        total += (lambda y: y * 2)(i)
    return total


def worker(rounds):
    for _ in range(rounds):
        fib(12)
        deep(300)
        try:
            raiser(30)
        except KeyError:
            pass
        sum(gen(50))
        churn(20)


def main_only(n):
    return n


def live_threads(failures, rounds=300):
    """Start and stop while other threads run and are being born and dying, and keep
    them running after the last stop (a timer signal still queued for one of them
    must not kill the process).  The main thread's calls stay exact in every round,
    and each long-lived thread is sampled in some round."""
    done = threading.Event()

    def spin():
        while not done.is_set():
            fib(9)

    def churn():
        while not done.is_set():
            batch = [threading.Thread(target=fib, args=(7,)) for _ in range(4)]
            for t in batch:
                t.start()
            for t in batch:
                t.join()

    spinners = [threading.Thread(target=spin) for _ in range(3)]
    others = [threading.Thread(target=churn) for _ in range(2)]
    for t in spinners + others:
        t.start()
    seen = set()
    for i in range(rounds):
        mode = ("cpu", "wall")[i % 2]
        with shadowprof.Profiler(interval="200us", mode=mode,
                                 correct_overhead=False) as prof:
            for k in range(50):
                main_only(k)
            fib(14)
        p = prof.profile
        if calls(p, "main_only") != 50:
            failures.append(("live threads", i, "main_only", calls(p, "main_only")))
        seen.update(s.thread_id for s in p.stacks)
    time.sleep(0.5)   # still running, the profiler stopped
    done.set()
    for t in spinners + others:
        t.join()
    unseen = [t.native_id for t in spinners if t.native_id not in seen]
    if unseen:
        failures.append(("live threads never sampled", unseen))
    print("live threads: rounds", rounds, "threads seen", len(seen))


def calls(profile, name):
    return sum(n for fid, n in profile.calls.items()
               if profile.functions[fid].name == name)


def main():
    sys.setrecursionlimit(10000)
    failures = []
    for mode, interval in (("cpu", "1ms"), ("wall", "200us")):
        with shadowprof.Profiler(interval=interval, mode=mode, max_depth=256) as prof:
            threads = []
            for wave in range(4):
                batch = [threading.Thread(target=worker, args=(5,)) for _ in range(8)]
                for t in batch:
                    t.start()
                worker(5)
                for t in batch:
                    t.join()
                threads += batch
            deep(3000)
        p = prof.profile
        if calls(p, "fib") != 465 * 5 * 4 * 9:
            failures.append((mode, "fib", calls(p, "fib"), 465 * 5 * 4 * 9))
        if calls(p, "deep") != 301 * 5 * 4 * 9 + 3001:
            failures.append((mode, "deep", calls(p, "deep")))
        if calls(p, "raiser") != 31 * 5 * 4 * 9:
            failures.append((mode, "raiser", calls(p, "raiser")))
        if calls(p, "gen") != 51 * 5 * 4 * 9:
            failures.append((mode, "gen", calls(p, "gen")))
        if p.samples < 5:
            failures.append((mode, "samples", p.samples))
        print(mode, "samples", p.samples, "lost", p.lost, "stacks", len(p.stacks))
    live_threads(failures)
    for i in range(300):
        _core.start(interval_ns=200_000)
        fib(8)
        _core.stop()
        snap = _core.snapshot()
    if failures:
        print("FAILURES", failures)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
