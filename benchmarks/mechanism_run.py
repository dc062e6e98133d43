"""Run a program under the bare PEP 523 mechanism: an evaluation function that only
calls CPython's own (hookcost's "eval_pass", benchmarks/hookcost/hookcost.c); or,
with --hook, under shadowprof's hook alone (no timers, no output), for instruction
counts of the whole program against the mechanism.

    python benchmarks/mechanism_run.py [--hook] HOOKCOST_DIR PROGRAM [ARGS...]

HOOKCOST_DIR holds the hookcost extension built for this interpreter
(benchmarks/hookcost/build.sh DIR PYTHON).  On 3.11 this is what any exact per-call
hook pays before doing any work: CPython stops inlining Python-to-Python calls once
an evaluation function is set.  The program runs as ``__main__`` through runpy, as
under ``python -m shadowprof``, so both pay the same start-up.  For example, the
instructions of the steady state (size 2 minus size 1) under each:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python3.11 \\
        benchmarks/mechanism_run.py [--hook] DIR benchmarks/production/calls.py 1   # and 2
"""

import os
import runpy
import sys


def main():
    args = sys.argv[1:]
    hook = args[:1] == ["--hook"]
    if hook:
        args = args[1:]
    if len(args) < 2:
        sys.exit("usage: mechanism_run.py [--hook] HOOKCOST_DIR PROGRAM [ARGS...]")
    if hook:
        import shadowprof._core
        shadowprof._core._set_hook(True, "auto")
    else:
        sys.path.insert(0, args[0])
        import hookcost
        hookcost.install("eval_pass")
    program = args[1]
    sys.argv = args[1:]
    sys.path[0] = os.path.dirname(os.path.abspath(program))
    runpy.run_path(program, run_name="__main__")


if __name__ == "__main__":
    main()
