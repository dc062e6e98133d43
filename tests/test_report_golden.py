"""Golden text of the reports: the runtime's report (Profile.report, the text format)
and ``shadowprof report`` with its options, on one hand-made profile, compared line by
line with tests/data/report_golden/*.txt.

After a deliberate change of the layout, regenerate the files and review their diff:

    SHADOWPROF_UPDATE_GOLDEN=1 python -m pytest tests/test_report_golden.py
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import run_shadowprof  # noqa: E402

from shadowprof.analysis.model import Function, Profile, Stack  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                      "report_golden")
UPDATE = os.environ.get("SHADOWPROF_UPDATE_GOLDEN") == "1"
MS = 1_000_000
APP = "/srv/app/service.py"


def _profile(time_only=False, covered_ns=0) -> Profile:
    """Two threads, a library function, direct recursion, the import system, the
    hook's own samples and a calibrated per-call correction."""
    fns = [Function(1, "main", APP, 1), Function(2, "Handler.handle", APP, 10),
           Function(3, "parse_request", APP, 100),
           Function(4, "compress", "/usr/lib/python3.11/gzip.py", 50),
           Function(5, "fib", APP, 200),
           Function(6, "_find_and_load", "<frozen importlib._bootstrap>", 1002),
           Function(7, "worker_loop", APP, 300),
           Function(-1, "[shadowprof overhead]", "<shadowprof>", 0)]
    stacks = [
        Stack(101, ((1, 5), (2, 12), (3, 104)), 50, 50 * 4 * MS),
        Stack(101, ((1, 5), (2, 13), (4, 61)), 30, 30 * 4 * MS),
        Stack(101, ((1, 6), (5, 202), (5, 203), (5, 203)), 15, 15 * 4 * MS),
        Stack(101, ((1, 7), (6, 1010)), 5, 5 * 4 * MS),
        Stack(202, ((7, 305),), 40, 40 * 4 * MS),
        Stack(0, ((-1, 0),), 2, 2 * 4 * MS),
        Stack(0, ((-1, 0),), 0, 1 * MS),
    ]
    if time_only:
        stacks = [s._replace(count=0) for s in stacks]
    samples = sum(s.count for s in stacks)
    weight = sum(s.weight_ns for s in stacks)
    return Profile(
        functions={f.id: f for f in fns}, stacks=stacks,
        calls={1: 1, 2: 100, 3: 100, 4: 60, 5: 300, 6: 20, 7: 1},
        edges={(0, 1): 1, (1, 2): 100, (2, 3): 100, (2, 4): 60, (1, 5): 10,
               (5, 5): 290, (1, 6): 20, (0, 7): 1},
        threads={101: "MainThread", 202: "worker"}, roots=["/srv/app"],
        mode="cpu", interval_ns=4 * MS, samples=samples, weight_ns=weight,
        cpu_ns=weight, duration_ns=weight, overhead=2, overhead_weight_ns=8 * MS,
        corrected_ns=1 * MS, per_call_overhead_ns=50.0, per_call_overhead_err_ns=5.0,
        covered_ns=covered_ns)


def _check(name: str, text: str) -> None:
    path = os.path.join(GOLDEN, name + ".txt")
    if UPDATE:
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    with open(path, encoding="utf-8") as f:
        want = f.read()
    assert text.splitlines() == want.splitlines(), f"{name}: differs from {path}"


@pytest.mark.parametrize("name,kwargs", [
    ("plain", {}),
    ("plain_top3_machinery", {"top": 3, "machinery": True, "tree_threshold": 0.1}),
])
def test_profile_report(name, kwargs, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    _check(name, _profile().report(**kwargs))


def test_profile_report_duty_and_time_only(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    prof = _profile(covered_ns=4 * 564 * MS)
    _check("plain_duty", prof.report())
    _check("plain_time_only", _profile(time_only=True).report())


CLI = [
    ("cli_default", []),
    ("cli_sort_total", ["--sort", "cumulative", "--top", "4"]),
    ("cli_sort_calls", ["--sort", "calls"]),
    ("cli_sort_calls_machinery", ["--sort", "calls", "--machinery"]),
    ("cli_filters", ["--function", "^(parse|comp)", "--confidence", "0.99",
                     "--tree-threshold", "10"]),
    ("cli_file_filter", ["--file", "gzip"]),
    ("cli_thread", ["--thread", "worker"]),
    ("cli_lines", ["--lines", "^fib$"]),
]


@pytest.mark.parametrize("name,args", CLI)
def test_report_command(name, args, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(_profile().to_json())
    r = run_shadowprof("report", str(path), *args, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    _check(name, r.stdout)


def test_report_command_time_only_and_merge_text(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(_profile(time_only=True).to_json())
    r = run_shadowprof("report", str(path), cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    _check("cli_time_only", r.stdout)
    path.write_text(_profile().to_json())
    r = run_shadowprof("merge", str(path), "-o", "merged.txt", cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    _check("merge_text", (tmp_path / "merged.txt").read_text())


def test_empty_profile(tmp_path):
    prof = _profile()
    prof.stacks, prof.samples, prof.cpu_ns = [], 0, 2 * MS
    _check("empty", prof.report())
    path = tmp_path / "p.json"
    path.write_text(prof.to_json())
    _check("cli_empty", run_shadowprof("report", str(path), cwd=str(tmp_path)).stdout)


PROG = ("def a():\n    return sum(range(2000))\n"
        "def b():\n    return sum(range(3000))\n"
        "def c():\n    return sum(range(4000))\n"
        "for _ in range(300):\n    a(); b(); c()\n")


def _table_rows(text: str, title: str) -> int:
    block = text.split(title, 1)[1].split("\n\n", 1)[0]
    return len(block.splitlines()) - 2      # less the rest of the title, the columns


def test_text_file_honours_report_options(tmp_path):
    """A text profile written to a file is the report with the run's --top."""
    out = tmp_path / "p.txt"
    r = run_shadowprof("-q", "-i", "1ms", "--top", "2", "-o", str(out), "-c", PROG)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert _table_rows(text, "Most called functions") == 2, text
