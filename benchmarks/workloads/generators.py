"""Generator pipelines: chained generator functions, generator expressions
and itertools, i.e. many frames being suspended/resumed rather than called.
~1 s unprofiled on the reference machine (3.11).
"""
import itertools
import sys


def numbers(n):
    i = 0
    while i < n:
        yield i
        i += 1


def squares(it):
    for x in it:
        yield x * x


def only_odd(it):
    for x in it:
        if x & 1:
            yield x


def windows(it, size):
    buf = []
    for x in it:
        buf.append(x)
        if len(buf) == size:
            yield tuple(buf)
            buf.clear()


def running_sum(it):
    total = 0
    for w in it:
        total += sum(w)
        yield total


def pipeline(n):
    g = running_sum(windows(only_odd(squares(numbers(n))), 4))
    last = 0
    for last in g:
        pass
    return last


def genexp_pipeline(n):
    evens = (x for x in range(n) if x % 2 == 0)
    scaled = (x * 3 for x in evens)
    pairs = zip(scaled, itertools.count())
    return sum(a - b for a, b in pairs)


def main(n=300_000, reps=8):
    out = 0
    for _ in range(reps):
        out += pipeline(n)
        out += genexp_pipeline(n)
    return out


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
