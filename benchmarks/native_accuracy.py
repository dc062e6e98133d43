"""How far --native shares are from the C functions' own clocks (issue #12 item 2).

Runs tests/data/native_split.py (native_burn.timed_a and timed_b in turn, 70:30 of
the thread's time, each timing itself in C) under ``python -m shadowprof --native``
RUNS times per mode, and prints, per run and pooled over the runs, timed_a's share
of the two functions' samples against its share by the C clock (CPU clock in cpu
mode, monotonic clock in wall mode).  Pooling many runs brings the binomial noise
(about 1 point at 2,000 samples) well below the bias being measured, which one
test run at 2,000 samples cannot do.

    python3 benchmarks/native_accuracy.py PYTHON [--runs 8] [--seconds 8] [--modes cpu,wall]

PYTHON must import shadowprof (a venv with it installed, or PYTHONPATH set).  The
extension is built with gcc into a temporary directory.  Also prints the load
average: CPU timers fire at the kernel's tick, and on a loaded machine a plain
SIGPROF sampler with no profiler at all misses by several points too
(benchmarks/cpu_tick_reference.c).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import sysconfig
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")

_SHARES = r"""
import json, sys
from shadowprof import Profile
prof = Profile.load_json(sys.argv[1])
names = {"a": "native_burn_mixed_a", "b": "native_burn_spin_b"}
out = {}
for key, name in names.items():
    ids = {k for k, f in prof.functions.items() if f.name == name}
    stacks = [s for s in prof.stacks if any(f in ids for f, _ in s.frames)]
    out[key] = sum(s.count for s in stacks)
print(json.dumps(out))
"""


def build_extension(python: str, where: str) -> None:
    inc = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                          "['include'], sysconfig.get_config_var('EXT_SUFFIX'))"],
                         capture_output=True, text=True, check=True).stdout.split()
    subprocess.run(["gcc", "-O2", "-g", "-fPIC", "-shared", f"-I{inc[0]}",
                    os.path.join(DATA, "native_burn.c"), "-o",
                    os.path.join(where, "native_burn" + inc[1])], check=True)


def one_run(python: str, ext: str, mode: str, seconds: float, tmp: str) -> dict:
    out, clock = os.path.join(tmp, "p.json"), os.path.join(tmp, "clock.json")
    subprocess.run([python, "-m", "shadowprof", "-q", "-i", "1ms", "--mode", mode,
                    "--native", "-o", out, os.path.join(DATA, "native_split.py"), ext,
                    str(seconds), clock, mode], check=True, capture_output=True)
    counts = json.loads(subprocess.run([python, "-c", _SHARES, out], check=True,
                                       capture_output=True, text=True).stdout)
    spent = json.load(open(clock))
    return {"a": counts["a"], "b": counts["b"],
            "a_ns": spent["a_" + mode], "b_ns": spent["b_" + mode]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("python")
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--modes", default="cpu,wall")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        build_extension(args.python, tmp)
        for mode in args.modes.split(","):
            na = nb = 0
            ta = tb = 0
            for i in range(args.runs):
                r = one_run(args.python, tmp, mode, args.seconds, tmp)
                n = r["a"] + r["b"]
                share, want = r["a"] / n, r["a_ns"] / (r["a_ns"] + r["b_ns"])
                print(f"{mode} run {i}: {n} samples, timed_a {share:.4f} "
                      f"by samples, {want:.4f} by its clock: {100 * (share - want):+.2f} points",
                      flush=True)
                na, nb, ta, tb = na + r["a"], nb + r["b"], ta + r["a_ns"], tb + r["b_ns"]
            n = na + nb
            share, want = na / n, ta / (ta + tb)
            se = math.sqrt(share * (1 - share) / n)
            print(f"{mode} pooled: {n} samples, {100 * (share - want):+.2f} points "
                  f"(binomial standard error {100 * se:.2f})", flush=True)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    sys.exit(main())
