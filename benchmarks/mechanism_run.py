"""Run a program under the bare PEP 523 mechanism: an evaluation function that only
calls CPython's own (hookcost's "eval_pass", benchmarks/hookcost/hookcost.c).

    python benchmarks/mechanism_run.py HOOKCOST_DIR PROGRAM [ARGS...]

HOOKCOST_DIR holds the hookcost extension built for this interpreter
(benchmarks/hookcost/build.sh DIR PYTHON).  On 3.11 this is what any exact per-call
hook pays before doing any work: CPython stops inlining Python-to-Python calls once
an evaluation function is set.  The program runs as ``__main__`` through runpy, as
under ``python -m shadowprof``, so both pay the same start-up.
"""

import os
import runpy
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: mechanism_run.py HOOKCOST_DIR PROGRAM [ARGS...]")
    sys.path.insert(0, sys.argv[1])
    import hookcost
    hookcost.install("eval_pass")
    program = sys.argv[2]
    sys.argv = sys.argv[2:]
    sys.path[0] = os.path.dirname(os.path.abspath(program))
    runpy.run_path(program, run_name="__main__")


if __name__ == "__main__":
    main()
