"""Bounded memory: start/stop cycles leak nothing; the aggregation table has a cap and
folds what does not fit into a [table full] frame without losing samples."""

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
