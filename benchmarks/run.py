#!/usr/bin/env python3
"""Overhead benchmark harness: shadowprof vs. peer profilers.

For every workload and every profiler configuration the whole profiled
process is run N times (interleaved: within each repetition, every workload
is run once under every configuration, in an order rotated per repetition),
its wall time measured with time.perf_counter() around subprocess.run(),
and the median per configuration compared with the unprofiled median.

    benchmarks/setup.sh                      # venv with the peers (once)
    /tmp/shadowprof-bench-venv/bin/python benchmarks/run.py            # full run
    .../python benchmarks/run.py --reps 1 --configs none,cprofile      # quick check
    .../python benchmarks/run.py --list

Writes raw timings as JSON (--out) and a markdown report (--md, default
benchmarks/RESULTS.md) through report.py.  Any configuration that fails
(missing tool, nonzero exit, timeout) is recorded as failed with the tail
of its stderr; the harness carries on.

Harness itself runs on any Python 3.8+; the profiled interpreter is
--python (default: $BENCH_VENV/bin/python, i.e. the setup.sh venv).
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_VENV = os.environ.get("BENCH_VENV", "/tmp/shadowprof-bench-venv")

# --------------------------------------------------------------------------
# Command templates.  Tokens:
#   {python}   the profiled interpreter (--python)
#   {bin}      directory holding that interpreter (venv bin: py-spy, austin)
#   {out}      per-run output file prefix in a scratch dir (deleted afterwards)
#   {script}   the workload: script path followed by its arguments
#   {script_path} / {script_args}  the same, split (for CLIs that need a
#              separator between the two; {script_args} may expand to nothing)
# A token that is exactly "{script}" or "{script_args}" expands to several
# (or zero) argv entries; other tokens are substituted inside the word.
#
# shadowprof's CLI, in one place so it is easy to adjust:
SHADOWPROF_CMD = "{python} -m shadowprof --interval {interval} --output {out}.txt {script}"

def _cfg(template, second_core=False, note="", max_reps=None, retries=0):
    return {"template": template, "second_core": second_core, "note": note,
            "max_reps": max_reps, "retries": retries}


CONFIGS = {
    "none": _cfg("{python} {script}", note="unprofiled baseline"),
    "shadowprof-100hz": _cfg(SHADOWPROF_CMD.replace("{interval}", "10ms"),
                             note="shadowprof, 10 ms interval"),
    "shadowprof-1khz": _cfg(SHADOWPROF_CMD.replace("{interval}", "1ms"),
                            note="shadowprof, 1 ms interval"),
    "shadowprof-native-100hz": _cfg(SHADOWPROF_CMD.replace("{interval}", "10ms --native"),
                                    note="shadowprof --native (C stacks with libunwind), "
                                         "10 ms interval"),
    "cprofile": _cfg("{python} -m cProfile -o {out}.pstats {script}",
                     note="deterministic (every call), stdlib"),
    "pyinstrument": _cfg("{python} -m pyinstrument -r text -o {out}.txt {script}",
                         note="setstatprofile hook on every call/return, samples at most "
                              "every 1 ms (default interval); text renderer to a file, "
                              "no browser"),
    # yappi's default clock is CPU time: a clock_gettime(CLOCK_THREAD_CPUTIME_ID)
    # per call/return, a real syscall in a VM -> 10-60x.  Capped at 2 repetitions
    # to keep a full run under ~30 minutes (--full-reps lifts the cap).
    "yappi": _cfg("{python} -m yappi -o {out}.pstat {script}",
                  note="deterministic, default clock (cpu); max 2 repetitions", max_reps=2),
    "py-spy": _cfg("{bin}/py-spy record -r 100 -f raw -o {out}.txt -- {python} {script}",
                   second_core=True,
                   note="out-of-process (ptrace), 100 Hz, pauses the target per sample "
                        "(default)"),
    "py-spy-nonblocking": _cfg("{bin}/py-spy record -r 100 --nonblocking -f raw -o {out}.txt "
                               "-- {python} {script}", second_core=True,
                               note="out-of-process, 100 Hz, does not pause the target"),
    # austin 3.7 intermittently fails to recognise the freshly started
    # interpreter ("not a Python process", exit 32) or segfaults (139) on this
    # machine; -t 1000 (1 s start-up wait, plain ms: "-t 100ms" is rejected)
    # makes it rarer, and failed attempts are retried (recorded in the JSON).
    "austin": _cfg("{bin}/austin -t 1000 -i 10ms -o {out}.austin {python} {script}",
                   second_core=True, retries=3,
                   note="out-of-process, 10 ms interval (100 Hz); attach failures retried"),
    "scalene": _cfg("{python} -m scalene run --cpu-only -o {out}.json {script_path} --- "
                    "{script_args}",
                    note="`run --cpu-only`, 10 ms CPU sampling (default), JSON profile to a "
                         "file, no browser"),
}
DEFAULT_CONFIGS = list(CONFIGS)

# --------------------------------------------------------------------------
# Workloads: name -> (argv relative to benchmarks/, kind)
PYPERF_BENCH = "run_pyperf_bench.py"
PYPERF_DEFAULT = ["richards", "nbody", "deltablue", "raytrace", "chaos", "go",
                  "hexiom", "float", "json_dumps"]
PYPERF_EXTRA = ["fannkuch", "spectral_norm", "nqueens", "pyflate"]
OWN = ["recursion", "generators", "strings_dicts"]

WORKLOADS = {}
for _n in PYPERF_DEFAULT + PYPERF_EXTRA:
    WORKLOADS[_n] = ([PYPERF_BENCH, _n], "pyperformance")
for _n in OWN:
    WORKLOADS[_n] = ([os.path.join("workloads", _n + ".py")], "own")
DEFAULT_WORKLOADS = PYPERF_DEFAULT + OWN


def expand(template, values, script):
    """Split a template into argv, substituting values and the script."""
    argv = []
    for tok in shlex.split(template):
        if tok == "{script}":
            argv.extend(script)
        elif tok == "{script_args}":
            argv.extend(script[1:])
        else:
            argv.append(tok.format(script_path=script[0], **values))
    # a trailing separator with no script args after it is dropped
    if template.rstrip().endswith("--- {script_args}") and len(script) == 1:
        argv.pop()
    return argv


def find_tool(bindir, name):
    p = os.path.join(bindir, name)
    if os.path.exists(p) and os.access(p, os.X_OK):
        return p
    return shutil.which(name)


def tail(path, n=1500):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - n))
            text = f.read().decode("utf-8", "replace")
        return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    except OSError:
        return ""


def precheck(config, python, bindir):
    """Return None if the config can run, else a reason string."""
    template = CONFIGS[config]["template"]
    if "{bin}/" in template:
        tool = template.split("{bin}/", 1)[1].split()[0]
        path = find_tool(bindir, tool)
        if not path:
            return f"tool not found: {tool} (looked in {bindir} and PATH)"
        try:
            r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        except OSError as e:
            return f"{tool} --version failed: {e}"
        if r.returncode != 0:
            return f"{tool} --version exited {r.returncode}: {(r.stderr or r.stdout)[-600:]}"
    m = template.split(" -m ", 1)
    if len(m) == 2 and template.startswith("{python}"):
        mod = m[1].split()[0]
        r = subprocess.run([python, "-c", f"import {mod}"], capture_output=True, text=True)
        if r.returncode != 0:
            return f"cannot import {mod} in {python}: {r.stderr.strip()[-600:]}"
    return None


def resolve_template(config, bindir):
    template = CONFIGS[config]["template"]
    if "{bin}/" in template:
        tool = template.split("{bin}/", 1)[1].split()[0]
        path = find_tool(bindir, tool)
        if path:
            template = template.replace("{bin}/" + tool, shlex.quote(path))
    return template


def run_once(argv, scratch, timeout, env):
    """Run argv; return dict with wall, cpu (children user+sys), rc, stderr tail."""
    err_path = os.path.join(scratch, "stderr.txt")
    out_path = os.path.join(scratch, "stdout.txt")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        try:
            r = subprocess.run(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                               cwd=scratch, env=env, timeout=timeout)
            rc = r.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        except OSError as e:
            wall = time.perf_counter() - t0
            return {"wall": wall, "cpu": None, "rc": f"OSError: {e}", "stderr": str(e)}
        wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    res = {"wall": wall, "cpu": cpu, "rc": rc}
    if rc != 0:
        res["stderr"] = tail(err_path)
    else:
        res["stderr_tail"] = tail(err_path, 400)
    return res


def clean_dir(path):
    for name in os.listdir(path):
        p = os.path.join(path, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                os.unlink(p)
            except OSError:
                pass


def python_info(python):
    code = r"""
import json, sys, platform, importlib.metadata as md
v = {}
for d in ["shadowprof", "py-spy", "pyinstrument", "yappi", "scalene", "austin-dist",
          "pyperformance", "pyperf"]:
    try:
        v[d] = md.version(d)
    except md.PackageNotFoundError:
        v[d] = None
print(json.dumps({"version": sys.version, "implementation": platform.python_implementation(),
                  "executable": sys.executable, "packages": v}))
"""
    try:
        r = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
        return json.loads(r.stdout)
    except Exception as e:  # noqa: BLE001
        return {"error": str(e)}


def tool_versions(bindir):
    out = {}
    for tool in ("py-spy", "austin"):
        p = find_tool(bindir, tool)
        if not p:
            out[tool] = None
            continue
        try:
            r = subprocess.run([p, "--version"], capture_output=True, text=True, timeout=30)
            out[tool] = (r.stdout or r.stderr).strip() if r.returncode == 0 else \
                f"--version failed (rc {r.returncode}): {(r.stderr or r.stdout).strip()[-300:]}"
        except OSError as e:
            out[tool] = f"error: {e}"
    return out


def machine_info():
    info = {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "loadavg_start": os.getloadavg(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem"] = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description="shadowprof overhead benchmark harness")
    ap.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS),
                    help="comma list, or 'all' (default: %(default)s)")
    ap.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                    help="comma list (default: all). 'none' is always added.")
    ap.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    venv_py = os.path.join(DEFAULT_VENV, "bin", "python")
    ap.add_argument("--python", default=venv_py if os.path.exists(venv_py) else sys.executable,
                    help="interpreter to profile (default: %(default)s)")
    ap.add_argument("--out", default=os.path.join(HERE, "results.json"),
                    help="raw timings JSON (default: %(default)s)")
    ap.add_argument("--md", default=os.path.join(HERE, "RESULTS.md"),
                    help="markdown report (default: %(default)s; '' to skip)")
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="per-run timeout in seconds (default %(default)s)")
    ap.add_argument("--no-warmup", action="store_true",
                    help="skip the unmeasured warm-up run of each workload")
    ap.add_argument("--full-reps", action="store_true",
                    help="run every config --reps times (ignore per-config caps, e.g. yappi's)")
    ap.add_argument("--list", action="store_true", help="list workloads and configs")
    a = ap.parse_args(argv)

    if a.list:
        print("workloads (default marked *):")
        for n, (args, kind) in WORKLOADS.items():
            print(f"  {'*' if n in DEFAULT_WORKLOADS else ' '} {n:15s} {kind:14s} {' '.join(args)}")
        print("configs:")
        for n, cfg in CONFIGS.items():
            print(f"    {n:20s} {cfg['template']}")
        return 0

    workloads = list(WORKLOADS) if a.workloads == "all" else \
        [w.strip() for w in a.workloads.split(",") if w.strip()]
    configs = [c.strip() for c in a.configs.split(",") if c.strip()]
    bad = [w for w in workloads if w not in WORKLOADS] + [c for c in configs if c not in CONFIGS]
    if bad:
        ap.error(f"unknown workload/config: {', '.join(bad)}")
    if "none" in configs:
        configs.remove("none")
    configs.insert(0, "none")

    python = os.path.abspath(a.python)
    bindir = os.path.dirname(python)
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = "0"
    env.pop("PYTHONPROFILEIMPORTTIME", None)

    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "argv": sys.argv,
        "reps": a.reps,
        "python": python,
        "python_info": python_info(python),
        "tool_versions": tool_versions(bindir),
        "machine": machine_info(),
        "configs": {c: dict(CONFIGS[c], template=resolve_template(c, bindir),
                            max_reps=None if a.full_reps else CONFIGS[c]["max_reps"])
                    for c in configs},
        "workloads": {w: {"argv": WORKLOADS[w][0], "kind": WORKLOADS[w][1]}
                      for w in workloads},
    }
    try:
        meta["git"] = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip() or None
    except OSError:
        meta["git"] = None

    failed = {}   # (config, workload) -> reason ; config-wide: (config, None)
    for c in configs:
        reason = precheck(c, python, bindir)
        if reason:
            failed[(c, None)] = reason
            print(f"[precheck] {c}: FAILED: {reason}", file=sys.stderr)

    runs = {w: {c: [] for c in configs} for w in workloads}
    commands = {w: {} for w in workloads}
    scratch_root = tempfile.mkdtemp(prefix="shadowprof-bench-")
    scratch = os.path.join(scratch_root, "run")
    os.makedirs(scratch)

    def script_for(w):
        args = list(WORKLOADS[w][0])
        args[0] = os.path.join(HERE, args[0])
        return args

    def argv_for(c, w):
        values = {"python": python, "bin": bindir, "out": os.path.join(scratch, "prof")}
        return expand(resolve_template(c, bindir), values, script_for(w))

    def reps_for(c):
        cap = None if a.full_reps else CONFIGS[c]["max_reps"]
        return a.reps if cap is None else min(a.reps, cap)

    total = sum(reps_for(c) for c in configs) * len(workloads)
    done = 0
    t_start = time.perf_counter()
    try:
        if not a.no_warmup:
            for w in workloads:
                print(f"[warmup] {w}", file=sys.stderr)
                run_once(argv_for("none", w), scratch, a.timeout, env)
                clean_dir(scratch)
        for rep in range(a.reps):
            for wi, w in enumerate(workloads):
                k = (rep + wi) % len(configs)
                order = configs[k:] + configs[:k]
                for c in order:
                    argv = argv_for(c, w)
                    commands[w][c] = shlex.join(argv)
                    if rep >= reps_for(c):
                        continue
                    done += 1
                    if (c, None) in failed or (c, w) in failed:
                        continue
                    attempts = []
                    for _ in range(1 + CONFIGS[c]["retries"]):
                        res = run_once(argv, scratch, a.timeout, env)
                        clean_dir(scratch)
                        if res["rc"] == 0:
                            break
                        attempts.append({"wall": res["wall"], "rc": res["rc"],
                                         "stderr": res.get("stderr", "")[-600:]})
                        print(f"  {c} on {w}: attempt failed rc={res['rc']}, "
                              f"{'retrying' if len(attempts) <= CONFIGS[c]['retries'] else 'giving up'}",
                              file=sys.stderr)
                    if attempts:
                        res["failed_attempts"] = attempts
                    res["rep"] = rep
                    res["order"] = order.index(c)
                    runs[w][c].append(res)
                    status = "ok" if res["rc"] == 0 else f"FAILED rc={res['rc']}"
                    el = time.perf_counter() - t_start
                    print(f"[{done}/{total} {el:6.0f}s] rep {rep + 1} {w:14s} {c:20s} "
                          f"{res['wall']:7.3f}s {status}", file=sys.stderr)
                    if res["rc"] != 0:
                        failed[(c, w)] = f"exit {res['rc']}: {res.get('stderr', '')[-1200:]}"
    except KeyboardInterrupt:
        print("interrupted: writing partial results", file=sys.stderr)
        meta["interrupted"] = True
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)

    meta["machine"]["loadavg_end"] = os.getloadavg()
    meta["elapsed_s"] = time.perf_counter() - t_start
    data = {
        "meta": meta,
        "commands": commands,
        "runs": runs,
        "failures": [{"config": c, "workload": w, "reason": r}
                     for (c, w), r in failed.items()],
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(data, f, indent=1)
    print(f"wrote {a.out}", file=sys.stderr)

    sys.path.insert(0, HERE)
    import report  # noqa: E402
    summary = report.summarize(data)
    print(report.console_table(summary))
    if a.md:
        with open(a.md, "w") as f:
            f.write(report.render_markdown([data], sources=[a.out]))
        print(f"wrote {a.md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
