"""No run that loses its profile exits 0.

A destination that cannot be written is refused before the program starts (the
command line: one line and status 2, as argparse; -X shadowprof and SHADOWPROF: one
line, and the program runs unprofiled, as with any bad option).  A destination that
fails only at the end (the program removed or replaced it) sends the profile to the
temporary directory, says where, and the exit status is non-zero: the program's own
if it failed, else 120."""

import glob
import os
import sys

import pytest

from conftest import run_shadowprof

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "data"))
import canary_venv  # noqa: E402

# /proc takes no new files, even from root (for whom access() says yes everywhere).
UNWRITABLE = "/proc/shadowprof-test.json"
# The program makes its own profile's destination a directory: the write at the end
# fails, whatever the checks at the start said.
SPOIL = "import os, sys; os.mkdir({out!r}); print('ran'); sys.exit({code})"


def one_error_line(stderr):
    lines = [l for l in stderr.splitlines() if l.startswith("shadowprof:")]
    assert len(lines) == 1, stderr
    return lines[0]


# ------------------------------------------------------------------ command line

@pytest.mark.parametrize("case", ["directory", "unwritable", "missing"])
def test_cli_refuses_a_bad_destination_before_the_program_runs(tmp_path, case):
    out = {"directory": str(tmp_path), "unwritable": UNWRITABLE,
           "missing": str(tmp_path / "no" / "such" / "p.json")}[case]
    r = run_shadowprof("-q", "-f", "json", "-o", out, "-c", "print('ran')")
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""                       # the program never ran
    line = one_error_line(r.stderr)
    assert line.startswith("shadowprof: error: -o: ") and repr(out) in line
    fix = {"directory": "give a file name in it, such as "
                        f"{os.path.join(out, 'profile.json')!r}",
           "unwritable": "choose another directory",
           "missing": "create it or choose another path"}[case]
    assert fix in line


@pytest.mark.parametrize("code", [0, 3])
def test_cli_write_failing_at_the_end_falls_back_and_exits_non_zero(tmp_path, code):
    from shadowprof import Profile
    out = str(tmp_path / "prof.json")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    r = run_shadowprof("-q", "-o", out, "-c", SPOIL.format(out=out, code=code),
                       env={"TMPDIR": str(tmp)})
    assert r.stdout == "ran\n"
    assert r.returncode == (code or 120), r.stderr   # the program's own failure kept
    fallback = glob.glob(str(tmp / "shadowprof-*-prof.json"))
    assert len(fallback) == 1, os.listdir(tmp)
    line = one_error_line(r.stderr)
    assert f"cannot write the profile to {out!r}" in line
    assert f"written to {fallback[0]} instead" in line
    Profile.load_json(fallback[0])                    # a whole profile, readable


def test_cli_text_report_to_a_closed_pipe_falls_back(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    r = run_shadowprof("-q", "-o", "-", "-c", "import os; os.close(1)",
                       env={"TMPDIR": str(tmp)})
    assert r.returncode == 120, r.stderr
    (fallback,) = glob.glob(str(tmp / "shadowprof-*-stdout.txt"))
    assert open(fallback).read().startswith("shadowprof: ")   # the text report
    assert "cannot write the profile to stdout" in r.stderr


# ------------------------------------------------------------------ -X / SHADOWPROF

@pytest.fixture(scope="module")
def py(tmp_path_factory):
    return canary_venv.make_venv(str(tmp_path_factory.mktemp("lost")))


@pytest.mark.parametrize("how", ["-X", "SHADOWPROF"])
@pytest.mark.parametrize("case", ["directory", "unwritable"])
def test_startup_warns_of_a_bad_destination_at_start(py, tmp_path, how, case):
    out = str(tmp_path) if case == "directory" else UNWRITABLE
    opts = f"output={out},format=json"
    if how == "-X":
        r = canary_venv.run(py, f"-Xshadowprof={opts}", "-c", "print('ran')")
    else:
        r = canary_venv.run(py, "-c", "print('ran')", env={"SHADOWPROF": opts})
    assert r.returncode == 0 and r.stdout == "ran\n", r.stderr
    line = one_error_line(r.stderr)
    assert f"bad option output={out}" in line and f"(from {how}" in line
    assert line.endswith("the program runs unprofiled")
    assert ("is a directory; give a file name" if case == "directory"
            else "cannot write in directory /proc") in line


@pytest.mark.parametrize("how", ["-X", "SHADOWPROF"])
@pytest.mark.parametrize("code", [0, 3])
def test_startup_write_failing_at_exit_falls_back_and_exits_120(py, tmp_path, how,
                                                                code):
    from shadowprof.analysis.pprof import read_pprof
    out = str(tmp_path / "prof.pb.gz")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    prog = ["-c", SPOIL.format(out=out, code=code)]
    env = {"TMPDIR": str(tmp)}
    if how == "-X":
        r = canary_venv.run(py, f"-Xshadowprof=output={out}", *prog, env=env)
    else:
        r = canary_venv.run(py, *prog, env=dict(env, SHADOWPROF=f"output={out}"))
    assert r.stdout == "ran\n"
    # At exit the program's own status is out of reach: 120 in both cases.
    assert r.returncode == 120, r.stderr
    fallback = glob.glob(str(tmp / "shadowprof-*-prof.pb.gz"))
    assert len(fallback) == 1, os.listdir(tmp)
    line = one_error_line(r.stderr)
    assert f"cannot write the profile to {out}" in line
    assert f"written to {fallback[0]} instead" in line
    read_pprof(fallback[0])


def test_startup_profile_written_exits_with_the_programs_status(py, tmp_path):
    out = tmp_path / "prof.pb.gz"
    r = canary_venv.run(py, "-c", "import sys; sys.exit(3)",
                        env={"SHADOWPROF": f"output={out}"})
    assert r.returncode == 3 and out.exists(), r.stderr
