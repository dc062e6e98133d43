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


def profiled_both_ways(tmp_path, seconds):
    """One profiled run of the workload in a fresh interpreter, seen twice: as
    Profiler.stop() returns it (corrected) and built again from the same snapshot
    without the correction (raw).  Both share every sample: they differ by the
    correction alone."""
    from shadowprof import Profile
    code = (
        "import sys\n"
        f"sys.path.insert(0, {os.path.dirname(WORKLOAD)!r})\n"
        "import attr_workload\n"
        "from shadowprof import Profiler, Profile, _core\n"
        "p = Profiler(interval='1ms').start()\n"
        f"attr_workload.main({seconds}, False)\n"
        "corrected = p.stop()\n"
        "raw = Profile.from_snapshot(_core.snapshot(), correct=False)\n"
        f"open({str(tmp_path / 'corrected.json')!r}, 'w').write(corrected.to_json())\n"
        f"open({str(tmp_path / 'raw.json')!r}, 'w').write(raw.to_json())\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    return (Profile.load_json(tmp_path / "corrected.json"),
            Profile.load_json(tmp_path / "raw.json"))


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
    assert prof.corrected_ns == 0     # --no-correct-overhead: nothing moved


def test_overhead_correction_moves_toward_unprofiled_split(tmp_path):
    # The same samples with and without the calibrated correction, against the split
    # of an unprofiled run.  The calibration is a timing on a shared machine, so the
    # band around the unprofiled split is wider than the sampler's.
    for seconds in (6, 12):
        truth = unprofiled_shares(seconds)
        prof, prof_raw = profiled_both_ways(tmp_path, seconds)
        corrected, raw = shares(prof), shares(prof_raw)
        corrected_err = abs(corrected["burn_calls"] - truth["burn_calls"])
        raw_err = abs(raw["burn_calls"] - truth["burn_calls"])
        if sys.version_info >= (3, 11):
            # The hook slows CPython's own call path (a frame-evaluation hook turns
            # off inlined calls; sys.monitoring dispatches each event), time outside
            # shadowprof's code that inflates burn_calls (about 4 points on 3.11,
            # 0.3-4 on 3.13 since its events got cheaper): where that inflation is
            # larger than the noise of two runs (3 points), the correction must move
            # it back, closer to the unprofiled split; and the corrected split must
            # stay within 5 points of it either way.
            ok = ((corrected_err < raw_err - 0.005 or raw_err < 0.03)
                  and max(errors(corrected, truth).values()) <= 5.0)
        else:
            # 3.9/3.10 never inline calls: the hook's cost is its own code, which
            # samples already report as overhead; the raw split is right there, and
            # the correction must keep it so.
            ok = corrected_err <= 0.015
        if ok:
            break
    assert ok, (truth, raw, corrected)
    assert prof_raw.corrected_ns == 0
    if sys.version_info >= (3, 11):
        assert prof.corrected_ns > 0
    else:
        assert prof.corrected_ns < 0.03 * prof.weight_ns, prof.corrected_ns


def test_samples_weighted_by_real_time(tmp_path):
    prof = profiled(tmp_path, 2)
    # 1 ms was requested, but CPU timers fire at most at the kernel tick rate: the
    # weights must add up to the CPU time really used, not samples x 1 ms.
    assert prof.samples > 50
    assert abs(prof.weight_ns - prof.cpu_ns) / prof.cpu_ns < 0.15, (
        prof.weight_ns, prof.cpu_ns)
    # Each weight is the CPU time since the thread's previous sample: never much less
    # than the interval that was asked for (the timer cannot fire sooner), and at the
    # kernel tick rate (100 to 1000 Hz) never more than ~10 ms on a loaded machine.
    mean_weight = prof.weight_ns / prof.samples
    assert 0.9e6 <= mean_weight <= 12e6, mean_weight
    # The report states both rates, the effective one as measured.
    report = prof.report()
    assert f"{prof.effective_rate_hz:.0f} Hz effective" in report, report[:400]
    assert "1 ms requested" in report


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
    # The overhead reported is at least half what the calibrated per-call cost implies
    # for the calls counted (the rest of that estimate may be the noise of timing on
    # a loaded machine), and far from swallowing the profile.
    implied = sum(prof.calls.values()) * prof.per_call_overhead_ns / prof.total_ns
    assert prof.per_call_overhead_ns > 0
    assert 0.5 * implied <= prof.overhead_share <= 0.3, (prof.overhead_share, implied)
    assert "profiler overhead" in prof.report()
