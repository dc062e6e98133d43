#!/usr/bin/env python3
"""Turn run.py's JSON into benchmarks/RESULTS.md.

    python benchmarks/report.py results.json [more.json ...] [-o RESULTS.md]

With several files, each configuration is taken from the LAST file that has
successful runs of it; its ratios are always computed against the `none`
baseline of that same file (same run, same machine state), never across
runs.  Typical use: a full peers run, later merged with a run of
`--configs shadowprof-100hz,shadowprof-1khz,cprofile` once shadowprof builds.
"""
import argparse
import math
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHADOWPROF_PREFIX = "shadowprof"
ORDER = ["none", "shadowprof-100hz", "shadowprof-1khz", "cprofile", "pyinstrument", "yappi",
         "py-spy", "py-spy-nonblocking", "austin", "scalene"]


def _ok_runs(runs):
    return [r for r in runs if r.get("rc") == 0]


def summarize(data):
    """Per-workload/per-config statistics of one run.py JSON document."""
    runs = data["runs"]
    failures = {(f["config"], f["workload"]): f["reason"] for f in data.get("failures", [])}
    configs = list(data["meta"]["configs"])
    workloads = list(data["meta"]["workloads"])
    cells = {}
    for w in workloads:
        for c in configs:
            rs = runs.get(w, {}).get(c, [])
            ok = _ok_runs(rs)
            reason = failures.get((c, w)) or failures.get((c, None))
            if reason or not ok or len(ok) != len(rs):
                cells[(w, c)] = {"failed": reason or "no successful run", "n": len(ok)}
                continue
            walls = [r["wall"] for r in ok]
            cpus = [r["cpu"] for r in ok if r.get("cpu") is not None]
            cells[(w, c)] = {
                "n": len(walls),
                "median": statistics.median(walls),
                "min": min(walls),
                "max": max(walls),
                "cpu": statistics.median(cpus) if cpus else None,
            }
    for w in workloads:
        base = cells.get((w, "none"), {})
        cp = cells.get((w, "cprofile"), {})
        for c in configs:
            cell = cells[(w, c)]
            if "median" not in cell or "median" not in base:
                continue
            cell["ratio"] = cell["median"] / base["median"]
            if cell.get("cpu") and base.get("cpu"):
                cell["cpu_ratio"] = cell["cpu"] / base["cpu"]
            if "median" in cp and cp["median"] > base["median"]:
                cell["cprofile_share"] = (cell["median"] - base["median"]) / \
                    (cp["median"] - base["median"])
    per_config = {}
    for c in configs:
        ratios = [(cells[(w, c)]["ratio"], w) for w in workloads if "ratio" in cells[(w, c)]]
        shares = [cells[(w, c)]["cprofile_share"] for w in workloads
                  if "cprofile_share" in cells[(w, c)]]
        cpu_ratios = [cells[(w, c)]["cpu_ratio"] for w in workloads
                      if "cpu_ratio" in cells[(w, c)]]
        all_runs = [x for w in workloads for x in runs.get(w, {}).get(c, [])]
        ns = [cells[(w, c)]["n"] for w in workloads if "median" in cells[(w, c)]]
        s = {"n_ok": len(ratios), "n": len(workloads),
             "second_core": data["meta"]["configs"][c]["second_core"],
             "reps": (min(ns), max(ns)) if ns else None,
             "runs": len(all_runs),
             "failed_attempts": sum(len(x.get("failed_attempts", [])) for x in all_runs)}
        if ratios:
            s["geomean"] = math.exp(sum(math.log(r) for r, _ in ratios) / len(ratios))
            s["worst"], s["worst_workload"] = max(ratios)
        if shares:
            s["share_median"] = statistics.median(shares)
        if cpu_ratios:
            s["cpu_geomean"] = math.exp(sum(math.log(r) for r in cpu_ratios) / len(cpu_ratios))
        per_config[c] = s
    return {"cells": cells, "per_config": per_config, "configs": configs,
            "workloads": workloads}


def console_table(summary):
    configs, workloads, cells = summary["configs"], summary["workloads"], summary["cells"]
    w0 = max(len(w) for w in workloads + ["geomean"]) + 1
    lines = ["".join([f"{'workload':{w0}s}"] + [f"{c[:16]:>17s}" for c in configs])]
    for w in workloads:
        row = [f"{w:{w0}s}"]
        for c in configs:
            cell = cells[(w, c)]
            if "failed" in cell:
                row.append(f"{'FAILED':>17s}")
            elif "ratio" in cell:
                row.append(f"{cell['median']:7.3f}s x{cell['ratio']:5.2f} ")
            else:
                row.append(f"{cell['median']:7.3f}s        ")
        lines.append("".join(row))
    row = [f"{'geomean':{w0}s}"]
    for c in configs:
        g = summary["per_config"][c].get("geomean")
        row.append(f"{'x%.3f' % g:>17s}" if g else f"{'-':>17s}")
    lines.append("".join(row))
    return "\n".join(lines)


def _fmt_ratio(x):
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x"


def _pick_sources(datas, summaries):
    """config -> index of the last document with successful runs of it."""
    pick = {}
    for i, (d, s) in enumerate(zip(datas, summaries)):
        for c in s["configs"]:
            if s["per_config"][c]["n_ok"] > 0 or c not in pick:
                pick[c] = i
    return pick


def render_markdown(datas, sources=None):
    sources = sources or [f"run {i + 1}" for i in range(len(datas))]
    summaries = [summarize(d) for d in datas]
    pick = _pick_sources(datas, summaries)
    configs = []
    for s in summaries:
        for c in s["configs"]:
            if c not in configs:
                configs.append(c)
    first_seen = list(configs)
    configs.sort(key=lambda c: (ORDER.index(c) if c in ORDER else len(ORDER), first_seen.index(c)))
    workloads = []
    for s in summaries:
        for w in s["workloads"]:
            if w not in workloads:
                workloads.append(w)
    main = datas[-1]
    meta = main["meta"]

    def cell(w, c):
        s = summaries[pick[c]]
        return s["cells"].get((w, c))

    def pc(c):
        return summaries[pick[c]]["per_config"][c]

    out = []
    out.append("# shadowprof overhead benchmark results\n")
    out.append("Generated by `benchmarks/run.py` / `benchmarks/report.py`. "
               "Wall time of the whole profiled process (interpreter start-up, "
               "profiler start-up and report writing included), median of the "
               "interleaved repetitions (count in the *reps* column); ratio = median / "
               "median of the unprofiled (`none`) runs of the same workload in the same "
               "harness run.\n")
    if len(datas) > 1:
        out.append(f"Merged from {len(datas)} harness runs (see *Machine and versions*): each "
                   "config comes from the last run that has it, with its ratios against that "
                   "run's own `none` baseline; the `none` column shows the last run's.\n")
    sp = [c for c in configs if c.startswith(SHADOWPROF_PREFIX)]
    sp_ok = [c for c in sp if pc(c)["n_ok"] > 0]
    if not sp_ok:
        out.append("> **shadowprof rows pending**: shadowprof could not be installed or "
                   "run when these numbers were taken (see *Failures*); the table holds "
                   "the peers' numbers only.  Re-run with "
                   "`--configs shadowprof-100hz,shadowprof-1khz,cprofile` and merge with "
                   "`report.py old.json new.json` once it builds.\n")

    warn = []
    for i, d in enumerate(datas):
        mach = d["meta"].get("machine", {})
        la = mach.get("loadavg_end") or mach.get("loadavg_start")
        nproc = mach.get("nproc") or 1
        if la and max(la[:2]) > 0.75 * nproc + 0.5:
            warn.append(f"run {i + 1} ended with load average {la[0]:.2f}/{la[1]:.2f} on "
                        f"{nproc} CPUs (other work was running)")
    base_spreads = [(x["max"] - x["min"]) / x["median"] for w in workloads
                    for x in [cell(w, "none")] if x and "median" in x and x["n"] > 1]
    if base_spreads and statistics.median(base_spreads) > 0.15:
        warn.append(f"the unprofiled runs of one workload vary by "
                    f"{100 * statistics.median(base_spreads):.0f}% (median max-min spread)")
    if warn:
        out.append("> **Noisy machine**: " + "; ".join(warn) + ". Ratios within about "
                   "+-0.3x of each other are not distinguishable here; re-run on a quiet "
                   "machine (and with more `--reps`) before drawing fine conclusions.\n")

    out.append("## Summary per configuration\n")
    out.append("| config | geomean ratio | worst ratio (workload) | median share of cProfile's "
               "added time | CPU-time geomean ratio | 2nd core | workloads ok | reps |")
    out.append("|---|---|---|---|---|---|---|---|")
    for c in configs:
        s = pc(c)
        g = _fmt_ratio(s["geomean"]) if "geomean" in s else "FAILED"
        worst = f"{_fmt_ratio(s['worst'])} ({s['worst_workload']})" \
            if "worst" in s and c != "none" else "-"
        share = f"{100 * s['share_median']:.0f}%" \
            if "share_median" in s and c != "none" else "-"
        cpu = _fmt_ratio(s["cpu_geomean"]) if "cpu_geomean" in s else "-"
        second = "**yes** (out-of-process)" if s["second_core"] else "no"
        reps = "-" if not s.get("reps") else (
            str(s["reps"][0]) if s["reps"][0] == s["reps"][1] else "%d-%d" % s["reps"])
        out.append(f"| `{c}` | {g} | {worst} | {share} | {cpu} | {second} | "
                   f"{s['n_ok']}/{s['n']} | {reps} |")
    out.append("")
    out.append("*geomean/worst ratio* are over all workloads (pyperformance programs and own "
               "workloads) on which the config succeeded. *Share of cProfile's added time* = "
               "(t_config - t_none) / (t_cprofile - t_none) per workload, median shown "
               "(100% = as costly as cProfile, 0% = free). *CPU-time ratio* is user+sys CPU "
               "of the process tree (profiler included) over the unprofiled CPU time: "
               "out-of-process samplers (`2nd core = yes`) burn CPU on the second core that "
               "their wall-time ratio does not show.\n")

    retried = [(c, pc(c)) for c in configs if pc(c).get("failed_attempts")]
    if retried:
        out.append("Retried attempts (failed start-up of the profiler, rerun; the timing of "
                   "the successful attempt is used): " + ", ".join(
                       f"`{c}` {s['failed_attempts']} failed attempt(s) over {s['runs']} runs"
                       for c, s in retried) + ".\n")

    out.append("## Median wall time and ratio, workload x config\n")
    out.append("| workload | " + " | ".join(f"`{c}`" for c in configs) + " |")
    out.append("|---|" + "---|" * len(configs))
    for w in workloads:
        row = [w]
        for c in configs:
            x = cell(w, c)
            if x is None:
                row.append("-")
            elif "failed" in x:
                row.append("FAILED")
            elif "ratio" in x:
                row.append(f"{x['median']:.3f} s ({_fmt_ratio(x['ratio'])})")
            else:
                row.append(f"{x['median']:.3f} s")
        out.append("| " + " | ".join(row) + " |")
    out.append("| **geomean ratio** | " + " | ".join(
        f"**{_fmt_ratio(pc(c)['geomean'])}**" if "geomean" in pc(c) else "-"
        for c in configs) + " |")
    out.append("| **worst ratio** | " + " | ".join(
        _fmt_ratio(pc(c)["worst"]) if "worst" in pc(c) else "-" for c in configs) + " |")
    out.append("")

    out.append("## Share of cProfile's added time, per workload\n")
    share_cfgs = [c for c in configs if c not in ("none", "cprofile")]
    out.append("| workload | " + " | ".join(f"`{c}`" for c in share_cfgs) + " |")
    out.append("|---|" + "---|" * len(share_cfgs))
    for w in workloads:
        row = [w]
        for c in share_cfgs:
            x = cell(w, c)
            row.append(f"{100 * x['cprofile_share']:.0f}%" if x and "cprofile_share" in x
                       else "-")
        out.append("| " + " | ".join(row) + " |")
    out.append("")

    out.append("## Noise\n")
    out.append("Spread of the repetitions, (max - min) / median, per config (median over "
               "workloads), and per workload for the baseline:\n")
    out.append("| config | median spread |")
    out.append("|---|---|")
    for c in configs:
        sp_ = [(x["max"] - x["min"]) / x["median"] for w in workloads
               for x in [cell(w, c)] if x and "median" in x]
        out.append(f"| `{c}` | {100 * statistics.median(sp_):.1f}% |" if sp_ else f"| `{c}` | - |")
    out.append("")
    base_noise = []
    for w in workloads:
        x = cell(w, "none")
        if x and "median" in x:
            base_noise.append(f"{w} {100 * (x['max'] - x['min']) / x['median']:.1f}%")
    if base_noise:
        out.append("Baseline (`none`) spread: " + ", ".join(base_noise) + ".\n")

    fails = []
    for c in configs:
        d = datas[pick[c]]
        for f in d.get("failures", []):
            if f["config"] == c:
                fails.append(f)
    out.append("## Failures\n")
    if not fails:
        out.append("None.\n")
    for f in fails:
        where = f["workload"] or "all workloads (precheck)"
        reason = f["reason"].strip().replace("```", "'''")
        out.append(f"- `{f['config']}` on {where}:\n\n  ```\n  " +
                   "\n  ".join(reason[-1500:].splitlines()) + "\n  ```\n")

    out.append("## Configurations and exact commands\n")
    out.append("Templates (`{out}` is a scratch file deleted after each run, `{script}` "
               "the workload's script and arguments):\n")
    out.append("| config | template | 2nd core | note |")
    out.append("|---|---|---|---|")
    for c in configs:
        m = datas[pick[c]]["meta"]["configs"][c]
        out.append(f"| `{c}` | `{m['template']}` | {'yes' if m['second_core'] else 'no'} | "
                   f"{m['note']} |")
    out.append("")
    w_ex = workloads[0]
    out.append(f"Exact commands for workload `{w_ex}` (other workloads differ only in the "
               "script):\n")
    out.append("```")
    for c in configs:
        cmd = datas[pick[c]].get("commands", {}).get(w_ex, {}).get(c)
        if cmd:
            out.append(f"# {c}\n{cmd}")
    out.append("```\n")
    out.append("Workloads (cwd is a scratch directory; `PYTHONHASHSEED=0`):\n")
    out.append("| workload | kind | script |")
    out.append("|---|---|---|")
    for w in workloads:
        for d in reversed(datas):
            if w in d["meta"]["workloads"]:
                m = d["meta"]["workloads"][w]
                out.append(f"| {w} | {m['kind']} | `benchmarks/{' '.join(m['argv'])}` |")
                break
    out.append("")
    out.append("pyperformance programs are run through `benchmarks/run_pyperf_bench.py`, which "
               "imports the program's `run_benchmark.py` as a module and calls its core "
               "function a fixed number of times in one process (no `pyperf.Runner`, no "
               "worker processes).\n")

    out.append("## Machine and versions\n")
    for i, d in enumerate(datas):
        m = d["meta"]
        pi = m.get("python_info", {})
        mach = m.get("machine", {})
        used = sorted(c for c in pick if pick[c] == i)
        out.append(f"### Run {i + 1}: `{sources[i]}`\n")
        out.append(f"- date: {m['date']}  (elapsed {m.get('elapsed_s', 0) / 60:.1f} min"
                   f"{', INTERRUPTED' if m.get('interrupted') else ''})")
        out.append(f"- configs taken from this run: {', '.join(f'`{c}`' for c in used) or '-'}")
        out.append(f"- command: `{' '.join(m.get('argv', []))}`")
        out.append(f"- repetitions: {m['reps']}; git: {m.get('git') or '(no commit)'}")
        out.append(f"- machine: nproc {mach.get('nproc')} (affinity {mach.get('affinity')}), "
                   f"{mach.get('cpu', '?')}, {mach.get('mem', '?')} RAM, "
                   f"{mach.get('platform', '?')}")
        la0, la1 = mach.get("loadavg_start"), mach.get("loadavg_end")
        if la0:
            out.append(f"- load average start: {', '.join('%.2f' % x for x in la0)}"
                       + (f"; end: {', '.join('%.2f' % x for x in la1)}" if la1 else ""))
        out.append(f"- python: `{m['python']}` — {pi.get('version', '?').splitlines()[0]}")
        pk = pi.get("packages", {})
        out.append("- packages: " + ", ".join(
            f"{k} {v}" if v else f"{k} (not installed)" for k, v in pk.items()))
        tv = m.get("tool_versions", {})
        out.append("- tools: " + ", ".join(f"{k}: {v or 'not found'}" for k, v in tv.items()))
        out.append("")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", nargs="+", help="run.py output file(s); later ones win per config")
    ap.add_argument("-o", "--output", default=os.path.join(HERE, "RESULTS.md"))
    a = ap.parse_args(argv)
    import json
    datas = []
    for p in a.json:
        with open(p) as f:
            datas.append(json.load(f))
    md = render_markdown(datas, sources=a.json)
    with open(a.output, "w") as f:
        f.write(md)
    print(console_table(summarize(datas[-1])))
    print(f"wrote {a.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
