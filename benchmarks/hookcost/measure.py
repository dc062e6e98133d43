#!/usr/bin/env python3
"""Measure what each candidate shadow-stack hook mechanism costs per Python call.

Modes: none, eval_pass, eval_push, setprofile_push, monitoring_push (3.12+; see
hookcost.c) and shadowprof (the real hook: ``shadowprof._core._set_hook(True)``,
no sampling).  Workloads: recursive fib(25), a loop calling a tiny function 300k
times, a three-stage generator pipeline, a method-call-heavy class workload.

Two measurements per interpreter:

* wall time, in one process per workload: rounds of every mode, the order rotated
  each round; each mode is installed, the workload run once untimed (so the
  adaptive interpreter re-specialises under the mode), then once timed with
  time.perf_counter.  Reported: median over rounds of (mode time / none time of the
  same round), and its interquartile range.
* instructions, with callgrind (``valgrind --tool=callgrind
  --callgrind-out-file=/dev/null`` on the real interpreter binary): one process
  running the workload R1 times and one running it R2 times under the same mode;
  the difference of the two totals is (R2 - R1) steady-state repetitions, startup
  and warm-up cancel.  Divided by the exact number of calls per repetition (counted
  in a separate, uninstrumented run with a sys.setprofile counter of "call" events:
  Python function calls plus generator resumes) it gives instructions per call;
  minus the none figure, instructions per call added by the mode.

Usage (driver; any python3 runs it, the interpreters measured are given):
    python3 benchmarks/hookcost/measure.py \\
        --python /root/.pyenv/versions/3.11.7/bin/python3.11 [--python ...] \\
        [--rounds 15] [--cg-reps 1,2] [--jobs 2] [--no-callgrind] [--no-time] \\
        [--workloads fib,loop,gen,methods] [--build DIR] [--out FILE.md] [--json F]

The driver builds hookcost (build.sh) and shadowprof (tools/devbuild.sh) for each
interpreter under --build; a shadowprof build or import failure drops only that mode.
"""
import os
import sys

# Only os and sys at the top: workers run under callgrind, where every imported
# module is startup cost (it cancels in the difference, but costs wall time).

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

ALL_MODES = ["none", "eval_pass", "eval_push", "setprofile_push", "monitoring_push",
             "shadowprof", "shadowprof_eval", "shadowprof_monitoring"]
# shadowprof modes -> the hook= argument of _set_hook ("auto": this CPython's default).
SP_MODES = {"shadowprof": "auto", "shadowprof_eval": "eval",
            "shadowprof_monitoring": "monitoring"}

# ---- workloads (run inside the measured interpreter) -----------------------------


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def tiny(x):
    return x


def call_loop(n):
    f = tiny
    for i in range(n):
        f(i)


def src(n):
    for i in range(n):
        yield i


def double(it):
    for x in it:
        yield x * 2


def keep(it):
    for x in it:
        if x % 3:
            yield x


class Vec:
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x = x
        self.y = y

    def add(self, o):
        return Vec(self.x + o.x, self.y + o.y)

    def dot(self, o):
        return self.x * o.x + self.y * o.y

    @property
    def norm2(self):
        return self.dot(self)


def methods(n):
    acc = Vec(0, 0)
    one = Vec(1, 2)
    t = 0
    for _ in range(n):
        acc = acc.add(one)   # add, Vec.__init__
        t += acc.norm2       # property getter, dot
    return t


def w_fib():
    fib(25)


def w_loop():
    call_loop(300000)


def w_gen():
    sum(keep(double(src(100000))))


def w_methods():
    methods(50000)


WORKLOADS = {"fib": w_fib, "loop": w_loop, "gen": w_gen, "methods": w_methods}
WORKLOAD_DESC = {
    "fib": "recursive fib(25)",
    "loop": "loop calling a one-line function 300k times",
    "gen": "3-stage generator pipeline over 100k ints, consumed by sum()",
    "methods": "class workload: 50k x (method, __init__, property, method)",
}

# ---- modes (inside the measured interpreter) ---------------------------------------


class Modes:
    def __init__(self, modes=ALL_MODES):
        self.hc = None
        self.sp = None
        if any(m != "none" and m not in SP_MODES for m in modes):
            try:
                import hookcost
                self.hc = hookcost
            except ImportError:
                pass
        if any(m in SP_MODES for m in modes):
            try:
                import shadowprof._core   # the package imports nothing by itself
                self.sp = shadowprof
            except ImportError:
                pass

    def install(self, mode):
        if mode == "none":
            return
        if mode in SP_MODES:
            self.sp._core._set_hook(True, SP_MODES[mode])
        else:
            self.hc.install(mode)

    def uninstall(self, mode):
        if mode == "none":
            return
        if mode in SP_MODES:
            self.sp._core._set_hook(False)
        else:
            self.hc.uninstall()

    def available(self):
        out, why = [], {}
        for m in ALL_MODES:
            try:
                if m in SP_MODES and self.sp is None:
                    raise ImportError("shadowprof not importable")
                if m != "none" and m not in SP_MODES and self.hc is None:
                    raise ImportError("hookcost not importable")
                self.install(m)
                self.uninstall(m)
                out.append(m)
            except Exception as e:  # noqa: BLE001 - reported, mode dropped
                why[m] = "%s: %s" % (type(e).__name__, e)
        return out, why


def worker_probe(args):
    import json
    modes, why = Modes().available()
    print(json.dumps({"version": sys.version.split()[0], "full_version": sys.version,
                      "executable": sys.executable, "modes": modes, "unavailable": why}))


def worker_count(args):
    """Exact calls per repetition (setprofile 'call' events), and the frame entries
    each push mode records per repetition (a check that each sees every call)."""
    import json
    fn = WORKLOADS[args.workload]
    mm = Modes(args.modes.split(","))
    fn()
    n = 0

    def prof(frame, event, arg):
        nonlocal n
        if event == "call":
            n += 1

    per_rep = []
    for _ in range(2):
        n = 0
        sys.setprofile(prof)
        fn()
        sys.setprofile(None)
        per_rep.append(n)
    seen = {}
    for m in args.modes.split(","):
        if m in ("eval_push", "setprofile_push", "monitoring_push"):
            mm.install(m)
            p0 = mm.hc.pushes()
            fn()
            p1 = mm.hc.pushes()
            depth = mm.hc.depth()
            mm.uninstall(m)
            seen[m] = {"pushes": p1 - p0, "depth_after": depth}
    print(json.dumps({"calls": per_rep, "seen": seen}))


def worker_time(args):
    import gc
    import json
    import time
    fn = WORKLOADS[args.workload]
    modes = args.modes.split(",")
    mm = Modes(modes)
    clock = time.perf_counter
    fn()
    times = {m: [] for m in modes}
    for r in range(args.rounds):
        k = r % len(modes)
        for m in modes[k:] + modes[:k]:
            mm.install(m)
            try:
                fn()  # warm: re-specialise under this mode
                gc.collect()
                t0 = clock()
                fn()
                t1 = clock()
            finally:
                mm.uninstall(m)
            times[m].append(t1 - t0)
    print(json.dumps({"times": times}))


def worker_cg(args):
    fn = WORKLOADS[args.workload]
    mm = Modes([args.mode])
    mm.install(args.mode)
    for _ in range(args.reps):
        fn()
    mm.uninstall(args.mode)


# ---- driver ----------------------------------------------------------------------


def run(cmd, env=None, check=True):
    import subprocess
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=env)
    if check and p.returncode != 0:
        raise RuntimeError("command failed (%d): %s\n%s" % (p.returncode, " ".join(cmd),
                                                           p.stderr[-3000:]))
    return p


def worker_cmd(py, paths, *wargs):
    return [py, "-S", os.path.abspath(__file__), "--worker-path", os.pathsep.join(paths),
            *wargs]


def worker_env():
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = "0"
    for k in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONPROFILEIMPORTTIME"):
        env.pop(k, None)
    return env


def build(py, builddir, log):
    ver = run([py, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"]).stdout.strip()
    base = os.path.join(builddir, ver)
    hc_dir, sp_dir = os.path.join(base, "hc"), os.path.join(base, "sp")
    run(["bash", os.path.join(HERE, "build.sh"), hc_dir, py])
    paths = [hc_dir]
    p = run(["bash", os.path.join(REPO, "tools", "devbuild.sh"), sp_dir, py], check=False)
    if p.returncode == 0:
        paths.append(sp_dir)
    else:
        log("shadowprof build failed for %s:\n%s" % (py, p.stderr[-2000:]))
    return ver, paths


def callgrind(py, paths, workload, mode, reps):
    import re
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + \
        worker_cmd(py, paths, "--worker", "cg", "--workload", workload, "--mode", mode,
                   "--reps", str(reps))
    p = run(cmd, env=worker_env())
    m = re.findall(r"Collected\s*:\s*(\d+)", p.stderr)
    if not m:
        raise RuntimeError("no 'Collected' line from callgrind:\n" + p.stderr[-2000:])
    return int(m[-1])


def quartiles(xs):
    import statistics
    xs = sorted(xs)
    if len(xs) < 4:
        return xs[0], xs[-1]
    q = statistics.quantiles(xs, n=4)
    return q[0], q[2]


def prepare(py, a, log):
    """Builds for `py`, probes its modes and counts calls per repetition."""
    import json

    ver, paths = build(py, a.build, log)
    probe = json.loads(run(worker_cmd(py, paths, "--worker", "probe"),
                           env=worker_env()).stdout)
    modes = [m for m in probe["modes"] if m in a.modes.split(",")]
    log("%s: modes %s; unavailable %s" % (ver, modes, probe["unavailable"]))
    res = {"python": py, "paths": paths, "version": ver,
           "full_version": probe["full_version"], "modes": modes,
           "unavailable": probe["unavailable"], "workloads": {}}
    for w in a.workloads.split(","):
        c = json.loads(run(worker_cmd(py, paths, "--worker", "count", "--workload", w,
                                      "--modes", ",".join(modes)),
                           env=worker_env()).stdout)
        res["workloads"][w] = {"calls": c["calls"][-1], "calls_check": c["calls"],
                               "seen": c["seen"]}
    return res


def time_phase(res, a, log):
    import json
    import time

    py, paths, modes = res["python"], res["paths"], res["modes"]
    for w, d in res["workloads"].items():
        t0 = time.time()
        t = json.loads(run(worker_cmd(py, paths, "--worker", "time", "--workload", w,
                                      "--modes", ",".join(modes), "--rounds",
                                      str(a.rounds)), env=worker_env()).stdout)
        d["times"] = t["times"]
        log("%s %s: timed in %.0f s" % (res["version"], w, time.time() - t0))


def callgrind_phase(res, a, log):
    import time
    from concurrent.futures import ThreadPoolExecutor

    py, paths, modes = res["python"], res["paths"], res["modes"]
    r1, r2 = (int(x) for x in a.cg_reps.split(","))
    jobs = [(w, m, r) for w in res["workloads"] for m in modes for r in (r1, r2)]
    t0 = time.time()
    with ThreadPoolExecutor(a.jobs) as ex:
        outs = list(ex.map(lambda j: callgrind(py, paths, *j), jobs))
    log("%s: callgrind %d runs in %.0f s" % (res["version"], len(jobs), time.time() - t0))
    for (w, m, r), ir in zip(jobs, outs):
        res["workloads"][w].setdefault("ir", {}).setdefault(m, {})[str(r)] = ir
    for d in res["workloads"].values():
        d["cg_reps"] = [r1, r2]
        d["ir_per_call"] = {
            m: (d["ir"][m][str(r2)] - d["ir"][m][str(r1)]) / ((r2 - r1) * d["calls"])
            for m in modes}


def fmt_table(res):
    import statistics
    L = []
    modes = res["modes"]
    L.append("| workload | calls/rep | mode | median time | time vs none: median (IQR) | "
             "best vs best | instr/call | added instr/call |")
    L.append("|---|---:|---|---:|---:|---:|---:|---:|")
    for w, d in res["workloads"].items():
        base_ipc = d.get("ir_per_call", {}).get("none")
        tn = d.get("times", {}).get("none")
        for i, m in enumerate(modes):
            cells = [w if i == 0 else "", "%d" % d["calls"] if i == 0 else "", m]
            if "times" in d:
                tm = d["times"][m]
                ratios = [x / y for x, y in zip(tm, tn)]
                q1, q3 = quartiles(ratios)
                cells.append("%.1f ms" % (1e3 * statistics.median(tm)))
                cells.append("%.2fx (%.2f-%.2f)" % (statistics.median(ratios), q1, q3)
                             if m != "none" else "1")
                cells.append("%.2fx" % (min(tm) / min(tn)) if m != "none" else "1")
            else:
                cells += ["-", "-", "-"]
            if "ir_per_call" in d:
                ipc = d["ir_per_call"][m]
                cells.append("%.0f" % ipc)
                cells.append("%+.0f" % (ipc - base_ipc) if m != "none" else "0")
            else:
                cells += ["-", "-"]
            L.append("| " + " | ".join(cells) + " |")
    return "\n".join(L)


def fmt_summary(res):
    import statistics
    modes = [m for m in res["modes"] if m != "none"]
    wls = list(res["workloads"])
    L = ["| mode | " + " | ".join(wls) + " |", "|---|" + "---:|" * len(wls)]
    for m in modes:
        cells = []
        for w in wls:
            d = res["workloads"][w]
            s = []
            if "ir_per_call" in d:
                s.append("%+.0f ins" % (d["ir_per_call"][m] - d["ir_per_call"]["none"]))
            if "times" in d:
                s.append("%.2fx" % statistics.median(
                    [x / y for x, y in zip(d["times"][m], d["times"]["none"])]))
            cells.append(", ".join(s))
        L.append("| %s | %s |" % (m, " | ".join(cells)))
    return "\n".join(L)


def fmt_seen(res):
    L = ["| workload | setprofile 'call' events/rep | " +
         " | ".join("%s pushes/rep" % m for m in res["modes"]
                    if m in ("eval_push", "setprofile_push", "monitoring_push")) + " |"]
    push_modes = [m for m in res["modes"]
                  if m in ("eval_push", "setprofile_push", "monitoring_push")]
    L.append("|---|---:|" + "---:|" * len(push_modes))
    for w, d in res["workloads"].items():
        L.append("| %s | %d | %s |" % (w, d["calls"], " | ".join(
            "%d" % d["seen"][m]["pushes"] for m in push_modes)))
    return "\n".join(L)


class WorkerArgs:
    """argv of a worker: --worker-path P --worker KIND [--workload W] [--mode M]
    [--modes A,B] [--reps N] [--rounds N]; parsed without argparse (startup cost)."""

    def __init__(self, argv):
        self.workload = self.mode = self.modes = self.reps = self.rounds = None
        self.worker_path = self.worker = None
        it = iter(argv)
        for k in it:
            v = next(it)
            k = k.lstrip("-").replace("-", "_")
            setattr(self, k, int(v) if k in ("reps", "rounds") else v)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker-path":
        a = WorkerArgs(sys.argv[1:])
        if a.worker_path:
            sys.path[:0] = a.worker_path.split(os.pathsep)
        {"probe": worker_probe, "count": worker_count, "time": worker_time,
         "cg": worker_cg}[a.worker](a)
        return
    import argparse
    import json
    import time
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", action="append", default=[])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--cg-reps", default="1,2")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--no-time", action="store_true")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--modes", default=",".join(ALL_MODES))
    ap.add_argument("--build", default="/tmp/hookcost-build")
    ap.add_argument("--out")
    ap.add_argument("--json")
    a = ap.parse_args()

    def log(msg):
        print("[hookcost %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr,
              flush=True)

    if not a.python:
        a.python = [sys.executable]
    # Phases across all interpreters: wall times first, so that they are not taken
    # while this script's own callgrind jobs load the machine.
    results = [prepare(py, a, log) for py in a.python]
    if not a.no_time:
        for r in results:
            time_phase(r, a, log)
    if not a.no_callgrind:
        for r in results:
            callgrind_phase(r, a, log)
    out = []
    for r in results:
        out.append("### Python %s (`%s`)\n" % (r["version"], r["python"]))
        if r["unavailable"]:
            out.append("Modes not measured: " + "; ".join(
                "%s (%s)" % kv for kv in r["unavailable"].items()) + "\n")
        out.append(fmt_table(r) + "\n")
        out.append("Summary (instructions/call added vs none, median time ratio):\n")
        out.append(fmt_summary(r) + "\n")
        out.append("Frame entries recorded per repetition by each push mode:\n")
        out.append(fmt_seen(r) + "\n")
    text = "\n".join(out)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    if a.json:
        for r in results:
            r["load_note"] = "os.getloadavg at end: %.2f %.2f %.2f" % os.getloadavg()
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
