"""The soak harness (benchmarks/soak.py), short: about 40 s of thread churn, fork and
exec, reloads, greenlets, dlopen/dlclose, start/stop cycles of Profiler(interval="1ms")
and continuous mode at 1 kHz, in four child processes (one per scenario).  No crash
(of a child or of its forked children, SIGPROF included), no hang, no lost sample.
The ten-minute run and its results: benchmarks/RESULTS.md."""

import json
import os
import subprocess
import sys
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOAK = os.path.join(ROOT, "benchmarks", "soak.py")


def test_short_soak_no_crash_no_hang_no_lost_sample(tmp_path):
    summary_file = tmp_path / "soak.json"
    r = subprocess.run([sys.executable, SOAK, "--seconds", "40", "--round", "10",
                        "--workdir", str(tmp_path / "work"), "--json",
                        str(summary_file)], capture_output=True, text=True,
                       timeout=600)
    assert summary_file.exists(), r.stdout + r.stderr[-5000:]
    s = json.loads(summary_file.read_text())
    report = json.dumps(s, indent=1) + "\n" + r.stderr[-6000:]
    if s["greenlet"] != "yes":
        warnings.warn(f"soak: the greenlet part was {s['greenlet']}")
    assert s["crashes"] == [], report
    assert s["hangs"] == [], report
    assert s["errors"] == [], report
    assert s["lost_samples"] == 0, report
    assert r.returncode == 0, report
    # Every part really ran.
    assert s["rounds"] >= 4, report   # one per scenario
    assert s["profiler_cycles"] >= 10 and s["samples"] > 0, report
    assert s["threads_started"] >= 100 and s["forks"] >= 5 and s["execs"] >= 1, report
    assert s["reloads"] >= 5 and s["dlopens"] >= 5, report
