"""A small deterministic program for the -X shadowprof / SHADOWPROF tests: prints a
result on stdout and exits with the code given as its first argument."""
import sys


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def main():
    total = 0
    for _ in range(5):
        total += fib(20)
    print(f"result {total}")
    return int(sys.argv[1]) if len(sys.argv) > 1 else 0


if __name__ == "__main__":
    sys.exit(main())
