"""Statistical accuracy: time is attributed where it is spent, including to a function
that works through many tiny calls, and each sample is weighted by the time it really
stands for."""

import json
import os
import subprocess
import sys

from conftest import run_shadowprof

WORKLOAD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                        "attr_workload.py")
NAMES = ("burn_loop", "burn_calls", "burn_str")


def unprofiled_shares(seconds):
    out = subprocess.run([sys.executable, WORKLOAD, str(seconds), "--measure"],
                         capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout)


def profiled(tmp_path, seconds, *extra, measure=False):
    """Profile the workload; with *measure*, also return the shares the workload
    timed itself in the same run."""
    out = tmp_path / "prof.json"
    args = [WORKLOAD, str(seconds)] + (["--measure"] if measure else [])
    r = run_shadowprof("-q", "-i", "1ms", "-o", str(out), *extra, *args)
    assert r.returncode == 0, r.stderr
    from shadowprof import Profile
    prof = Profile.load_json(out)
    return (prof, json.loads(r.stdout)) if measure else prof


def shares(profile):
    totals = {s.function.name: s.total_ns for s in profile.function_stats().values()
              if s.function.name in NAMES}
    whole = sum(totals.values())
    return {k: v / whole for k, v in totals.items()}


def errors(got, truth):
    return {k: abs(got[k] - truth[k]) * 100 for k in NAMES}


def test_cpu_split_within_3_points(tmp_path):
    # The sampler against the workload's own CPU clock in the same run (the hook
    # slows burn_calls; both see that).  At the tick-limited ~250 samples per CPU
    # second, 8 s give ~2000 samples: the standard error of a 25% share is ~1 point,
    # so 3 points is ~3 sigma.  Retry once with a run twice as long before failing.
    for seconds in (8, 16):
        prof, truth = profiled(tmp_path, seconds, "--no-correct-overhead", measure=True)
        got = shares(prof)
        err = errors(got, truth)
        if max(err.values()) <= 3.0:
            break
    assert max(err.values()) <= 3.0, (truth, got, err)


def test_overhead_correction_moves_toward_unprofiled_split(tmp_path):
    # The hook's per-call cost inflates burn_calls (~5 points here); the calibrated
    # correction must move its share back toward the unprofiled split, and land
    # within 5 points of it.  The calibration is a timing on a shared machine, so
    # this band is wider than the sampler's.
    for seconds in (6, 12):
        truth = unprofiled_shares(seconds)
        prof, _ = profiled(tmp_path, seconds, measure=True)
        corrected = shares(prof)
        prof_raw, raw = profiled(tmp_path, seconds, "--no-correct-overhead",
                                 measure=True)
        raw = shares(prof_raw)
        moved = (abs(corrected["burn_calls"] - truth["burn_calls"])
                 < abs(raw["burn_calls"] - truth["burn_calls"]))
        # 3.9/3.10 do not slow calls down under the hook (they never inline them):
        # the raw split is already right there, and the correction must not spoil it.
        close = abs(corrected["burn_calls"] - truth["burn_calls"]) <= 0.015
        ok = (moved or close) and max(errors(corrected, truth).values()) <= 5.0
        if ok:
            break
    assert ok, (truth, raw, corrected)
    assert prof_raw.corrected_ns == 0
    if sys.version_info >= (3, 11):
        # The mechanism also slows CPython's own call path (a frame-evaluation hook
        # turns off inlined calls; sys.monitoring dispatches each event): time spent
        # outside shadowprof's code, which the correction moves.
        assert prof.corrected_ns > 0
    else:
        # 3.9/3.10 never inline calls: the hook's cost is its own code, which samples
        # already report as overhead, so the correction has little or nothing to move.
        assert prof.corrected_ns < 0.03 * prof.weight_ns, prof.corrected_ns


def test_samples_weighted_by_real_time(tmp_path):
    prof = profiled(tmp_path, 2)
    # 1 ms was requested, but CPU timers fire at most at the kernel tick rate: the
    # weights must add up to the CPU time really used, not samples x 1 ms.
    assert prof.samples > 50
    assert abs(prof.weight_ns - prof.cpu_ns) / prof.cpu_ns < 0.15, (
        prof.weight_ns, prof.cpu_ns)
    mean_weight = prof.weight_ns / prof.samples
    assert abs(prof.effective_rate_hz - 1e9 / mean_weight) / prof.effective_rate_hz < 0.2
    # The report states both rates.
    assert "Hz effective" in prof.report() and "1 ms requested" in prof.report()


def test_overhead_reported_and_tiny_calls_counted(tmp_path):
    prof = profiled(tmp_path, 1)
    stats = {s.function.name: s for s in prof.function_stats().values()}
    loops = stats["burn_calls"].calls
    assert loops > 0
    # Exact, from the hook: every call of tiny came from burn_calls, which makes
    # between 2000 and 6000 of them per call (random lengths).
    ids = {s.function.name: fid for fid, s in prof.function_stats().items()}
    assert prof.edges[(ids["burn_calls"], ids["tiny"])] == stats["tiny"].calls
    assert 2000 * loops <= stats["tiny"].calls <= 6000 * loops
    assert 0 < prof.overhead_share < 0.5
    assert "profiler overhead" in prof.report()
