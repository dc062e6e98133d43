"""Call-only: recursive Fibonacci, SIZE units of fib(22) x 40 (about 0.5 s each on
CPython 3.11 here).  Usage: python calls.py SIZE"""
import sys


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


for _ in range(int(sys.argv[1]) * 40):
    fib(22)
