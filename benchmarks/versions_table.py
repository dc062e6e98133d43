#!/usr/bin/env python3
"""Print the per-version overhead table (markdown) from benchmarks/versions.sh runs.

    python3 benchmarks/versions_table.py benchmarks/results/version-*.json

Per version, from the median wall time of each (workload, config) over interleaved
repetitions (and, less sensitive to this machine's slow spells, from the best of
them): the geometric mean over workloads of shadowprof / unprofiled and of
cProfile / unprofiled, the call-only recursion workload's ratio, and shadowprof's
added time as a share of cProfile's (sum over workloads of median added seconds).
Targets (issue 8): geomean <= 1.10x; recursion <= 1.4x on 3.9-3.11 and <= 1.8x on
3.12+; added time under a third of cProfile's.
"""
import json
import math
import statistics
import sys


def medians(runs, pick=statistics.median):
    return {c: pick([r["wall"] for r in rs if r["rc"] == 0])
            for c, rs in runs.items() if any(r["rc"] == 0 for r in rs)}


def row(path):
    with open(path) as f:
        d = json.load(f)
    info = d["meta"].get("python_info") or {}
    version = info.get("version") if isinstance(info, dict) else None
    version = (version or d["meta"]["python"]).split()[0]
    sp, cp, best, added_sp, added_cp, rec = [], [], [], 0.0, 0.0, None
    for w, runs in d["runs"].items():
        m = medians(runs)
        b = medians(runs, min)
        if not {"none", "shadowprof-100hz", "cprofile"} <= set(m):
            continue
        sp.append(m["shadowprof-100hz"] / m["none"])
        best.append(b["shadowprof-100hz"] / b["none"])
        cp.append(m["cprofile"] / m["none"])
        added_sp += m["shadowprof-100hz"] - m["none"]
        added_cp += m["cprofile"] - m["none"]
        if w == "recursion":
            rec = m["shadowprof-100hz"] / m["none"]
    geo = lambda xs: math.exp(sum(map(math.log, xs)) / len(xs))
    minor = tuple(int(x) for x in str(version).split(".")[:2]) if str(version)[0].isdigit() else (0, 0)
    rec_target = 1.4 if minor < (3, 12) else 1.8
    ok = (geo(sp) <= 1.10, rec is not None and rec <= rec_target,
          added_cp > 0 and added_sp / added_cp < 1 / 3)
    mark = lambda b: "met" if b else "missed"
    return (f"| {version} | {len(sp)} | {geo(sp):.3f}x ({mark(ok[0])}) | {geo(best):.3f}x | "
            f"{rec:.2f}x (<= {rec_target}: {mark(ok[1])}) | {geo(cp):.2f}x | "
            f"{100 * added_sp / added_cp:.0f}% ({mark(ok[2])}) | {d['meta']['reps']} |")


def main(paths):
    print("| Python | workloads | shadowprof 100 Hz, geomean of medians | geomean of "
          "best-of-N | recursion (median) | cProfile, geomean | shadowprof's added time / "
          "cProfile's | reps |")
    print("|---|---|---|---|---|---|---|---|")
    for p in paths:
        print(row(p))


if __name__ == "__main__":
    main(sys.argv[1:])
