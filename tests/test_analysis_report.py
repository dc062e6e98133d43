"""shadowprof report: shares with confidence intervals, filters, sorting, limits, the
line view, on synthetic profiles with known counts and on a real one."""

import os
import random
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
import ana_synth  # noqa: E402
from conftest import run_shadowprof  # noqa: E402

from shadowprof.analysis import stats  # noqa: E402
from shadowprof.analysis.model import Stack  # noqa: E402


def _rows(text):
    """{function: (self%, lo, hi, total%, lo, hi, samples, calls)} of the table."""
    rows = {}
    for m in re.finditer(
            r"^\s*([\d.]+)% \[\s*([\d.]+),\s*([\d.]+)\]%\s+([\d.]+)% \[\s*([\d.]+),"
            r"\s*([\d.]+)\]%\s+[\d.]+\s+[\d.]+\s+(\d+)\s+([\d,-]+)\s+(\S+)", text, re.M):
        rows[m.group(9)] = m.groups()[:8]
    return rows


def _profile(tmp_path):
    prof = ana_synth.draw(ana_synth.SHARES, 2000, random.Random(4))
    # A second thread with its own samples in compress.
    prof.stacks.append(Stack(202, ((1, 5), (2, 12), (13, 131)), 500, 500 * 4_000_000))
    prof.threads[202] = "worker"
    prof.samples += 500
    path = tmp_path / "p.json"
    path.write_text(prof.to_json())
    return prof, str(path)


def test_report_shows_wilson_intervals(tmp_path):
    prof, path = _profile(tmp_path)
    r = run_shadowprof("report", path)
    assert r.returncode == 0, r.stderr
    assert "95% Wilson score interval" in r.stdout and "Call tree" in r.stdout
    rows = _rows(r.stdout)
    n = 2500
    for name, i in (("parse_request", 10), ("compress", 13), ("route", 19)):
        x = sum(s.count for s in prof.stacks if s.frames[-1][0] == i)
        lo, hi = stats.wilson_interval(x, n)
        got = rows[name]
        assert float(got[0]) == round(100 * x / n, 1)
        assert float(got[1]) == round(100 * lo, 1) and float(got[2]) == round(100 * hi, 1)
        assert int(got[6]) == x
    assert rows["handle"][3] == "100.0" and rows["handle"][7] == "1,000"
    # Wider at 99%.
    r99 = _rows(run_shadowprof("report", path, "--confidence", "0.99").stdout)
    assert float(r99["route"][1]) <= float(rows["route"][1])
    assert float(r99["route"][2]) > float(rows["route"][2])


def test_report_filters_sorting_and_limit(tmp_path):
    prof, path = _profile(tmp_path)
    out = run_shadowprof("report", path, "--function", "^(parse|render)").stdout
    assert set(_rows(out)) == {"parse_request", "render_page"}
    out = run_shadowprof("report", path, "--file", "nothing-like-this").stdout
    assert "no function matches" in out
    out = run_shadowprof("report", path, "--match", r"service\.py:1[23]0").stdout
    assert set(_rows(out)) == {"query_db", "compress"}
    out = run_shadowprof("report", path, "--sort", "calls", "--top", "3").stdout
    names = list(_rows(out))
    assert names == ["route", "validate", "serialize"], names   # most calls first
    out = run_shadowprof("report", path, "--sort", "cumulative", "--limit", "2").stdout
    assert list(_rows(out)) == ["main", "handle"]
    # Thread filter: the worker thread's samples only, shares of its samples.
    out = run_shadowprof("report", path, "--thread", "worker").stdout
    assert _rows(out)["compress"][0] == "100.0"
    r = run_shadowprof("report", path, "--thread", "nope")
    assert r.returncode == 2 and "worker" in r.stderr and "MainThread" in r.stderr
    r = run_shadowprof("report", path, "--function", "(")
    assert r.returncode == 2 and "regular expression" in r.stderr
    assert r.stderr.strip().count("\n") == 0


def test_line_view_and_real_profile(tmp_path, write_script):
    script = write_script(
        "import time\n"
        "def hot():\n"
        "    end = time.process_time() + 0.3\n"
        "    n = 0\n"
        "    while time.process_time() < end:\n"
        "        n += 1\n"
        "    return n\n"
        "def main():\n"
        "    for _ in range(2):\n"
        "        hot()\n"
        "main()\n")
    out = tmp_path / "real.pb.gz"
    r = run_shadowprof("-q", "-i", "1ms", "-o", str(out), script)
    assert r.returncode == 0, r.stderr
    r = run_shadowprof("report", str(out), "--lines", "^hot$")
    assert r.returncode == 0, r.stderr
    lines = {int(m.group(1)): float(m.group(2)) for m in
             re.finditer(r"^\s+(\d+)\s+([\d.]+)% \[", r.stdout, re.M)}
    # The loop (lines 5 and 6) holds nearly all of hot's samples.
    assert set(lines) <= {3, 4, 5, 6, 7} and lines.get(5, 0) + lines.get(6, 0) > 80
    assert "while time.process_time() < end:" in r.stdout
    r = run_shadowprof("report", str(out), "--lines", "nope")
    assert r.returncode == 2 and "matches no function" in r.stderr
    # The real profile's report: hot on top, with an interval around its share.
    rows = _rows(run_shadowprof("report", str(out)).stdout)
    assert float(rows["hot"][0]) > 80 and float(rows["hot"][1]) < float(rows["hot"][0])
    assert rows["hot"][7] == "2"
