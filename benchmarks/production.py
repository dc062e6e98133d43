#!/usr/bin/env python3
"""Production table: what each profiler costs a whole process, side by side.

    python3 benchmarks/production.py VENV_PYTHON [--reps 3] [--period 2s]
        [--workloads calls,oo,gens] [--configs ...] [--startup-runs 30]
        [--out results/production.json] [--md production.md]

Workloads: calls, oo, gens (the default set) and text (held out: written after the
profiler was tuned on the others; --workloads calls,oo,gens,text).

VENV_PYTHON: a venv with shadowprof (and shadowprof.pth) and the peers installed
(pip install py-spy pyinstrument ddtrace austin-dist==3.7.0).  Each workload in
benchmarks/production/ takes a SIZE (units of about 0.5 s of CPU each); every config
runs every workload at size 2 and at size 8, interleaved (each repetition runs every
cell once, in an order rotated per repetition).  For each run: wall time around the
whole process, and the CPU time (user + sys) of the whole process tree
(RUSAGE_CHILDREN deltas; out-of-process samplers burn the second core and are
counted).  Reported per config (geometric mean over the workloads):

- whole-process ratio: wall time at size 8 over the unprofiled one (start-up,
  profiler start-up and output included: what a command-line user pays);
- CPU ratio at size 8 (the same, CPU of the process tree);
- steady-state ratio: (CPU at 8 - CPU at 2) over the unprofiled difference, which
  cancels every tool's start-up (what an always-on process pays).

The `mechanism` config runs the program under a do-nothing PEP 523 evaluator
(benchmarks/mechanism_run.py, built from benchmarks/hookcost): what any exact per-call
hook pays on 3.11; with it and `shadowprof` in one run the table ends with
shadowprof's ratios over it.

Also measured: start-up and exit cost on an empty program (median of paired
differences against the unprofiled run) of ``python -m shadowprof -q`` and
``python -X shadowprof=quiet``, with ``python -m empty`` for what ``-m`` itself
costs any module, and, for continuous mode, the cost shadowprof
reports in its own files (``shadowprof.window ... cost=``).
"""

import argparse
import gzip
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAMS = os.path.join(HERE, "production")
WORKLOADS = ("calls", "oo", "gens")
SIZES = (2, 8)

DD_ENV = {"DD_PROFILING_ENABLED": "true", "DD_TRACE_ENABLED": "false",
          "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
          "DD_PROFILING_MEMORY_ENABLED": "false", "DD_PROFILING_HEAP_ENABLED": "false",
          "DD_PROFILING_LOCK_ENABLED": "false"}

# name -> (argv template, extra environment, note).  {py} the interpreter, {bin} its
# directory, {out} an output prefix in the run's scratch directory, {prog} argv of
# the workload, {here} this directory, {hookcost} the hookcost extension's directory.
CONFIGS = {
    "none": ("{py} {prog}", {}, "unprofiled"),
    "mechanism": ("{py} {here}/mechanism_run.py {hookcost} {prog}", {},
                  "bare PEP 523 evaluator (hookcost eval_pass), no profiler"),
    "shadowprof": ("{py} -m shadowprof -q -o {out}.pb.gz {prog}", {},
                   "one-shot, 10 ms, pprof file at exit"),
    "shadowprof-continuous": ("{py} {prog}",
                              {"SHADOWPROF": "period={period},keep=0,quiet,output={out}"},
                              "continuous, budget=1% (default), 10 ms"),
    "ddtrace": ("{bin}/ddtrace-run {py} {prog}",
                dict(DD_ENV, DD_PROFILING_OUTPUT_PPROF="{out}.pprof"),
                "ddtrace's profiler, stack only"),
    "py-spy": ("{bin}/py-spy record -r 100 --nonblocking -f raw -o {out}.txt -- {py} {prog}",
               {}, "out of process, 100 Hz, --nonblocking"),
    "austin": ("{bin}/austin -t 1000 -i 10ms -o {out}.austin {py} {prog}", {},
               "out of process, 10 ms; failed attaches retried"),
    "pyinstrument": ("{py} -m pyinstrument -r text -o {out}.txt {prog}", {},
                     "setprofile hook, 1 ms"),
    "cprofile": ("{py} -m cProfile -o {out}.pstats {prog}", {}, "every call"),
}
RETRIES = {"austin": 4}


def run(argv, env, cwd, timeout=600):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=timeout)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return p.returncode, wall, cpu, p.stderr[-800:].decode("utf-8", "replace")


def base_env():
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "SHADOWPROF") and not k.startswith("DD_")}


def build_hookcost(py, scratch):
    """The hookcost extension for py, built into scratch (the `mechanism` config)."""
    directory = os.path.join(scratch, "hookcost")
    subprocess.run(["bash", os.path.join(HERE, "hookcost", "build.sh"), directory, py],
                   check=True, stdout=subprocess.DEVNULL)
    return directory


def one_cell(config, workload, size, py, period, scratch, hookcost=""):
    template, extra, _ = CONFIGS[config]
    out = os.path.join(scratch, "out")
    values = {"py": py, "bin": os.path.dirname(py), "out": out, "period": period,
              "here": HERE, "hookcost": hookcost}
    prog = f"{os.path.join(PROGRAMS, workload + '.py')} {size}"
    argv = template.format(prog=prog, **values).split()
    env = base_env()
    env.update({k: v.format(**values) for k, v in extra.items()})
    if config == "shadowprof-continuous":
        os.makedirs(out, exist_ok=True)
    failures = 0
    for _ in range(RETRIES.get(config, 0) + 1):
        rc, wall, cpu, err = run(argv, env, scratch)
        if rc == 0:
            break
        failures += 1
    res = {"rc": rc, "wall": wall, "cpu": cpu, "failures": failures}
    if rc != 0:
        res["stderr"] = err
    if config == "shadowprof-continuous" and rc == 0:
        res["windows"] = window_costs(out)
    return res


def window_costs(directory):
    """(window_s, duty, cost share) of each continuous-mode file, as it says."""
    sys.path.insert(0, os.path.dirname(HERE))
    rows = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".pb.gz"):
            continue
        data = gzip.decompress(open(os.path.join(directory, name), "rb").read())
        for line in data.split(b"shadowprof.window ")[1:]:
            fields = dict(kv.split("=", 1) for kv in
                          line.split(b"\n")[0].decode("ascii", "replace").split()
                          if "=" in kv)
            try:
                rows.append((float(fields["window_s"]), float(fields["duty"]),
                             float(fields["cost"].rstrip("\x00")),
                             "partial" in fields))
            except (KeyError, ValueError):
                pass
    return rows


def startup(py, runs, scratch):
    """Median of paired differences (ms) against the unprofiled empty program.
    ``python -m empty`` is what ``python -m`` itself costs (runpy and its imports),
    which ``-m shadowprof`` pays before any code of shadowprof's runs."""
    empty = os.path.join(scratch, "empty.py")
    with open(empty, "w") as f:
        f.write("pass\n")
    variants = {"-m empty (python -m itself)": [py, "-m", "empty"],
                "-m shadowprof -q": [py, "-m", "shadowprof", "-q", empty],
                "-m shadowprof -q -o F.pprof": [py, "-m", "shadowprof", "-q", "-o",
                                                os.path.join(scratch, "empty.pprof"), empty],
                "-X shadowprof=quiet": [py, "-X", "shadowprof=quiet", empty]}
    diffs = {k: [] for k in variants}
    cpu_diffs = {k: [] for k in variants}
    base = []
    env = base_env()
    for i in range(runs):
        for name, argv in variants.items():
            pair = [("none", [py, empty]), (name, argv)]
            if i % 2:
                pair.reverse()
            got = {}
            for label, a in pair:
                rc, wall, cpu, err = run(a, env, scratch)
                assert rc == 0, err
                got[label] = (wall, cpu)
            diffs[name].append(1e3 * (got[name][0] - got["none"][0]))
            cpu_diffs[name].append(1e3 * (got[name][1] - got["none"][1]))
            base.append(got["none"][0])
    return {"runs": runs, "empty_ms": 1e3 * statistics.median(base),
            **{k: {"wall_ms": statistics.median(v),
                   "cpu_ms": statistics.median(cpu_diffs[k])} for k, v in diffs.items()}}


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else float("nan")


def summarize(cells, configs, workloads):
    def med(c, w, s, key):
        vals = [r[key] for r in cells.get(f"{c}|{w}|{s}", []) if r["rc"] == 0]
        return statistics.median(vals) if vals else None

    rows = {}
    for c in configs:
        whole, cpu8, steady, per = [], [], [], {}
        for w in workloads:
            small, large = SIZES
            n8w, c8w = med("none", w, large, "wall"), med(c, w, large, "wall")
            n8, n2 = med("none", w, large, "cpu"), med("none", w, small, "cpu")
            c8, c2 = med(c, w, large, "cpu"), med(c, w, small, "cpu")
            if None in (n8w, c8w, n8, n2, c8, c2):
                per[w] = None
                continue
            r = (c8w / n8w, c8 / n8, (c8 - c2) / (n8 - n2))
            per[w] = r
            whole.append(r[0])
            cpu8.append(r[1])
            steady.append(r[2])
        failures = sum(r.get("failures", 0) for k, v in cells.items()
                       if k.startswith(c + "|") for r in v)
        rows[c] = {"whole": geomean(whole), "cpu": geomean(cpu8),
                   "steady": geomean(steady), "per": per, "failures": failures}
    return rows


def markdown(data):
    rows = summarize(data["cells"], data["configs"], data["workloads"])
    wl = data["workloads"]
    out = []
    small, large = SIZES
    out.append(f"| profiler | whole-process ratio (wall, size {large}) | CPU ratio (process "
               f"tree, size {large}) | steady-state ratio (CPU {large} - CPU {small}) | " +
               " | ".join(f"steady, {w}" for w in wl) + " | note |")
    out.append("|---" * (5 + len(wl)) + "|")
    for c in data["configs"]:
        r = rows[c]
        per = " | ".join("-" if r["per"].get(w) is None else f"{r['per'][w][2]:.3f}x"
                         for w in wl)
        note = CONFIGS[c][2]
        if r["failures"]:
            note += f" ({r['failures']} failed attempts retried)"
        out.append(f"| `{c}` | {r['whole']:.3f}x | {r['cpu']:.3f}x | "
                   f"**{r['steady']:.3f}x** | {per} | {note} |")
    if "mechanism" in rows and "shadowprof" in rows:
        m, p = rows["mechanism"], rows["shadowprof"]
        per = ", ".join(f"{w} {p['per'][w][2] / m['per'][w][2]:.3f}x" for w in wl
                        if p["per"].get(w) and m["per"].get(w))
        out.append(f"\n`shadowprof` over `mechanism`: whole-process "
                   f"{p['whole'] / m['whole']:.3f}x, steady {p['steady'] / m['steady']:.3f}x "
                   f"({per})")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("python")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--period", default="2s")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--startup-runs", type=int, default=30)
    ap.add_argument("--sizes", default="2,8",
                    help="the small and the large size (default 2,8): the steady-state "
                         "ratio is (CPU at large - CPU at small) over the same unprofiled")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "production.json"))
    ap.add_argument("--md", default=None, help="also write the table here")
    opts = ap.parse_args()
    global SIZES
    SIZES = tuple(int(x) for x in opts.sizes.split(","))
    if len(SIZES) != 2 or not 0 < SIZES[0] < SIZES[1]:
        sys.exit(f"--sizes {opts.sizes!r}: give two sizes, small then large (2,8)")
    configs = opts.configs.split(",")
    workloads = opts.workloads.split(",")
    for c in configs:
        if c not in CONFIGS:
            sys.exit(f"unknown config {c!r}: choose from {', '.join(CONFIGS)}")
    cells: dict = {}
    load = os.getloadavg()
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="spprod-") as scratch:
        hookcost = build_hookcost(opts.python, scratch) if "mechanism" in configs else ""
        st = startup(opts.python, opts.startup_runs, scratch) if opts.startup_runs else None
        order = [(c, w, s) for w in workloads for s in SIZES for c in configs]
        for rep in range(opts.reps):
            k = rep * 7 % len(order)
            for c, w, s in order[k:] + order[:k]:
                cell = os.path.join(scratch, "cell")
                shutil.rmtree(cell, ignore_errors=True)
                os.makedirs(cell)
                res = one_cell(c, w, s, opts.python, opts.period, cell, hookcost)
                cells.setdefault(f"{c}|{w}|{s}", []).append(res)
                print(f"rep {rep} {c:22s} {w:6s} {s} rc={res['rc']} wall={res['wall']:.3f} "
                      f"cpu={res['cpu']:.3f}", flush=True)
    data = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t_start)),
            "minutes": (time.time() - t_start) / 60, "python": opts.python,
            "version": subprocess.run([opts.python, "-V"], capture_output=True,
                                      text=True).stdout.strip(),
            "platform": platform.platform(), "cpus": os.cpu_count(),
            "loadavg_before": load, "loadavg_after": os.getloadavg(),
            "reps": opts.reps, "period": opts.period, "sizes": list(SIZES),
            "configs": configs,
            "workloads": workloads, "startup": st, "cells": cells}
    os.makedirs(os.path.dirname(opts.out), exist_ok=True)
    with open(opts.out, "w") as f:
        json.dump(data, f, indent=1)
    table = markdown(data)
    print(table)
    if st:
        print(json.dumps(st, indent=1))
    if opts.md:
        with open(opts.md, "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
