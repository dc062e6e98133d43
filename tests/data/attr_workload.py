"""CPU-split workload for attribution tests.

Three functions burn CPU in short alternating chunks: one in a plain loop, one through
many tiny calls, one in string and dict work.  Run with --measure, it times each
function itself (unprofiled) and prints the shares as JSON.
"""
import json
import random
import sys
import time


def tiny(x):
    return x + 1


def burn_calls(n):
    s = 0
    for _ in range(n):
        s = tiny(s)
    return s


def burn_loop(n):
    s = 0
    for i in range(n):
        s += i * i % 7
    return s


def burn_str(n):
    d = {}
    for i in range(n):
        k = "k" + str(i % 97)
        d[k] = d.get(k, "") [:20] + "x"
    return len(d)


def main(seconds, measure):
    spent = {"burn_loop": 0.0, "burn_calls": 0.0, "burn_str": 0.0}
    work = [(burn_loop, 6000), (burn_calls, 4000), (burn_str, 2500)]
    clock = time.process_time
    end = clock() + seconds
    # Random order and lengths: a sampling timer must not alias with a periodic
    # workload (the kernel's tick is as regular as the loop would be).
    rng = random.Random()
    while clock() < end:
        rng.shuffle(work)
        for fn, base in work:
            n = int(base * rng.uniform(0.5, 1.5))
            if measure:
                t = clock()
                fn(n)
                spent[fn.__name__] += clock() - t
            else:
                fn(n)
    if measure:
        total = sum(spent.values())
        print(json.dumps({k: v / total for k, v in spent.items()}))


if __name__ == "__main__":
    main(float(sys.argv[1]), "--measure" in sys.argv)
