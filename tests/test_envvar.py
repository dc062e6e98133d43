"""SHADOWPROF=OPTIONS: every option works from the environment, and every malformed
one gives exactly one line on stderr and an unprofiled, successful run."""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "data"))
import canary_venv  # noqa: E402

PROG = os.path.join(HERE, "data", "canary_prog.py")
RESULT = "result 33825\n"
REPORT = "Top functions by self time"


@pytest.fixture(scope="module")
def py(tmp_path_factory):
    return canary_venv.make_venv(str(tmp_path_factory.mktemp("env")))


def run(py, options, *args, cwd=None):
    p = canary_venv.run(py, PROG, "5", *args, env={"SHADOWPROF": options}, cwd=cwd)
    assert p.returncode == 5, p.stderr
    assert p.stdout == RESULT
    return p


def read(path):
    from shadowprof.analysis.pprof import read_pprof
    return read_pprof(str(path))


def test_interval_and_mode(py, tmp_path):
    run(py, f"interval=2ms,mode=wall,output={tmp_path}/p.pb.gz")
    prof = read(tmp_path / "p.pb.gz")
    assert (prof.interval_ns, prof.mode) == (2_000_000, "wall")


def test_rate_interval(py, tmp_path):
    run(py, f"interval=250hz,output={tmp_path}/p.pb.gz")
    assert read(tmp_path / "p.pb.gz").interval_ns == 4_000_000


@pytest.mark.parametrize("fmt,name,check", [
    # folded stacks, "frame;frame count" per line; main() runs through most samples
    ("collapsed", "p.out", lambda b: b"main (" in b and all(
        line.rsplit(b" ", 1)[1].isdigit() for line in b.splitlines())),
    ("json", "p.out", lambda b: b.startswith(b"{")),
    ("text", "p.out", lambda b: b"Top functions" in b),
])
def test_format(py, tmp_path, fmt, name, check):
    p = run(py, f"mode=wall,interval=1ms,output={tmp_path}/{name},format={fmt}")
    assert REPORT not in p.stderr
    assert check((tmp_path / name).read_bytes())


def test_quiet_and_top(py):
    assert run(py, "quiet").stderr == ""
    # The program is short (a few samples), and the correction can move all of a
    # function's time to [shadowprof overhead]: the table has at least one row.
    p = run(py, "top=1")
    block = p.stderr.split(REPORT)[1].split("\n\n")[0].strip().splitlines()
    assert len(block) == 1 + 1   # header and one row


def test_max_depth(py, tmp_path):
    run(py, f"max_depth=8,output={tmp_path}/p.pb.gz")
    prof = read(tmp_path / "p.pb.gz")
    assert prof.samples > 0 or prof.calls    # profiled, with the small stacks
    assert max(len(s.frames) for s in prof.stacks) <= 8 + 1   # + the truncation marker


def test_sample_rate(py):
    assert REPORT not in run(py, "sample_rate=0").stderr
    p = run(py, "sample_rate=1")
    assert REPORT in p.stderr
    # About half of 20 processes (binomial: 10 +- 2.2; accept 3..17).
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(lambda _: run(py, "sample_rate=50%,top=1").stderr, range(20)))
    chosen = [o for o in outs if REPORT in o]
    assert 3 <= len(chosen) <= 17, len(chosen)
    assert all("shadowprof.canary sample_rate=0.5" in o for o in chosen)


def test_signal_native_fork_keep_period_budget_accepted(py, tmp_path):
    p = run(py, "signal=off,native=off,fork=stop,top=1")
    assert REPORT in p.stderr
    p = run(py, "signal=usr1,top=1")
    assert REPORT in p.stderr
    d = tmp_path / "cont"
    p = run(py, f"period=10s,keep=3,budget=off,output={d}")
    assert len(list(d.glob("*.pb.gz"))) == 1    # the one partial period at exit
    # Duty-cycled: the short run ends before or in its first window (random offset).
    p = run(py, f"period=10s,keep=3,budget=5%,output={d}/duty")
    assert "periodic profiles in" in p.stderr
    assert len(list((d / "duty").glob("*.pb.gz"))) <= 1


@pytest.mark.parametrize("options,named", [
    ("colour=red", "colour"),
    ("interval=fast", "interval"),
    ("interval=10us", "interval"),
    ("mode=gpu", "mode"),
    ("format=svg,output=x.svg", "format"),
    ("output=x.unknownext", "x.unknownext"),
    ("output=/nonexistent-dir/p.pb.gz", "output"),
    ("output=/proc/p.pb.gz", "output"),
    ("period=1ms,output=/tmp", "period"),
    ("period=1s", "period"),
    ("keep=-1", "keep"),
    ("sample_rate=2", "sample_rate"),
    ("signal=kill", "signal"),
    ("native=maybe", "native"),
    ("max_depth=3", "max_depth"),
    ("budget=150%", "budget"),
    ("budget=1%", "budget"),
    ("quiet=loud", "quiet"),
    ("top=0", "top"),
    ("fork=spoon", "fork"),
    ("a.pb.gz,b.pb.gz", "b.pb.gz"),
    ("keep", "keep"),
    ("output={user}.pb.gz", "output"),
])
def test_malformed_option_one_line_unprofiled(py, options, named, tmp_path):
    p = run(py, options, cwd=str(tmp_path))
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("shadowprof: ") and named in lines[0], lines[0]
    assert lines[0].endswith("the program runs unprofiled")
    assert REPORT not in p.stderr
    assert not any(tmp_path.iterdir())


def test_parse_options_api():
    from shadowprof import _core
    assert _core.parse_options("interval=5ms,mode=wall,output=p-{pid}.pb.gz,"
                               "format=pprof") == {
        "interval_ns": 5_000_000, "mode": "wall", "output": "p-{pid}.pb.gz",
        "format": "pprof"}
    assert _core.parse_options("out.pb.gz") == {"output": "out.pb.gz"}
    assert _core.parse_options(" quiet , budget=2% ") == {"quiet": True, "budget": 0.02}
    with pytest.raises(ValueError, match="unknown option 'x'"):
        _core.parse_options("x=1")


def test_checked_in_gperf_output_is_current(tmp_path):
    import shutil
    import subprocess
    gperf = shutil.which("gperf")
    if gperf is None:
        pytest.skip("gperf is not installed")
    prof_dir = os.path.join(os.path.dirname(HERE), "profiler")
    out = tmp_path / "keys.h"
    subprocess.run([gperf, "options.gperf", f"--output-file={out}"], cwd=prof_dir,
                   check=True)
    strip = lambda text: [l for l in text.splitlines()[3:]]
    with open(os.path.join(prof_dir, "options_keys.h")) as f:
        assert strip(f.read()) == strip(out.read_text())


def test_profiler_from_options():
    from shadowprof import Profiler
    p = Profiler.from_options("interval=2ms,mode=wall,max_depth=64")
    assert (p.interval_ns, p.mode, p.max_depth) == (2_000_000, "wall", 64)
    with pytest.raises(ValueError, match="period"):
        Profiler.from_options("period=60s")
    with pytest.raises(ValueError, match="bad option mode=gpu"):
        Profiler.from_options("mode=gpu")


def test_native_from_the_environment(py, tmp_path):
    # native=on samples C stacks too: zlib's C code shows up under the Python caller.
    prog = tmp_path / "zprog.py"
    prog.write_text(
        "import os, time, zlib\n"
        "data = os.urandom(1 << 16) * 8\n"
        "def squeeze():\n"
        "    end = time.process_time() + 1.0\n"
        "    while time.process_time() < end:\n"
        "        zlib.compress(data, 9)\n"
        "squeeze()\n")
    out = tmp_path / "n.json"
    p = canary_venv.run(py, str(prog), env={"SHADOWPROF": f"native=on,output={out}"})
    assert p.returncode == 0, p.stderr
    from shadowprof import Profile
    prof = Profile.load_json(out)
    names = {prof.functions[f].name for s in prof.stacks for f, _ in s.frames}
    assert "squeeze" in names
    native = [n for n in names if "zlib" in n.lower() or "deflate" in n.lower()
              or "libz" in n.lower()]
    assert native, sorted(names)
