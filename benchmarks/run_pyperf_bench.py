#!/usr/bin/env python3
"""Run one pyperformance benchmark program standalone, without pyperf's Runner.

    python run_pyperf_bench.py NAME [--loops N]
    python run_pyperf_bench.py --list

pyperformance's ``bm_*/run_benchmark.py`` programs are written for
``pyperf.Runner``, which spawns worker processes, calibrates and loops on its
own -- under a profiler that means profiling the wrong process (or many).
This wrapper loads the program as an ordinary module (so its ``__main__``
block does not run), then calls the benchmark's core function directly a
fixed number of times, in this single process.

The programs ``import pyperf`` but (for the ones picked here) only use
``pyperf.perf_counter`` outside the Runner.  To keep pyperf's fairly heavy
import (~0.15 s: statistics, json, ...) out of every measured run, a tiny
stand-in module is installed as ``pyperf``; any other attribute falls
through to the real pyperf (so it is still needed for those).

The loop counts below are tuned so that one unprofiled run takes roughly
1-2 s of wall time on the reference machine (2-core VM, CPython 3.11).
"""
import argparse
import importlib.util
import os
import sys
import time
import types


def _install_pyperf_stub():
    stub = types.ModuleType("pyperf")
    stub.perf_counter = time.perf_counter

    class Runner:  # pragma: no cover - only hit if a program misuses it
        def __init__(self, *a, **k):
            raise RuntimeError("pyperf.Runner is not available in run_pyperf_bench.py")

    stub.Runner = Runner

    def __getattr__(name):
        # Anything else: import the real pyperf and forward.
        del sys.modules["pyperf"]
        real = importlib.import_module("pyperf")
        return getattr(real, name)

    stub.__getattr__ = __getattr__
    sys.modules["pyperf"] = stub


def benchmarks_dir():
    override = os.environ.get("PYPERFORMANCE_BENCHMARKS")
    if override:
        return override
    spec = importlib.util.find_spec("pyperformance")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("run_pyperf_bench: pyperformance is not installed "
                 "(run benchmarks/setup.sh, or set PYPERFORMANCE_BENCHMARKS)")
    return os.path.join(list(spec.submodule_search_locations)[0],
                        "data-files", "benchmarks")


def load(name):
    path = os.path.join(benchmarks_dir(), "bm_" + name, "run_benchmark.py")
    if not os.path.exists(path):
        sys.exit(f"run_pyperf_bench: no such benchmark program: {path}")
    modname = "bm_" + name
    spec = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    return mod


class _StubRunner:
    """Stands in for pyperf.Runner where a program's setup lives in a
    function that takes a runner (chaos): bench_func just calls the
    function ``loops`` times."""

    def __init__(self, loops):
        self.loops = loops
        self.metadata = {}

    def bench_func(self, name, func, *args):
        for _ in range(self.loops):
            func(*args)


# name -> (default loops, function(mod, loops) running the work once per loop)
def _richards(m, loops):
    r = m.Richards()
    for _ in range(loops):
        r.run(1)


def _nbody(m, loops):
    m.bench_nbody(loops, m.DEFAULT_REFERENCE, m.DEFAULT_ITERATIONS)


def _deltablue(m, loops):
    for _ in range(loops):
        m.delta_blue(100)


def _raytrace(m, loops):
    m.bench_raytrace(loops, m.DEFAULT_WIDTH, m.DEFAULT_HEIGHT, None)


def _chaos(m, loops):
    args = types.SimpleNamespace(
        thickness=m.DEFAULT_THICKNESS, width=m.DEFAULT_WIDTH,
        height=m.DEFAULT_HEIGHT, iterations=m.DEFAULT_ITERATIONS,
        filename=None, rng_seed=m.DEFAULT_RNG_SEED)
    m.main(_StubRunner(loops), args)


def _go(m, loops):
    for _ in range(loops):
        m.versus_cpu()


def _hexiom(m, loops):
    m.main(loops, m.DEFAULT_LEVEL)


def _float(m, loops):
    for _ in range(loops):
        m.benchmark(m.POINTS)


def _fannkuch(m, loops):
    for _ in range(loops):
        m.fannkuch(m.DEFAULT_ARG)


def _spectral_norm(m, loops):
    m.bench_spectral_norm(loops)


def _nqueens(m, loops):
    for _ in range(loops):
        m.bench_n_queens(8)


def _json_dumps(m, loops):
    data = [(getattr(m, case)[0], range(getattr(m, case)[1])) for case in m.CASES]
    for _ in range(loops):
        m.bench_json_dumps(data)


def _pyflate(m, loops):
    path = os.path.join(os.path.dirname(m.__file__), "data", "interpreter.tar.bz2")
    m.bench_pyflake(loops, path)


BENCHMARKS = {
    # name:         (loops, runner)
    "richards":      (9, _richards),
    "nbody":         (6, _nbody),
    "deltablue":     (120, _deltablue),
    "raytrace":      (1, _raytrace),
    "chaos":         (6, _chaos),
    "go":            (4, _go),
    "hexiom":        (70, _hexiom),
    "float":         (5, _float),
    "fannkuch":      (1, _fannkuch),
    "spectral_norm": (4, _spectral_norm),
    "nqueens":       (5, _nqueens),
    "json_dumps":    (33, _json_dumps),
    "pyflate":       (1, _pyflate),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("name", nargs="?", help="benchmark name (e.g. richards)")
    p.add_argument("--loops", type=int, help="override the fixed loop count")
    p.add_argument("--list", action="store_true", help="list benchmarks")
    p.add_argument("--time", action="store_true",
                   help="print the in-process time of the work to stderr")
    a = p.parse_args(argv)
    if a.list or not a.name:
        for n, (loops, _) in BENCHMARKS.items():
            print(f"{n} {loops}")
        return 0
    if a.name not in BENCHMARKS:
        sys.exit(f"run_pyperf_bench: unknown benchmark {a.name!r}; "
                 f"known: {', '.join(BENCHMARKS)}")
    loops, fn = BENCHMARKS[a.name]
    if a.loops is not None:
        loops = a.loops
    _install_pyperf_stub()
    mod = load(a.name)
    t0 = time.perf_counter()
    fn(mod, loops)
    if a.time:
        print(f"{a.name}: {loops} loops in {time.perf_counter() - t0:.3f} s",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
