"""Call-only recursion workload: naive recursive Fibonacci (fib(27) x 20), nothing else.

Every sample lands in a deep stack of identical Python frames, and the work
is almost purely Python-to-Python calls, so it maximises per-call costs
(cProfile, yappi, pyinstrument's setprofile hook) and exercises deep-stack
unwinding in samplers.  ~1 s unprofiled on the reference machine (3.11).
"""
import sys


def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def main(n=27, reps=20):
    for _ in range(reps):
        r = fib(n)
    assert r == {25: 75025, 26: 121393, 27: 196418, 28: 317811}.get(n, r)
    return r


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
