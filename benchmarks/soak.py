"""Soak test: everything a long-lived host does to a profiler, at once, for minutes.

Each round is a fresh child process (this file with --child) that runs, for
--round seconds, all of:

- thread churn: two spawner threads create and join short-lived worker threads
  continuously, so profiling starts and stops while threads are being born and
  are dying;
- fork and exec: a forked child computes a little, then (in turn) leaves with
  os._exit, stops the profiler it inherited first, or execs a fresh interpreter;
- importlib.reload of a module whose functions move between reloads;
- greenlets switching back and forth (PyPI's greenlet; if it is not installed that
  part alone is skipped, and said so loudly in every summary);
- dlopen/dlclose: ctypes.CDLL of a small C library built for the run, one call into
  it, then _ctypes.dlclose;
- the profiler itself, by scenario: start/stop cycles of Profiler(interval="1ms")
  (cpu, wall, or cpu with --native), or continuous mode at 1 kHz (the SHADOWPROF
  start-up path with period=, writing pprof files).

The driver counts, over all rounds: crashes (deaths by a signal, SIGSEGV and SIGPROF
included, of a round or of one of its forked children; sanitizer reports), hangs
(a round past its deadline, killed after SIGABRT made faulthandler print every
thread's stack; a forked child that does not end within 10 s), lost samples (the
profiles' own `lost` count), and RSS growth of each round after its warm-up.  It
exits 0 only with no crash, no hang, no error and no lost sample.

    python benchmarks/soak.py --minutes 10                # the soak
    python benchmarks/soak.py --minutes 10 --asan         # the extension under ASan
    python benchmarks/soak.py --seconds 40 --round 10     # the short CI run
    python benchmarks/soak.py --seconds 120 --round 120 --scenarios continuous
    python benchmarks/soak.py --json out.json ...         # the summary as JSON too

The package comes from PYTHONPATH as usual (tools/devbuild.sh DIR PY, then
PYTHONPATH=DIR); --asan builds its own copy with -fsanitize=address and runs the
rounds with libasan preloaded (ASAN_OPTIONS=detect_leaks=0).  A failed round's
output is kept in the work directory (--keep, or printed at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIOS = ("cycles-cpu", "cycles-wall", "cycles-native", "continuous")
RESULT_TAG = "SOAK-RESULT "
FORK_TIMEOUT_S = 10.0

LIB_SOURCE = r"""
/* The soak's dlopen target: a little CPU work, so that --native samples land in a
   library that is loaded and unloaded all the time. */
double soak_spin(int n)
{
    volatile double x = 0;
    for (int i = 0; i < n; i++)
        x += i * 0.5;
    return x;
}
"""


# =================================================================== the child

def c_stacks(pid: int, why: str, out=None) -> None:
    """Every thread's C stack of process *pid*, by gdb if there is one, written to
    *out* (default: stderr)."""
    out = out or sys.stderr
    gdb = shutil.which("gdb")
    if gdb is None:
        return
    try:
        r = subprocess.run([gdb, "-p", str(pid), "-batch", "-nx", "-ex",
                            "thread apply all bt 30"], capture_output=True,
                           text=True, timeout=120)
        text = r.stdout + r.stderr[-2000:]
    except (OSError, subprocess.TimeoutExpired) as e:
        text = f"(gdb: {e})"
    out.write(f"soak: {why}; its C stacks:\n{text}\n")
    out.flush()


def core_backtraces(python: str, directory: str, out) -> None:
    """The crashing thread's C stack from each core file in *directory* (gdb), on
    *out*."""
    gdb = shutil.which("gdb")
    for name in sorted(os.listdir(directory)):
        if not name.startswith("core") or gdb is None:
            continue
        try:
            r = subprocess.run([gdb, "-batch", "-nx", python,
                                os.path.join(directory, name), "-ex", "bt 40"],
                               capture_output=True, text=True, timeout=120)
            text = "\n".join(l for l in r.stdout.splitlines() if l.startswith("#"))
        except (OSError, subprocess.TimeoutExpired) as e:
            text = f"(gdb: {e})"
        out.write(f"soak: backtrace from {name}:\n{text}\n")
        out.flush()


def child_main(scenario: str, seconds: float, lib: str, workdir: str) -> int:
    import faulthandler
    import gc
    import random
    import threading
    import warnings

    faulthandler.enable()
    try:   # a core file in the round's directory, for the driver's backtrace
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2)
    except (ImportError, ValueError, OSError):
        pass
    # A fork while other threads run is what a host does; 3.12+ warn about it.
    warnings.simplefilter("ignore", DeprecationWarning)
    sys.dont_write_bytecode = True   # reloads read the source every time
    import shadowprof
    from shadowprof import _core

    stop_at = time.monotonic() + seconds
    stats = {"scenario": scenario, "cycles": 0, "samples": 0, "lost": 0,
             "threads": 0, "forks": 0, "execs": 0, "fork_crashes": [],
             "fork_hangs": [], "fork_errors": [], "reloads": 0, "greenlet": "SKIPPED",
             "switches": 0, "dlopens": 0, "errors": []}
    lock = threading.Lock()
    done = threading.Event()

    def count(key: str, n: int = 1) -> None:
        with lock:
            stats[key] += n

    def fib(n: int) -> int:
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    def busy(ms: float) -> None:
        end = time.perf_counter() + ms / 1000
        while time.perf_counter() < end:
            fib(10)

    def guarded(part):
        def run():
            try:
                part()
            except BaseException as e:   # a part that breaks is a finding, not a skip
                with lock:
                    stats["errors"].append(f"{part.__name__}: {type(e).__name__}: {e}")
        run.__name__ = part.__name__
        return run

    # ---------------------------------------------------------------- parts
    def churn():
        rng = random.Random()
        while not done.is_set():
            batch = [threading.Thread(target=fib, args=(rng.randrange(6, 14),))
                     for _ in range(rng.randrange(1, 6))]
            for t in batch:
                t.start()
            for t in batch:
                t.join()
            count("threads", len(batch))

    def reloads():
        import importlib
        sys.path.insert(0, workdir)
        name = f"soak_mod_{os.getpid()}"
        path = os.path.join(workdir, name + ".py")
        mod = None
        k = 0
        while not done.is_set():
            k += 1
            pad = "\n" * (k % 7)   # the functions move between versions
            with open(path, "w") as f:
                f.write(f"VERSION = {k}\n{pad}def work(n):\n    return sum(leaf(i) "
                        f"for i in range(n))\n\n{pad}def leaf(i):\n    return i * {k}\n")
            if mod is None:
                mod = importlib.import_module(name)
            else:
                mod = importlib.reload(mod)
            if mod.VERSION != k or mod.work(10) != 45 * k:
                raise AssertionError(f"reload {k} gave version {mod.VERSION}")
            count("reloads")
            busy(5)

    def greenlets():
        try:
            import greenlet
        except ImportError:
            return
        with lock:
            stats["greenlet"] = "yes"

        def pong(n):
            while True:
                fib(8)
                n = main_g.switch(n + 1)

        while not done.is_set():
            main_g = greenlet.getcurrent()
            g = greenlet.greenlet(pong)
            n = 0
            for _ in range(50):
                n = g.switch(n)
                fib(6)
            count("switches", 50)
            # Drop the greenlet suspended mid-function: it is killed (GreenletExit
            # thrown into it) when collected.
            del g
            short = greenlet.greenlet(lambda: fib(9))
            short.switch()

    def dlopens():
        import ctypes
        import _ctypes
        while not done.is_set():
            cdll = ctypes.CDLL(lib)
            cdll.soak_spin.restype = ctypes.c_double
            cdll.soak_spin.argtypes = [ctypes.c_int]
            cdll.soak_spin(200_000)
            handle = cdll._handle
            del cdll
            _ctypes.dlclose(handle)
            count("dlopens")
            time.sleep(0.002)

    def forks():
        rng = random.Random()
        while not done.is_set():
            time.sleep(rng.uniform(0.05, 0.25))
            how = rng.choice(("exit", "stop", "exec"))
            pid = os.fork()
            if pid == 0:   # the child: no locks, no output, no imports
                try:
                    fib(15)
                    if how == "stop" and _core.is_running():
                        _core.stop()
                    if how == "exec":
                        os.execv(sys.executable, [sys.executable, "-c", "pass"])
                finally:
                    os._exit(0)
            count("forks")
            if how == "exec":
                count("execs")
            deadline = time.monotonic() + FORK_TIMEOUT_S
            while True:
                got, status = os.waitpid(pid, os.WNOHANG)
                if got:
                    break
                if time.monotonic() > deadline:
                    c_stacks(pid, f"forked child {pid} ({how}) hung")
                    # faulthandler (inherited) prints the child's Python stack.
                    os.kill(pid, signal.SIGABRT)
                    time.sleep(1.0)
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    with lock:
                        stats["fork_hangs"].append(how)
                    status = 0
                    break
                time.sleep(0.005)
            with lock:
                if os.WIFSIGNALED(status):
                    stats["fork_crashes"].append(
                        f"{how}: {signal.Signals(os.WTERMSIG(status)).name}")
                elif os.WIFEXITED(status) and os.WEXITSTATUS(status):
                    stats["fork_errors"].append(f"{how}: status {os.WEXITSTATUS(status)}")

    # ---------------------------------------------------------------- profiler
    def rss_kb() -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    parts = [churn, churn, reloads, greenlets, dlopens, forks]
    threads = [threading.Thread(target=guarded(p), name=p.__name__, daemon=True)
               for p in parts]
    for t in threads:
        t.start()
    warm_at = time.monotonic() + seconds / 4
    rss_warm = None
    rng = random.Random()

    if scenario.startswith("cycles"):
        mode = "wall" if scenario == "cycles-wall" else "cpu"
        native = scenario == "cycles-native"
        while time.monotonic() < stop_at:
            # The overhead calibration (hook on and off, ~50 ms) in one cycle of 4.
            p = shadowprof.Profiler(interval="1ms", mode=mode, native=native,
                                    correct_overhead=stats["cycles"] % 4 == 0)
            p.start()
            busy(rng.uniform(1, 30))
            prof = p.stop()
            stats["cycles"] += 1
            stats["samples"] += prof.samples
            stats["lost"] += prof.lost
            if rss_warm is None and time.monotonic() > warm_at:
                gc.collect()
                rss_warm = rss_kb()
    else:   # continuous mode at 1 kHz through the start-up path (-X shadowprof)
        from shadowprof import _startup
        out = os.path.join(workdir, f"continuous-{os.getpid()}")
        os.environ["SHADOWPROF"] = (f"interval=1ms,period=500ms,output={out},keep=4,"
                                    "budget=off,signal=off,quiet=1")
        _startup.run()
        del os.environ["SHADOWPROF"]   # not for the exec'd children
        if _startup.session is None:
            stats["errors"].append("continuous mode did not start")
        while time.monotonic() < stop_at:
            busy(20)
            if rss_warm is None and time.monotonic() > warm_at:
                gc.collect()
                rss_warm = rss_kb()
        if _startup.session is not None:
            _startup.session.stop()
            snap = _core.snapshot()
            stats["samples"] = snap["samples"]
            stats["lost"] = snap["lost"]
            stats["cycles"] = _startup.session.writer.files_written

    done.set()
    for t in threads:
        t.join(30)
        if t.is_alive():
            stats["errors"].append(f"part {t.name} did not stop within 30 s")
    gc.collect()
    stats["rss_warm_kb"] = rss_warm or 0
    stats["rss_end_kb"] = rss_kb()
    sys.stdout.write(RESULT_TAG + json.dumps(stats) + "\n")
    sys.stdout.flush()
    return 0


# =================================================================== the driver

def build_library(workdir: str) -> str:
    src = os.path.join(workdir, "soak_lib.c")
    lib = os.path.join(workdir, "libsoak.so")
    with open(src, "w") as f:
        f.write(LIB_SOURCE)
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise SystemExit("soak: error: no C compiler (gcc or cc) for the dlopen "
                         "library; install gcc")
    subprocess.run([cc, "-O1", "-g", "-fPIC", "-shared", src, "-o", lib], check=True)
    return lib


def build_asan(workdir: str, python: str) -> dict:
    """Build the extension with -fsanitize=address; the environment that loads it."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise SystemExit("soak: error: --asan needs gcc")
    libasan = subprocess.run([gcc, "-print-file-name=libasan.so"], capture_output=True,
                             text=True).stdout.strip()
    if not os.path.isabs(libasan):
        raise SystemExit("soak: error: gcc has no libasan (install its sanitizer "
                         "runtime)")
    # greenlet is C++: libasan's __cxa_throw interceptor needs the real one loaded
    # when it starts, or the first C++ exception aborts the process.
    preload = [libasan]
    libstdcxx = subprocess.run([gcc, "-print-file-name=libstdc++.so.6"],
                               capture_output=True, text=True).stdout.strip()
    if os.path.isabs(libstdcxx):
        preload.append(libstdcxx)
    dest = os.path.join(workdir, "asan")
    env = dict(os.environ, EXTRA_CFLAGS="-fsanitize=address")
    subprocess.run(["bash", os.path.join(ROOT, "tools", "devbuild.sh"), dest, python],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return {"PYTHONPATH": dest, "LD_PRELOAD": " ".join(preload),
            "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1"}


def run_round(python: str, scenario: str, seconds: float, lib: str, workdir: str,
              env: dict, index: int) -> dict:
    """One child process: its result, or what went wrong with it."""
    log = os.path.join(workdir, f"round-{index:03d}-{scenario}.log")
    cwd = os.path.join(workdir, f"round-{index:03d}")   # where a core file lands
    os.makedirs(cwd, exist_ok=True)
    cmd = [python, os.path.abspath(__file__), "--child", scenario,
           "--round", str(seconds), "--lib", lib, "--workdir", workdir]
    # Start-up, rebuilding, the parts' joins and the last write: generous, so that
    # only a real hang passes it (ASan runs several times slower).
    timeout = 3 * seconds + 60
    started = time.monotonic()
    with open(log, "w+") as err:
        # A session of its own: a hung round is killed with its forked children,
        # which would otherwise keep its stdout open.
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                env=env, start_new_session=True, cwd=cwd)
        deadline = started + timeout
        exited_at = None
        hung = False
        while True:
            try:
                out, _ = proc.communicate(timeout=1)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if proc.poll() is not None:
                # Ended (crashed, say), but forked children of its hold its stdout.
                exited_at = exited_at or now
                if now - exited_at < 5:
                    continue
                err.write("soak: forked children outlived the round; killed\n")
            elif now < deadline:
                continue
            else:
                hung = True
                err.seek(0, os.SEEK_END)
                c_stacks(proc.pid, f"round {index} hung", err)
                proc.send_signal(signal.SIGABRT)   # faulthandler: every stack
                time.sleep(5)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, _ = proc.communicate()
            break
        if proc.returncode and proc.returncode < 0:
            core_backtraces(python, cwd, err)
        err.seek(0)
        stderr = err.read()
    shutil.rmtree(cwd, ignore_errors=True)
    r = {"scenario": scenario, "returncode": proc.returncode, "hung": hung,
         "elapsed_s": round(time.monotonic() - started, 1), "log": log}
    lines = [l for l in out.splitlines() if l.startswith(RESULT_TAG)]
    if lines:
        r.update(json.loads(lines[-1][len(RESULT_TAG):]))
    r["sanitizer"] = "AddressSanitizer" in stderr or "runtime error:" in stderr
    if proc.returncode and proc.returncode < 0 and not hung:
        r["signal"] = signal.Signals(-proc.returncode).name
    ok = (not hung and proc.returncode == 0 and lines and not r["sanitizer"]
          and not r.get("errors") and not r.get("fork_crashes")
          and not r.get("fork_hangs") and not r.get("fork_errors") and not r["lost"])
    r["ok"] = bool(ok)
    if ok:
        os.unlink(log)
    return r


def summarize(rounds: list, greenlet_ok: bool, asan: bool, seconds: float) -> dict:
    crashes = [f"round {i} ({r['scenario']}): {r['signal']}"
               for i, r in enumerate(rounds) if r.get("signal")]
    crashes += [f"round {i} ({r['scenario']}): sanitizer report"
                for i, r in enumerate(rounds) if r["sanitizer"] and not r.get("signal")]
    crashes += [f"round {i} ({r['scenario']}) forked child {c}"
                for i, r in enumerate(rounds) for c in r.get("fork_crashes", ())]
    hangs = [f"round {i} ({r['scenario']})" for i, r in enumerate(rounds) if r["hung"]]
    hangs += [f"round {i} ({r['scenario']}) forked child ({how}) did not end in "
              f"{FORK_TIMEOUT_S:g} s" for i, r in enumerate(rounds)
              for how in r.get("fork_hangs", ())]
    errors = [f"round {i} ({r['scenario']}): status {r['returncode']}"
              for i, r in enumerate(rounds)
              if r["returncode"] and r["returncode"] > 0 and not r["hung"]]
    errors += [f"round {i} ({r['scenario']}): {e}" for i, r in enumerate(rounds)
               for e in r.get("errors", ()) + r.get("fork_errors", ())]
    growth = {}
    for r in rounds:
        if r.get("rss_warm_kb"):
            g = r["rss_end_kb"] - r["rss_warm_kb"]
            growth[r["scenario"]] = max(growth.get(r["scenario"], g), g)
    total = lambda key: sum(r.get(key, 0) for r in rounds)   # noqa: E731
    return {
        "python": sys.version.split()[0], "asan": asan, "seconds": round(seconds),
        "rounds": len(rounds), "crashes": crashes, "hangs": hangs, "errors": errors,
        "lost_samples": total("lost"), "samples": total("samples"),
        "profiler_cycles": total("cycles"), "threads_started": total("threads"),
        "forks": total("forks"), "execs": total("execs"), "reloads": total("reloads"),
        "dlopens": total("dlopens"), "greenlet_switches": total("switches"),
        "greenlet": "yes" if greenlet_ok else "SKIPPED (greenlet is not installed)",
        "max_rss_growth_kb": growth,
        "logs": [r["log"] for r in rounds if not r["ok"]],
    }


def driver_main(args) -> int:
    python = args.python or sys.executable
    workdir = args.workdir or tempfile.mkdtemp(prefix="shadowprof-soak-")
    os.makedirs(workdir, exist_ok=True)
    lib = build_library(workdir)
    env = dict(os.environ)
    env.pop("SHADOWPROF", None)
    if args.asan:
        env.update(build_asan(workdir, python))
    greenlet_ok = subprocess.run([python, "-c", "import greenlet"], env=env,
                                 capture_output=True).returncode == 0
    if not greenlet_ok:
        print("soak: WARNING: greenlet is not installed for this interpreter: the "
              "greenlet part is SKIPPED (pip install greenlet)", file=sys.stderr)
    budget = args.seconds if args.seconds else 60 * args.minutes
    started = time.monotonic()
    rounds = []
    while time.monotonic() - started < budget:
        scenario = args.scenarios[len(rounds) % len(args.scenarios)]
        left = budget - (time.monotonic() - started)
        seconds = max(2.0, min(args.round, left))
        r = run_round(python, scenario, seconds, lib, workdir, env, len(rounds))
        rounds.append(r)
        mark = "ok" if r["ok"] else "FAILED"
        print(f"soak: round {len(rounds) - 1} {scenario:<14} {mark:<6} "
              f"cycles {r.get('cycles', 0):>5} samples {r.get('samples', 0):>7} "
              f"lost {r.get('lost', 0)} threads {r.get('threads', 0)} "
              f"forks {r.get('forks', 0)} rss {r.get('rss_warm_kb', 0)}->"
              f"{r.get('rss_end_kb', 0)} kB"
              + (f" signal {r['signal']}" if r.get("signal") else "")
              + (" HUNG" if r["hung"] else ""), file=sys.stderr, flush=True)
    summary = summarize(rounds, greenlet_ok, args.asan, time.monotonic() - started)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    if not greenlet_ok:
        print("soak: WARNING: the greenlet part was SKIPPED (greenlet is not "
              "installed)", file=sys.stderr)
    failed = (summary["crashes"] or summary["hangs"] or summary["errors"]
              or summary["lost_samples"])
    if not failed and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    elif failed:
        for log in summary["logs"][:3]:
            try:
                with open(log) as f:
                    tail = f.read()[-3000:]
            except OSError:
                continue
            print(f"soak: --- {log} (end) ---\n{tail}", file=sys.stderr)
    return 1 if failed else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    p.add_argument("--seconds", type=float, help="how long, in seconds (overrides "
                   "--minutes)")
    p.add_argument("--round", type=float, default=20.0, metavar="SECONDS",
                   help="length of one child process's run (default 20)")
    p.add_argument("--asan", action="store_true",
                   help="build the extension with -fsanitize=address and preload "
                        "libasan")
    p.add_argument("--scenarios", type=lambda v: v.split(","), default=list(SCENARIOS),
                   metavar="A,B", help=f"run these in turn (default: all of "
                   f"{','.join(SCENARIOS)})")
    p.add_argument("--python", help="interpreter of the rounds (default: this one)")
    p.add_argument("--workdir", help="where logs and files go (default: a new "
                   "temporary directory, removed after a clean run)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--json", help="also write the summary to this file")
    p.add_argument("--child", choices=SCENARIOS, help=argparse.SUPPRESS)
    p.add_argument("--lib", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario {sorted(unknown)[0]!r}: choose from "
                f"{', '.join(SCENARIOS)}")
    if args.child:
        return child_main(args.child, args.round, args.lib, args.workdir)
    return driver_main(args)


if __name__ == "__main__":
    sys.exit(main())
