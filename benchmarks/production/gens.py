"""Generators: pipelines of generator functions and expressions; SIZE units.
Usage: python gens.py SIZE"""
import sys


def numbers(n):
    for i in range(n):
        yield i


def evens(it):
    for x in it:
        if x % 2 == 0:
            yield x


def squares(it):
    for x in it:
        yield x * x


def unit():
    total = 0
    for _ in range(75):
        total += sum(squares(evens(numbers(20000))))
        total += sum(x for x in range(5000) if x % 3)
    return total


for _ in range(int(sys.argv[1])):
    unit()
