"""Bounded memory: start/stop cycles leak nothing, also with threads running through
them and threads starting and ending all the time; the aggregation table has a cap and
folds what does not fit into a [table full] frame without losing samples."""

import json
import subprocess
import sys
import textwrap


def run(code):
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_10000_start_stop_cycles_leak_nothing():
    out = run("""
        import gc
        from shadowprof import _core
        def f():
            return 1
        def rss_kb():
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        def cycles(n):
            for _ in range(n):
                _core.start(interval_ns=1_000_000)
                f()
                _core.stop()
                _core.snapshot()
            gc.collect()
        cycles(20000)                   # warm up the allocators (arenas settle)
        a = rss_kb()
        cycles(10000)
        b = rss_kb()
        cycles(10000)
        c = rss_kb()
        print(b - a, c - b)
    """)
    first, second = map(int, out.split())
    # A leak of even 32 bytes per cycle would show as >300 kB per 10,000 cycles.
    assert first < 256 and second < 256, (first, second)


def test_start_stop_with_live_and_churning_threads_leaks_nothing():
    # Threads alive through every start and stop (their states seeded at start, their
    # timers disarmed at stop), and threads born and ended all the time (states of
    # threads that ended must be freed, names not kept forever).
    out = run("""
        import gc, threading, time
        from shadowprof import _core
        done = threading.Event()
        def f():
            return 1
        def live():
            while not done.is_set():
                f()
                time.sleep(0.0005)
        def churn():
            while not done.is_set():
                t = threading.Thread(target=f)
                t.start()
                t.join()
        def rss_kb():
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        threads = [threading.Thread(target=live) for _ in range(3)]
        threads += [threading.Thread(target=churn) for _ in range(2)]
        for t in threads:
            t.start()
        def cycles(n):
            for i in range(n):
                _core.start(interval_ns=1_000_000, mode=("cpu", "wall")[i % 2])
                f()
                _core.stop()
                _core.snapshot()
            gc.collect()
        cycles(3000)                    # warm up the allocators (arenas settle)
        a = rss_kb()
        cycles(6000)
        b = rss_kb()
        states = _core.memory()["threads"]
        done.set()
        for t in threads:
            t.join()
        print(b - a, states)
    """)
    growth, states = map(int, out.split())
    # Per-thread states: those of the 6 threads alive, plus at most the few that
    # ended since the last start (freed at the next one).  Thousands of threads
    # ended during the run: ~16 kB each if their states were kept.
    assert states <= 16, states
    # Thread stacks and arenas make RSS move by a few hundred kB either way; a state
    # kept per ended thread, or 300 bytes per cycle, is over 2 MB.
    assert growth < 2000, growth


def test_table_cap_folds_new_stacks_into_table_full():
    out = run("""
        import time
        from shadowprof import _core, Profile
        def down(n, end):
            if n == 0:
                while time.perf_counter() < end:
                    pass
                return
            down(n - 1, end)
        _core.start(interval_ns=200_000, mode="wall", max_stacks=16)
        for depth in range(60):
            down(depth, time.perf_counter() + 0.005)
        _core.stop()
        s = _core.snapshot()
        p = Profile.from_snapshot(s, correct=False)
        names = {p.functions[fr[0]].name for st in p.stacks for fr in st.frames}
        counted = sum(st.count for st in p.stacks)
        print(len(s["stacks"]), s["table_full"], counted, s["samples"],
              "[table full]" in names)
    """)
    nstacks, table_full, counted, samples, marker = out.split()
    assert int(nstacks) <= 16
    assert int(table_full) > 0 and marker == "True"
    assert int(counted) == int(samples)    # nothing lost, only folded


def test_a_million_dynamic_functions_stay_bounded():
    # A million short-lived code objects of one function (exec/namedtuple style) revive
    # one registry entry; a million *distinct* functions fill the registry up to its
    # limit and the rest share "[functions over the limit]", calls still counted.
    out = run("""
        import gc, json, types
        from collections import namedtuple
        from shadowprof import _core, Profile
        def rss_kb():
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        ns = {}
        exec(compile("def f(x):\\n    return x + 1\\n", "<dyn>", "exec"), ns)
        code = ns["f"].__code__
        def same(n):
            for i in range(n):
                types.FunctionType(code.replace(), ns)(i)
        def distinct(n, start):
            for i in range(start, start + n):
                name = "f%d" % i
                names = {"co_name": name}
                if hasattr(code, "co_qualname"):   # 3.11+ report co_qualname
                    names["co_qualname"] = name
                types.FunctionType(code.replace(**names), ns)(i)
        _core.set_max_functions(50_000)
        _core.start(interval_ns=1_000_000)
        same(20_000); distinct(60_000, 0)       # warm up; fill the registry
        gc.collect()
        a = rss_kb(); ids_a = _core.memory()["code_ids"]
        same(1_000_000)
        for k in range(2_000):
            namedtuple("T%d" % (k % 50), "x y")(1, 2)
            if k % 100 == 0:
                gc.collect()   # namedtuple classes live in cycles
        b = rss_kb()
        distinct(1_000_000, 60_000)
        gc.collect()
        c = rss_kb(); ids_c = _core.memory()["code_ids"]
        _core.stop()
        p = Profile.from_snapshot(_core.snapshot(), correct=False)
        by_name = {}
        for fid, n in p.calls.items():
            name = p.functions[fid].name
            by_name[name] = by_name.get(name, 0) + n
        print(json.dumps({"same_kb": b - a, "distinct_kb": c - b, "ids_a": ids_a,
                          "ids_c": ids_c, "f_calls": by_name.get("f", 0),
                          "other_calls": by_name.get("[functions over the limit]", 0)}))
    """)
    r = json.loads(out)
    # Without reuse or limit: ~100 bytes of entry per code object plus its names, over
    # 100 MB per million.  What remains is the allocator's own drift.
    assert r["same_kb"] < 16_000, r
    assert r["distinct_kb"] < 16_000, r
    assert r["ids_c"] <= 50_000, r
    assert r["f_calls"] == 1_020_000, r
    # 1,060,000 distinct functions, about 50,000 with ids of their own.
    assert 1_010_000 <= r["other_calls"] <= 1_060_000, r
