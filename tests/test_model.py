"""The profile model: overhead correction, statistics, JSON round trip."""

import pytest

from shadowprof.analysis.model import (Function, Profile, Stack, strip_outer_frames,
                                       strip_pth_lines)


def make_profile(per_call=0.0, cap=0.5):
    snap = {
        "functions": {8: ("main", "m.py", 1), 9: ("hot", "m.py", 5),
                      10: ("tiny", "m.py", 9), 3: ("[shadowprof overhead]",
                                                   "<shadowprof>", 0)},
        "stacks": [(1, ((8, 2), (9, 6)), 60, 600_000_000),
                   (1, ((8, 3), (10, 10)), 30, 300_000_000),
                   (1, ((8, 4),), 10, 100_000_000)],
        "calls": {8: 1, 9: 1, 10: 1_000_000},
        "edges": {(0, 8): 1, (8, 9): 1, (8, 10): 1_000_000},
        "samples": 100, "weight_ns": 1_000_000_000, "lost": 0, "lost_weight_ns": 0,
        "overhead": 0, "overhead_weight_ns": 0, "table_full": 0,
        "duration_ns": 1_000_000_000, "cpu_ns": 1_000_000_000, "mode": "cpu",
        "interval_ns": 10_000_000, "start_unix_ns": 0,
    }
    return Profile.from_snapshot(snap, per_call_overhead_ns=per_call,
                                 per_call_overhead_cap=cap)


def self_ns(profile, name):
    return next(s.self_ns for s in profile.function_stats().values()
                if s.function.name == name)


def test_stats_self_total_calls():
    p = make_profile()
    stats = {s.function.name: s for s in p.function_stats().values()}
    assert stats["main"].total_ns == 1_000_000_000
    assert stats["main"].self_ns == 100_000_000
    assert stats["hot"].self_samples == 60 and stats["tiny"].calls == 1_000_000
    assert p.overhead_share == 0


def test_correction_moves_per_call_cost_to_overhead():
    p = make_profile(per_call=100.0)       # 1e6 calls x 100 ns = 0.1 s
    assert self_ns(p, "tiny") == pytest.approx(200_000_000, rel=1e-5)
    assert self_ns(p, "hot") == pytest.approx(600_000_000)   # made ~no calls
    assert self_ns(p, "[shadowprof overhead]") == pytest.approx(100_000_000, rel=1e-5)
    assert p.overhead_share == pytest.approx(0.1, rel=1e-5)
    assert p.total_ns == pytest.approx(1_000_000_000)        # nothing lost


def test_correction_is_capped():
    # An absurd calibration (10 us per call) wants to move 10 s out of a 1 s profile:
    # tiny, then its caller main, each give up exactly the capped 40% of their self
    # time; hot, called once, gives its share of the budget, 10 us.
    p = make_profile(per_call=10_000.0, cap=0.4)
    assert self_ns(p, "tiny") == pytest.approx(0.6 * 300_000_000)
    assert self_ns(p, "main") == pytest.approx(0.6 * 100_000_000)
    assert self_ns(p, "hot") == pytest.approx(600_000_000 - 10_000, abs=1)
    assert p.corrected_ns == pytest.approx(0.4 * 400_000_000 + 10_000, abs=1)
    assert self_ns(p, "[shadowprof overhead]") == pytest.approx(p.corrected_ns)
    assert p.total_ns == pytest.approx(1_000_000_000)        # moved, not lost


def test_json_round_trip_and_strip(tmp_path):
    p = make_profile(per_call=50.0)
    path = tmp_path / "p.json"
    path.write_text(p.to_json())
    q = Profile.load_json(path)
    assert q.functions == p.functions
    assert sorted(q.stacks, key=repr) == sorted(p.stacks, key=repr)
    assert q.calls == p.calls and q.edges == p.edges
    assert q.per_call_overhead_cap == p.per_call_overhead_cap
    before = (sum(s.count for s in q.stacks), q.total_ns)
    strip_outer_frames(q, lambda fn: fn.name == "main")
    assert all(q.functions[s.frames[0][0]].name != "main" for s in q.stacks)
    assert 8 not in q.calls and q.edges[(0, 10)] == 1_000_000
    # samples taken in the outer frames alone are kept, as shadowprof's own time
    assert (sum(s.count for s in q.stacks), q.total_ns) == before
    main_only = [s for s in p.stacks if [p.functions[f].name for f, _ in s.frames] == ["main"]]
    assert main_only
    assert self_ns(q, "[shadowprof overhead]") >= sum(s.weight_ns for s in main_only)


def _pth_profile():
    fns = {10: Function(10, "addpackage", "<frozen site>", 1),
           11: Function(11, "<module>", "<string>", 1),
           12: Function(12, "run", "/site/shadowprof/_startup.py", 1),
           13: Function(13, "namedtuple", "/lib/collections/__init__.py", 1),
           14: Function(14, "user", "/app/u.py", 1)}
    stacks = [Stack(1, ((10, 5), (11, 1), (12, 3)), 1, 10),     # the .pth line
              Stack(1, ((14, 2), (13, 7), (11, 1)), 2, 20)]     # namedtuple's eval
    return fns, stacks


def test_strip_pth_lines_takes_out_a_line_only_site_ran():
    fns, stacks = _pth_profile()
    prof = Profile(fns, stacks[:1], {10: 1, 11: 1, 12: 1}, {(10, 11): 1, (11, 12): 1})
    strip_pth_lines(prof)
    assert 11 not in prof.functions and 11 not in prof.calls
    assert [s.frames for s in prof.stacks] == [((10, 5), (12, 3))]
    assert prof.edges == {(0, 12): 1}


def test_strip_pth_lines_keeps_string_code_the_program_ran():
    # namedtuple's eval'd code is "<module>" in "<string>" at line 1 too: the same
    # function as the .pth line.  Only the frames under addpackage go.
    fns, stacks = _pth_profile()
    prof = Profile(fns, stacks, {10: 1, 11: 4, 12: 1, 13: 3, 14: 1},
                   {(10, 11): 1, (11, 12): 1, (13, 11): 3, (14, 13): 3})
    strip_pth_lines(prof)
    assert 11 in prof.functions and prof.calls[11] == 3
    assert (10, 11) not in prof.edges and prof.edges[(13, 11)] == 3
    assert [s.frames for s in prof.stacks] == [((10, 5), (12, 3)),
                                               ((14, 2), (13, 7), (11, 1))]
