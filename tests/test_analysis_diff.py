"""shadowprof diff: finds an injected regression, keeps its false-alarm rate on equal
profiles at or below alpha, shows exact call changes, and gates with its exit status."""

import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
import ana_synth  # noqa: E402
from conftest import run_shadowprof  # noqa: E402

from shadowprof.analysis import diff  # noqa: E402

SHARES = ana_synth.SHARES


def test_finds_a_five_point_regression_at_5000_samples():
    # query_db (15%) gains 5 points taken from parse_request (30%).
    canary_shares = ana_synth.shifted(SHARES, frm=0, to=2, points=5)
    for attempt, n in enumerate((5000, 10000)):   # retry once with a longer run
        missed, others = [], 0
        for seed in range(20):
            rng = random.Random(1000 * attempt + seed)
            cmp = diff.compare(ana_synth.draw(SHARES, n, rng),
                               ana_synth.draw(canary_shares, n, rng))
            found = diff.regressions(cmp, threshold=1.0, alpha=0.05)
            names = [c.name for c in found]
            # Sorted by evidence, the two functions that really changed come first
            # (parse_request shrank: not a regression).
            top2 = {c.name for c in cmp.changes[:2]}
            if "query_db" not in names or top2 != {"query_db", "parse_request"}:
                missed.append((seed, names, top2))
                continue
            others += len(names) > 1
            c = found[names.index("query_db")]
            assert 3.0 < 100 * c.change < 7.0
            assert c.low < 0.05 < c.high and c.low > 0.01
            assert c.h > 0.1
        # A false regression elsewhere has probability <= 5% per comparison.
        if not missed and others <= 3:
            break
    assert not missed, missed
    assert others <= 3, others


def test_false_alarm_rate_on_equal_profiles_is_at_most_alpha():
    # A/A: both profiles drawn from the same shares.  With Holm's correction the
    # chance of any significant change (and so of the gate firing, threshold 0) is at
    # most alpha.  400 seeds: standard error 1.1 points, so the bound has a 3-sigma
    # band.  The uncorrected per-function rate must be near alpha, or the test
    # would be vacuously conservative.
    alpha, seeds = 0.05, 400
    for attempt in range(2):
        any_sig = gate = raw = tests = 0
        for seed in range(seeds):
            rng = random.Random(50_000 * (attempt + 1) + seed)
            cmp = diff.compare(ana_synth.draw(SHARES, 2000, rng),
                               ana_synth.draw(SHARES, 2000, rng))
            any_sig += any(c.p_adjusted < alpha for c in cmp.changes)
            gate += bool(diff.regressions(cmp, threshold=0.0, alpha=alpha))
            raw += sum(c.p < alpha for c in cmp.changes)
            tests += len(cmp.changes)
        band = alpha + 3 * (alpha * (1 - alpha) / seeds) ** 0.5
        ok = any_sig / seeds <= band and 0.025 <= raw / tests <= 0.07
        if ok:
            break
        seeds *= 2
    assert gate <= any_sig
    assert any_sig / seeds <= band, (any_sig, seeds)
    assert 0.025 <= raw / tests <= 0.07, raw / tests


def _write(profile, path):
    path.write_text(profile.to_json())
    return str(path)


def test_cli_gates_on_regressions_and_shows_call_changes(tmp_path):
    rng = random.Random(7)
    base = _write(ana_synth.draw(SHARES, 5000, rng), tmp_path / "base.json")
    same = _write(ana_synth.draw(SHARES, 5000, rng), tmp_path / "same.json")
    worse = ana_synth.draw(ana_synth.shifted(SHARES, 0, 2, 5), 5000, rng,
                           calls_scale=2)
    # And the canary as pprof: foreign-format files are compared alike.
    from shadowprof.analysis import formats
    formats.write_profile(worse, str(tmp_path / "canary.pb.gz"), "pprof")

    r = run_shadowprof("diff", base, same)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no regression" in r.stdout

    r = run_shadowprof("diff", base, str(tmp_path / "canary.pb.gz"),
                       "--flamegraph", str(tmp_path / "d.html"))
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    first = next(i for i, l in enumerate(lines) if l.lstrip().startswith("base%")) + 1
    assert "query_db" in lines[first] and "*" in lines[first]
    # Exact call counts beside: query_db was called 3000 times, now 6000.
    assert "3,000 -> 6,000 (+3,000)" in lines[first]
    assert "REGRESSION" in r.stdout and "query_db" in r.stdout.splitlines()[-1]
    assert os.path.getsize(tmp_path / "d.html") > 1000

    # A threshold above the change passes the gate.
    r = run_shadowprof("diff", base, str(tmp_path / "canary.pb.gz"),
                       "--threshold", "9")
    assert r.returncode == 0, r.stdout

    # Bad input: one line naming the problem.
    r = run_shadowprof("diff", base, str(tmp_path / "missing.json"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "no such file" in r.stderr
    r = run_shadowprof("diff", base, base, "--alpha", "5")
    assert r.returncode == 2 and "--alpha" in r.stderr


def test_functions_moved_by_an_edit_are_still_matched():
    rng = random.Random(9)
    base = ana_synth.draw(SHARES, 3000, rng)
    canary = ana_synth.draw(SHARES, 3000, rng)
    # An edit near the top of the file moved every function down three lines.
    canary.functions = {f: fn._replace(firstlineno=fn.firstlineno + 3)
                        for f, fn in canary.functions.items()}
    cmp = diff.compare(base, canary)                  # match="file", the default
    assert len(cmp.changes) == len(SHARES)
    assert not diff.regressions(cmp, threshold=1.0)
    strict = diff.compare(base, canary, match="line")
    assert len(strict.changes) == 2 * len(SHARES)     # every function "new"
    assert diff.regressions(strict, threshold=1.0)


def _poisson(rng, lam):
    """A Poisson draw (normal approximation; the means here are in the hundreds)."""
    return max(0, round(rng.gauss(lam, lam ** 0.5)))


def _per_call_profile(rng, rate, cost, calls):
    """A run with leaf 'work' (called *calls* times, *cost* ms each) and leaf 'rest'
    (1000 ms in all), sampled at *rate* samples per ms: each leaf's samples are
    Poisson with mean rate x its time, each sample standing for 1/rate ms."""
    from shadowprof.analysis.model import Function, Profile, Stack
    x = _poisson(rng, rate * cost * calls)
    y = _poisson(rng, rate * 1000)
    w = round(1_000_000 / rate)
    fns = {1: Function(1, "work", "/srv/a/app.py", 10),
           2: Function(2, "rest", "/srv/a/app.py", 20)}
    stacks = [Stack(1, ((1, 11),), x, x * w), Stack(1, ((2, 21),), y, y * w)]
    return Profile(fns, stacks, {1: calls, 2: 100}, {(0, 1): calls, (0, 2): 100},
                   samples=x + y, weight_ns=(x + y) * w, interval_ns=w,
                   roots=["/srv/a"])


def test_per_call_ratio_interval_covers_and_finds_a_threefold_cost():
    # The canary's 'work' costs 3x per call but is called a third as often: its
    # share is unchanged, its cost per call is not.
    rng = random.Random(5)
    covered = flagged = 0
    for seed in range(200):
        base = _per_call_profile(rng, 1.0, 1.0, 600)
        canary = _per_call_profile(rng, 1.0, 3.0, 200)
        cmp = diff.compare(base, canary)
        work = cmp.find("work")
        covered += work.ratio_low <= 3.0 <= work.ratio_high
        flagged += work in diff.per_call_regressions(cmp)
        assert not diff.share_regressions(cmp, threshold=5.0)
        assert 2.4 <= work.ratio <= 3.6, work
    assert covered >= 200 * 0.92, covered       # a 95% interval: 190 expected
    assert flagged == 200


def test_per_call_false_alarms_on_equal_costs_stay_below_alpha():
    # A/A with traffic differing: the canary calls 'work' twice as often at the same
    # cost per call.  The gate (shares and costs per call, Holm over both) fires at
    # most alpha of the time, and the per-call tests alone are near alpha raw.
    rng = random.Random(6)
    seeds, gate, raw = 400, 0, 0
    for seed in range(seeds):
        base = _per_call_profile(rng, 1.0, 1.0, 500)
        canary = _per_call_profile(rng, 0.5, 1.0, 1000)    # and sampled half as often
        cmp = diff.compare(base, canary)
        gate += bool(diff.per_call_regressions(cmp, per_call_threshold=1.0))
        raw += cmp.find("work").p_call < 0.05
    band = 0.05 + 3 * (0.05 * 0.95 / seeds) ** 0.5
    assert gate / seeds <= band, gate
    assert 0.02 <= raw / seeds <= 0.08, raw


def test_release_folders_match_by_import_root_and_json_has_the_fields(tmp_path):
    import json
    rng = random.Random(8)
    base = _per_call_profile(rng, 1.0, 1.0, 600)
    canary = _per_call_profile(rng, 1.0, 3.0, 600)
    # The canary was deployed to another folder.
    canary.functions = {f: fn._replace(filename=fn.filename.replace("/srv/a/",
                                                                     "/srv/b/"))
                        for f, fn in canary.functions.items()}
    canary.roots = ["/srv/b"]
    cmp = diff.compare(base, canary)
    assert len(cmp.changes) == 2 and cmp.find("work").ratio > 2
    assert len(diff.compare(base, canary, match="absolute").changes) == 4
    # Without recorded roots (foreign files) the common folder is the root.
    base.roots, canary.roots = [], []
    assert len(diff.compare(base, canary).changes) == 2
    out = diff.to_json(cmp)
    json.dumps(out, allow_nan=False)           # strict JSON: no NaN or Infinity
    work = next(f for f in out["functions"] if f["function"] == "work")
    assert work["file"] == "app.py"
    assert work["ns_per_call_canary"] > 2 * work["ns_per_call_baseline"]
    assert work["significant"] is True and work["per_call_regression"] is True
    assert out["regression"] is True and out["regressions"] == ["work"]
    base.calls = {}
    nocalls = diff.to_json(diff.compare(base, canary))
    w = next(f for f in nocalls["functions"] if f["function"] == "work")
    assert w["ns_per_call_baseline"] is None and w["per_call_ratio"] is None
