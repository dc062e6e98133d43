"""Workload of tests/test_native.py's share test: native_burn.timed_a and timed_b,
called in turn from Python in chunks of about 3.5 and 1.5 ms of CPU time (a 70:30
split), each timing itself in C with the thread's CPU clock and the monotonic clock.
timed_a spends about half of its time inside the C library's memcpy.

Usage: native_split.py EXT_DIR SECONDS OUT_JSON [cpu|wall]
SECONDS of the thread's CPU time (cpu, the default) or of the monotonic clock (wall).
Writes native_burn.spent() at the end to OUT_JSON: the C functions' own CPU and wall
time over the whole run, calibration included ({"a_cpu": ns, "a_wall": ns, ...}).
"""
import json
import sys
import time

sys.path.insert(0, sys.argv[1])
import native_burn  # noqa: E402


def rate(fn, key):
    """Rounds per CPU second of fn, by the C clock."""
    n = 20_000
    while True:
        before = native_burn.spent()[key]
        fn(n)
        dt = (native_burn.spent()[key] - before) / 1e9
        if dt > 0.02:
            return n / dt
        n *= 4


def main(seconds, clock):
    na = int(rate(native_burn.timed_a, "a_cpu") * 0.0035)
    nb = int(rate(native_burn.timed_b, "b_cpu") * 0.0015)
    now = time.monotonic if clock == "wall" else time.thread_time
    end = now() + seconds
    while now() < end:
        native_burn.timed_a(na)
        native_burn.timed_b(nb)
    return native_burn.spent()


if __name__ == "__main__":
    with open(sys.argv[3], "w") as f:
        json.dump(main(float(sys.argv[2]), (sys.argv[4:] or ["cpu"])[0]), f)
