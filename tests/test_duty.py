"""Continuous mode with a budget: duty-cycled windows whose files say what they cover,
exact calls per window, rates in merge and report; the profiler never in a profile
(one-shot, -X, continuous, dump); the calibration only when a report needs it."""

import gzip
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "data"))
import canary_venv  # noqa: E402

from shadowprof import _api  # noqa: E402
from shadowprof.continuous import Ledger, window_length  # noqa: E402
from shadowprof.analysis.merge import Merger  # noqa: E402
from shadowprof.analysis.model import Function, Profile, Stack, strip_own_frames  # noqa: E402

# Call-only: unit() calls leaf() exactly 50 times, so in any window the calls of
# leaf are 50 x those of unit, give or take the one unit cut by each window edge.
PROGRAM = """\
import os, signal, sys, time
def leaf():
    pass
def unit():
    for _ in range(50):
        leaf()
def main(seconds, dump):
    end = time.process_time() + seconds
    while time.process_time() < end:
        unit()
        if dump and time.process_time() > end - seconds / 2:
            dump = False
            os.kill(os.getpid(), signal.SIGUSR2)
            t = time.monotonic() + 10
            while time.monotonic() < t and not any(
                    f.endswith(".stacks.txt") for f in os.listdir(".")):
                unit()
main(float(sys.argv[1]), sys.argv[2] == "dump")
"""


@pytest.fixture(scope="module")
def py(tmp_path_factory):
    """A venv of its own site-packages only: no .pth but ours runs at start-up (a
    foreign .pth is exec'd as <string> code, which the checks below look for)."""
    import shadowprof
    where = tmp_path_factory.mktemp("duty")
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)],
                   check=True, timeout=120)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig."
                           "get_paths()['purelib'])"], capture_output=True, text=True,
                          check=True).stdout.strip()
    shutil.copytree(os.path.dirname(os.path.abspath(shadowprof.__file__)),
                    os.path.join(site, "shadowprof"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(canary_venv.PTH, site)
    return python


def run_program(py, cwd, seconds, dump=False, options=None, cli=None):
    prog = cwd / "prog.py"
    prog.write_text(PROGRAM)
    args = [py] + (cli or []) + [str(prog), str(seconds), "dump" if dump else "no"]
    env = canary_venv.clean_env(**({"SHADOWPROF": options} if options else {}))
    p = subprocess.run(args, cwd=str(cwd), capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    return p


def go_pprof(*args):
    go = shutil.which("go")
    assert go, "go tool pprof is needed (Debian: apt-get install golang-go)"
    p = subprocess.run([go, "tool", "pprof", *args], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, HOME=os.environ.get(
                           "HOME", "/tmp"), PPROF_TMPDIR="/tmp"))
    assert p.returncode == 0, p.stderr
    return p.stdout


def comments(path):
    from shadowprof.analysis.pprof import decode
    return decode(gzip.decompress(path.read_bytes())).comments


# ----------------------------------------------------------------------- windows

def test_window_length_keeps_the_total_under_the_budget():
    # rho 0.5: the hook costs half the program's time while on.  1% of 60 s.
    w = window_length(60, 0.01, 0.5, 0.0, None, 0.02)
    assert w == pytest.approx(1.2)
    # The writer's 0.05 s per window out of 10 s of program CPU leaves 0.5% ...
    assert window_length(60, 0.01, 0.5, 0.1, 10.0, 0.02) == 0.02   # all the writer's
    w = window_length(60, 0.01, 0.5, 0.05, 10.0, 0.02)
    assert w == pytest.approx(60 * 0.005 / 0.5)
    # ... and the total is then exactly the budget.
    assert 0.5 * (w / 60) * 10.0 + 0.05 == pytest.approx(0.01 * 10.0)
    # Never below the floor (a period never goes empty), never above the period.
    assert window_length(1, 0.01, 5.0, 0.0, None, 0.02) == 0.02
    assert window_length(1, 0.01, 5.0, 1.0, 0.0, 0.02) == 0.02
    assert window_length(1, 0.5, 0.01, 0.0, None, 0.02) == 1
    assert window_length(1, 0.01, 0.0, 0.0, None, 0.02) == 1   # costs nothing


def test_window_length_repays_a_debt_and_spends_a_credit():
    base = window_length(60, 0.01, 0.5, 0.05, 10.0, 0.02)
    shorter = window_length(60, 0.01, 0.5, 0.05, 10.0, 0.02, balance_s=-0.02)
    longer = window_length(60, 0.01, 0.5, 0.05, 10.0, 0.02, balance_s=0.02)
    # A debt of 0.02 s is repaid in full by this window: 0.5 x its program time less.
    assert 0.5 * (base - shorter) / 60 * 10.0 == pytest.approx(0.02)
    assert 0.5 * (longer - base) / 60 * 10.0 == pytest.approx(0.02)
    assert window_length(60, 0.01, 0.5, 0.05, 10.0, 0.02, balance_s=-1.0) == 0.02


def test_ledger_caps_credit_and_debt():
    ledger = Ledger(0.01)
    ledger.record(10_000_000_000, 0)              # an idle-cost period: 100 ms allowed
    ledger.record(10_000_000_000, 0)
    assert ledger.balance_ns == pytest.approx(100e6)        # one period's allowance
    ledger.record(10_000_000_000, 2_000_000_000)   # a burst: 2 s spent
    assert ledger.balance_ns == pytest.approx(-4 * 100e6)   # DEBT_PERIODS periods
    assert ledger.spent_ns == 2_000_000_000 and ledger.allowed_ns == pytest.approx(300e6)


def _simulate(writer_ms, ledger_on: bool) -> float:
    """The writer's cost grows as the table does; each window is sized from the
    last one's, as PeriodicWriter does.  Returns spent / allowed over the run."""
    ledger, fixed_s, program_s = Ledger(0.01), 0.0, None
    for writer in writer_ms:
        balance = ledger.balance_ns / 1e9 if ledger_on else 0.0
        w = window_length(60, 0.01, 0.5, fixed_s, program_s, 0.02, balance)
        cost_s = 0.5 * (w / 60) * 10.0 + writer / 1e3
        ledger.record(10_000_000_000, int(cost_s * 1e9))
        fixed_s, program_s = writer / 1e3, 10.0
    return ledger.spent_ns / ledger.allowed_ns


def test_ledger_keeps_a_growing_writer_within_the_budget():
    growing = [10 + 4 * i for i in range(20)]   # 10 ms, 14 ms, ... 86 ms a window
    assert _simulate(growing, ledger_on=False) > 1.03   # each window underestimated
    # what is left is the last window's shortfall (4 ms of 2 s allowed): not repaid yet
    assert _simulate(growing, ledger_on=True) <= 1.005


def test_duty_cycled_files_say_what_they_cover_with_exact_calls(py, tmp_path):
    from shadowprof.analysis.pprof import read_pprof
    d = tmp_path / "periods"
    p = run_program(py, tmp_path, 3.0, options=f"period=0.4s,keep=0,output={d}")
    assert "periodic profiles in" in p.stderr
    files = sorted(d.glob("*.pb.gz"))
    assert len(files) >= 3, p.stderr
    for f in files:
        prof = read_pprof(str(f))
        window = [c for c in comments(f) if c.startswith("shadowprof.window ")]
        assert len(window) == 1, comments(f)
        fields = dict(kv.split("=") for kv in window[0].split()[1:])
        # duration_nanos is the time profiled: the window, a part of the period.
        assert prof.duration_ns == pytest.approx(float(fields["window_s"]) * 1e9,
                                                 abs=1e3)
        assert float(fields["period_s"]) == 0.4
        assert 0 < float(fields["duty"]) <= 1
        assert float(fields["budget"]) == 0.01
        if "partial" not in fields:
            # (a window as long as the period, when profiling costs next to nothing,
            # may run over it by the writer's wake-up: it then covers itself)
            assert prof.covered_ns == max(400_000_000, prof.duration_ns)
            assert prof.duty == pytest.approx(float(fields["duty"]), rel=1e-3)
        calls = {prof.functions[k].name: n for k, n in prof.calls.items()}
        if "partial" in fields and not calls.get("leaf"):
            continue   # a window cut by the exit, after the program's loop
        assert calls.get("unit", 0) > 0, (calls, fields)
        assert abs(calls["leaf"] - 50 * calls["unit"]) <= 100, calls
        # The overhead figure is true: the hook's per-call cost and the writer (a
        # window without a sample has no time to share, but the writer's is there).
        assert prof.overhead_weight_ns > 0
        assert prof.overhead_share > 0 or not prof.samples
        # go tool pprof reads the file, and its calls are the window's exact ones.
        top = go_pprof("-top", "-sample_index=calls", "-nodefraction=0", str(f))
        m = re.search(r"^\s*(\d+)\s+\S+%\s+\S+%\s+\d+\s+\S+%\s+leaf$", top, re.M)
        assert m and int(m.group(1)) == calls["leaf"], top


def test_window_cost_agrees_with_the_ledger(tmp_path):
    """Each file's cost= (its period's share, estimated while the period runs) agrees
    with what the ledger then measured for that period, on call-only code where the
    hook takes a large part of the program's CPU while on.  Extrapolated at the
    window's own rate, the share read up to twice the ledger's.  Period by period,
    not a median of files against the run's total: on a loaded machine a few slow
    writes make the total's mean run above any file's median.  The first period has
    no previous one: its window opens half-way, after the period's rate was measured
    there; three first periods (the median: each is one estimate on a busy machine)."""
    code = f"""
import gzip, os, re, statistics, time
from shadowprof import continuous
from shadowprof.continuous import PeriodicWriter
continuous._uniform = lambda: 0.5
def leaf():
    pass
def unit():
    for _ in range(10):
        leaf(); leaf(); leaf(); leaf(); leaf()
def ratios(directory, seconds):
    \"\"\"Each whole period's cost= over the ledger's measure of it.\"\"\"
    os.mkdir(directory)
    w = PeriodicWriter(directory, 1.0, keep=0, budget=0.01,
                       session=dict(interval_ns=10_000_000, mode="cpu"))
    measured = []
    record = w.ledger.record
    def logged(program_ns, cost_ns):
        measured.append(cost_ns / program_ns)
        record(program_ns, cost_ns)
    w.ledger.record = logged
    w.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        unit()
    w.close()
    out = []
    files = sorted(os.path.join(directory, f) for f in os.listdir(directory))
    for f, share in zip(files, measured):
        note = re.search(rb"shadowprof.window [ -~]*", gzip.open(f).read()).group()
        if b"partial=1" not in note:
            out.append(float(re.search(rb"cost=([0-9.]+)", note).group(1)) / share)
    return out
runs = [ratios(os.path.join({str(tmp_path)!r}, str(i)), 7.2 if i == 0 else 1.2)
        for i in range(3)]
print(len(runs[0]), statistics.median(r[0] for r in runs), statistics.median(runs[0][1:]))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    n, first, ratio = p.stdout.split()
    assert int(n) >= 6
    # 0.90-1.06 here, also beside two busy processes on 2 cores; 1.35-3.2 on 3.11
    # at the window's own rate (as much as the calibration gives the hook)
    assert 0.75 < float(ratio) < 1.25, ratio
    # the first periods: 1.44-5.1 at the window's own rate on a quiet machine (less
    # beside busy processes, whose share moves the calibration)
    assert 0.75 < float(first) < 1.25, first


def test_window_cost_is_never_more_than_its_cpu(tmp_path):
    """A calibration that reads high (a busy machine; calls cheaper than its empty
    ones) can put the calls' cost above the window's CPU time: then the cost is that
    CPU time, and the file's share is not 0 (it was, as if the program had not run)."""
    code = f"""
import gzip, os, re, time
from shadowprof import _api, continuous
from shadowprof.continuous import PeriodicWriter
continuous._uniform = lambda: 0.5
calibration = _api.calibration
_api.calibration = lambda: (1000 * max(calibration()[0], 10.0),) + calibration()[1:]
def leaf():
    pass
w = PeriodicWriter({str(tmp_path)!r}, 0.5, keep=0, budget=0.01,
                   session=dict(interval_ns=10_000_000, mode="cpu")).start()
end = time.monotonic() + 2.2
while time.monotonic() < end:
    leaf()
w.close()
for f in sorted(os.listdir({str(tmp_path)!r})):
    note = re.search(rb"shadowprof.window [ -~]*",
                     gzip.open(os.path.join({str(tmp_path)!r}, f)).read()).group()
    if b"partial=1" not in note:
        cpu = int(re.search(rb"cpu_ns=([0-9]+)", note).group(1))
        hook = int(re.search(rb"hook_ns=([0-9]+)", note).group(1))
        print(re.search(rb"cost=([0-9.]+)", note).group(1).decode(), hook > cpu)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    rows = [line.split() for line in p.stdout.splitlines()]
    assert len(rows) >= 3, p.stdout
    assert all(over == "True" for _, over in rows), rows   # the case at hand
    assert all(float(cost) > 0 for cost, _ in rows), rows


def test_merge_and_report_give_rates_per_profiled_second(py, tmp_path):
    d = tmp_path / "periods"
    run_program(py, tmp_path, 2.0, options=f"period=0.4s,keep=0,output={d}")
    files = sorted(d.glob("*.pb.gz"))
    assert files
    out = tmp_path / "merged.pb.gz"
    r = subprocess.run([sys.executable, "-m", "shadowprof", "merge", *map(str, files),
                        "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "shadowprof", "report", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "profiler overhead 0.0%" not in lines[0], lines[0]
    assert lines[1].startswith("duty-cycled: "), lines[:2]
    assert "per second profiled" in lines[1] and "scaled by the duty" in lines[1]


def test_merged_duty_is_profiled_over_covered_time():
    f = {1: Function(1, "f", "/app/f.py", 1)}
    m = Merger()
    for dur in (10, 30):
        m.add(Profile(f, [Stack(1, ((1, 1),), 1, 5_000_000)], {1: 100}, {(0, 1): 100},
                      samples=1, weight_ns=5_000_000, cpu_ns=5_000_000,
                      duration_ns=dur * 10**6, covered_ns=10**9))
    m.add(Profile(f, [], {1: 1}, {(0, 1): 1}, duration_ns=960 * 10**6))   # always on
    merged = m.profile()
    assert merged.duration_ns == 10**9 and merged.covered_ns == 2960 * 10**6
    assert merged.duty == pytest.approx(1000 / 2960)
    assert "duty-cycled: " in merged.report().splitlines()[1]
    whole = Merger()
    whole.add(Profile(f, [Stack(1, ((1, 1),), 1, 5_000_000)], {1: 1}, {}, samples=1,
                      weight_ns=5_000_000, cpu_ns=5_000_000, duration_ns=5_000_000))
    assert whole.profile().duty == 1.0
    assert "duty-cycled" not in whole.profile().report()


# ----------------------------------------------------------------------- never itself

OWN = re.compile(r"shadowprof/")


def assert_no_own_frame(path, own=OWN):
    for index in ("cpu", "calls"):
        top = go_pprof("-top", "-filefunctions", "-nodefraction=0",
                       f"-sample_index={index}", str(path))
        found = [line for line in top.splitlines() if own.search(line)]
        assert not found, f"{path.name}: {found}"
    # The start-up hook's .pth line ("<module>" in "<string>", run by site's
    # addpackage) is ours too; other code compiled from strings (namedtuple's
    # eval, the program's exec) is the program's and stays.
    from shadowprof.analysis.pprof import read_pprof
    prof = read_pprof(str(path))
    site = {fid for fid, fn in prof.functions.items() if fn.name == "addpackage"}
    pth = [fid for fid, fn in prof.functions.items()
           if fn.filename == "<string>" and any(
               a in site for (a, b) in prof.edges if b == fid)]
    assert not pth, f"{path.name}: a .pth line: {[prof.functions[f] for f in pth]}"


def test_no_shadowprof_frame_in_any_profile_in_any_mode(py, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    run_program(py, one, 1.0, cli=["-m", "shadowprof", "-q", "-o", "one.pb.gz"])
    x = tmp_path / "x"
    x.mkdir()
    run_program(py, x, 1.0, dump=True, options="output=x.pb.gz,quiet")
    duty = tmp_path / "duty"
    duty.mkdir()
    run_program(py, duty, 1.5, dump=True, options="period=0.3s,keep=0,output=.,quiet")
    on = tmp_path / "on"
    on.mkdir()
    run_program(py, on, 1.5, options="period=0.3s,keep=0,budget=off,output=.,quiet")
    files = [one / "one.pb.gz", x / "x.pb.gz"] + [
        p for d in (x, duty, on) for p in sorted(d.glob("*.pb.gz")) if p.name != "x.pb.gz"]
    assert any(p.name.startswith("shadowprof-dump-") for p in files)
    assert len([p for p in files if p.parent == duty]) >= 3
    for f in files:
        # Always on (budget=off) the core starts inside the .pth line, and site runs
        # that line a second time (a venv's lib and lib64): the writers leave it out.
        assert_no_own_frame(f)


def test_strip_own_frames_moves_their_time_to_overhead():
    fns = {1: Function(1, "user", "/app/u.py", 1),
           2: Function(2, "_loop", "/site/shadowprof/continuous.py", 9)}
    prof = Profile(fns, [Stack(1, ((1, 3),), 2, 20), Stack(7, ((2, 9), (1, 3)), 1, 10)],
                   {1: 5, 2: 1}, {(0, 2): 1, (2, 1): 2, (0, 1): 3})
    strip_own_frames(prof, lambda fn: "/shadowprof/" in fn.filename)
    assert 2 not in prof.functions and prof.calls == {1: 5}
    assert prof.edges == {(0, 1): 5}
    assert prof.overhead_weight_ns == 10 and prof.overhead == 1
    assert sorted(s.weight_ns for s in prof.stacks) == [10, 20]


# ----------------------------------------------------------------------- start-up

# As good as empty: everything it looks at is already imported (sys.modules).
CALIBRATED_AT_EXIT = """\
import atexit, sys
def show():
    print("calibrated", sys.modules["shadowprof._api"]._calibrated_ns is not None)
startup = sys.modules.get("shadowprof._startup")
if startup is not None and startup.session is not None:
    startup.session.stop()        # -X shadowprof: stop as at exit, then look
    show()
else:
    atexit.register(show)         # -m shadowprof: stopped before atexit runs
"""


def test_an_empty_program_never_calibrates(py, tmp_path):
    prog = tmp_path / "empty.py"
    prog.write_text(CALIBRATED_AT_EXIT)
    env = canary_venv.clean_env()
    for args in (["-m", "shadowprof", "-q"], ["-m", "shadowprof"],
                 ["-m", "shadowprof", "-q", "-o", str(tmp_path / "empty.pprof")],
                 ["-X", "shadowprof=quiet"]):
        r = subprocess.run([py, *args, str(prog)], capture_output=True, text=True,
                           env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["calibrated", "False"], (args, r.stdout, r.stderr)


def test_a_profile_that_needs_it_is_calibrated_once_after_the_snapshot():
    code = """
import shadowprof._api as api
from shadowprof import Profiler
calls = []
real = api._calibrate
def counted(*a, **k):
    calls.append(1)
    return real(*a, **k)
api._calibrate = counted
def leaf():
    pass
for _ in range(2):
    p = Profiler(interval="1ms").start()
    import time
    t = time.process_time()
    while time.process_time() - t < 0.2:
        leaf()
    prof = p.stop()
    names = {f.name for f in prof.functions.values()}
    # (on 3.9/3.10 the samples in the hook's code can already hold it all, and the
    # hook, with no inlining to lose, can cost less than the calibration resolves)
    print(len(calls), api._calibrated_ns is not None,
          prof.corrected_ns > 0 or prof.overhead_weight_ns > 0 or api._calibrated_ns == 0,
          "_f" in names or "_loop" in names)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    # Called at both stops; measured once (cached): the second call returns at once.
    assert r.stdout.split() == ["1", "True", "True", "False",
                                "2", "True", "True", "False"], r.stdout
    assert _api.needs_calibration({"samples": 0, "calls": {1: 1}}) is False
    assert _api.needs_calibration({"samples": 3, "calls": {}}) is False
    assert _api.needs_calibration({"samples": 3, "calls": {1: 1}}) is True
