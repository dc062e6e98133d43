"""Workload of tests/test_native.py: two Python functions, each calling one of
native_burn's CPU-burning C functions, in a 1:2 split of CPU time.

Usage: native_workload.py EXT_DIR SECONDS OUT_JSON
EXT_DIR holds the native_burn extension.  Prints nothing; writes to OUT_JSON the CPU
time this thread spent in a() and b() and in main(), measured with thread_time, and
the line numbers of the two calls into C.
"""
import json
import sys
import time

sys.path.insert(0, sys.argv[1])
import native_burn  # noqa: E402

CALL_A = 21   # the lines of the two calls into C, checked below
CALL_B = 25


def a(n):
    return native_burn.burn_a(n)


def b(n):
    return native_burn.burn_b(n)


def rate(fn):
    """Rounds per CPU second of fn."""
    n = 200_000
    while True:
        t0 = time.thread_time()
        fn(n)
        dt = time.thread_time() - t0
        if dt > 0.02:
            return n / dt
        n *= 4


def main(seconds, ra, rb):
    spent = {"a": 0.0, "b": 0.0}
    t_main = time.thread_time()
    end = t_main + seconds
    while time.thread_time() < end:
        t0 = time.thread_time()
        a(int(ra * 0.02))
        t1 = time.thread_time()
        b(int(rb * 0.04))
        t2 = time.thread_time()
        spent["a"] += t1 - t0
        spent["b"] += t2 - t1
    spent["main"] = time.thread_time() - t_main
    return spent


if __name__ == "__main__":
    import inspect
    src = inspect.getsource(sys.modules[__name__]).splitlines()
    assert "burn_a" in src[CALL_A - 1] and "burn_b" in src[CALL_B - 1]
    rates = rate(native_burn.burn_a), rate(native_burn.burn_b)
    result = main(float(sys.argv[2]), *rates)
    result.update(call_a=CALL_A, call_b=CALL_B)
    with open(sys.argv[3], "w") as f:
        json.dump(result, f)
