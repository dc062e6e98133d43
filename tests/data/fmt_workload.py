"""Workload of the output-format tests (tests/test_formats_*.py): known exact calls
(burn 4, helper 7, tiny 70, fact 5 of which 4 recursive, worker 1) and most of the
CPU time in burn, in two threads."""

import threading
import time


def burn(seconds):
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1
    return n


def tiny(x):
    return x + 1


def helper(n):
    t = 0
    for i in range(n):
        t += tiny(i)
    return t


def fact(n):
    return 1 if n <= 1 else n * fact(n - 1)


def worker():
    burn(0.1)


def main():
    t = threading.Thread(target=worker, name="fmt-worker")
    t.start()
    for _ in range(3):
        burn(0.1)
    for _ in range(7):
        helper(10)
    fact(5)
    t.join()


if __name__ == "__main__":
    main()
