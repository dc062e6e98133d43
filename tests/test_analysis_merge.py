"""shadowprof merge: 1,000 periodic files of one run merge into that run's profile,
reading one file at a time (memory flat in the number of files)."""

import os
import random
import subprocess
import sys
import tracemalloc

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
sys.path.insert(0, DATA)
import ana_synth  # noqa: E402
from conftest import run_shadowprof  # noqa: E402

from shadowprof.analysis.merge import Merger, load_profile, merge_files  # noqa: E402
from shadowprof.analysis.model import Profile, Stack  # noqa: E402

SCALARS = ("mode", "samples", "weight_ns", "lost", "lost_weight_ns", "overhead",
           "overhead_weight_ns", "table_full", "duration_ns", "cpu_ns",
           "start_unix_ns", "interval_ns")


def canonical(p: Profile) -> dict:
    """The profile with functions named instead of numbered (ids differ by file)."""
    def key(fid):
        if fid == 0:
            return 0
        f = p.functions[fid]
        return (f.name, f.filename, f.firstlineno)
    stacks = {}
    for s in p.stacks:
        k = (s.thread_id, tuple((key(f), line) for f, line in s.frames))
        c, w = stacks.get(k, (0, 0))
        stacks[k] = (c + s.count, w + s.weight_ns)
    # Distinct code objects can share a name, file and line (lambdas compiled from
    # strings): across files they are one function, so they are summed here too.
    calls, edges = {}, {}
    for f, n in p.calls.items():
        calls[key(f)] = calls.get(key(f), 0) + n
    for (a, b), n in p.edges.items():
        edges[(key(a), key(b))] = edges.get((key(a), key(b)), 0) + n
    return {"stacks": {k: v for k, v in stacks.items() if v != (0, 0)},
            "calls": calls, "edges": edges,
            **{k: getattr(p, k) for k in SCALARS}}


def test_thousand_periodic_files_merge_into_the_whole_run(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(DATA, "ana_periodic.py"),
                        str(tmp_path), "1000"], capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr
    periods = sorted(str(p) for p in tmp_path.glob("period-*"))
    assert len(periods) == 1000
    assert sum(p.endswith(".pb.gz") for p in periods) == 100
    whole = load_profile(str(tmp_path / "whole.json"))
    assert whole.samples > 100, whole      # the run really was sampled

    # Through the command line, into pprof and back.
    out = tmp_path / "merged.pb.gz"
    r = run_shadowprof("merge", *periods, "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "merged 1000 profiles" in r.stderr
    merged = load_profile(str(out))
    got, want = canonical(merged), canonical(whole)
    for field in want:
        assert got[field] == want[field], field
    # The merged file reads like any profile.
    r = run_shadowprof("report", str(out), "--top", "3")
    assert r.returncode == 0 and "parse" in r.stdout


def _synthetic_files(tmp_path, n_files, rng):
    """Periodic files over one fixed set of 300 distinct stacks (3 threads)."""
    paths = []
    for i in range(n_files):
        p = ana_synth.draw(ana_synth.SHARES, 60, rng, thread_id=101 + i % 3)
        # 100 distinct deeper stacks per thread, a few per file.
        extra = [Stack(101 + i % 3, ((1, 5), (2, 12), (10 + j % 10, 200 + j)), 1,
                       1_000_000) for j in rng.sample(range(100), 5)]
        p.stacks = p.stacks + extra
        p.samples += len(extra)
        path = tmp_path / f"p{i:04d}.json"
        path.write_text(p.to_json())
        paths.append(str(path))
    return paths


def _peak_merge(paths):
    tracemalloc.start()
    try:
        merged = merge_files(iter(paths))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return merged, peak


def test_merge_memory_is_flat_in_the_number_of_files(tmp_path):
    rng = random.Random(3)
    paths = _synthetic_files(tmp_path, 1000, rng)
    small, peak_100 = _peak_merge(paths[:100])
    big, peak_1000 = _peak_merge(paths)
    assert big.samples == 1000 * 65 and small.samples == 100 * 65
    assert len(big.stacks) <= 3 * (10 + 100)
    on_disk = sum(os.path.getsize(p) for p in paths)
    # Ten times the files, about the same peak: bounded by the distinct stacks, and
    # far below what holding the files would take.
    assert peak_1000 < 1.5 * peak_100 + 256 * 1024, (peak_100, peak_1000)
    assert peak_1000 < on_disk / 4, (peak_1000, on_disk)


def test_merger_keeps_functions_apart_and_rejects_mixed_modes():
    rng = random.Random(5)
    a = ana_synth.draw(ana_synth.SHARES, 100, rng)
    b = ana_synth.draw(ana_synth.SHARES, 100, rng)
    # The same functions under other ids in b: matched by name, file and line.
    shift = {fid: fid + 1000 for fid in b.functions}
    b.functions = {shift[f]: fn._replace(id=shift[f]) for f, fn in b.functions.items()}
    b.stacks = [s._replace(frames=tuple((shift[f], l) for f, l in s.frames))
                for s in b.stacks]
    b.calls = {shift[f]: n for f, n in b.calls.items()}
    b.edges = {(shift.get(x, 0), shift[y]): n for (x, y), n in b.edges.items()}
    m = Merger()
    m.add(a)
    m.add(b)
    merged = m.profile()
    assert len(merged.functions) == len(a.functions)
    assert merged.samples == 200
    assert canonical(merged)["calls"] == {k: 2 * v for k, v in canonical(a)["calls"].items()}
    wall = ana_synth.draw(ana_synth.SHARES, 10, rng)
    wall.mode = "wall"
    try:
        m.add(wall, name="w.json")
    except ValueError as e:
        assert "w.json" in str(e) and "mode" in str(e)
    else:
        raise AssertionError("mixed modes were merged")


def test_merge_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.pb.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    good = tmp_path / "good.json"
    good.write_text(ana_synth.draw(ana_synth.SHARES, 10, random.Random(1)).to_json())
    r = run_shadowprof("merge", str(good), str(bad), "-o", str(tmp_path / "m.json"))
    assert r.returncode == 2 and "bad.pb.gz" in r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert not (tmp_path / "m.json").exists()
    r = run_shadowprof("merge", str(good), "-o", str(tmp_path / "m.xyz"))
    assert r.returncode == 2 and "m.xyz" in r.stderr
    r = run_shadowprof("merge", str(tmp_path), "-o", str(tmp_path / "m.json"))
    assert r.returncode == 2   # the directory includes bad.pb.gz


def test_hosts_with_other_release_folders_merge_function_by_function():
    # Two hosts deployed one release into different folders; each profile records
    # its import roots.  The merged profile has each function once.
    from shadowprof.analysis.model import Function
    profiles = []
    for folder in ("/srv/releases/2024-05-01-a", "/opt/app"):
        fns = {1: Function(1, "main", f"{folder}/app.py", 1),
               2: Function(2, "price", f"{folder}/lib/pricing.py", 5)}
        profiles.append(Profile(fns, [Stack(7, ((1, 2), (2, 6)), 10, 10_000_000)],
                                {1: 1, 2: 50}, {(0, 1): 1, (1, 2): 50},
                                roots=[folder, "/usr/lib/python3.11"], samples=10,
                                weight_ns=10_000_000))
    m = Merger()
    for p in profiles:
        m.add(p)
    merged = m.profile()
    assert sorted(f.name for f in merged.functions.values()) == ["main", "price"]
    assert sorted(merged.calls.values()) == [2, 100]
    assert len(merged.stacks) == 1 and merged.stacks[0].count == 20
    assert "/opt/app" in merged.roots and "/srv/releases/2024-05-01-a" in merged.roots
    assert "relative to the import root" in m.matched_by
