"""python -X shadowprof[=OPTIONS]: the startup hook (shadowprof.pth) profiles the run
without any change to the program or its command line."""

import glob
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "data"))
import canary_venv  # noqa: E402

PROG = os.path.join(HERE, "data", "canary_prog.py")
FIB_CALLS = 5 * 21891          # calls of fib(20), five times
RESULT = "result 33825\n"


@pytest.fixture(scope="module")
def py(tmp_path_factory):
    return canary_venv.make_venv(str(tmp_path_factory.mktemp("xopt")))


def test_bare_flag_prints_report_and_keeps_stdout_and_exit_code(py):
    p = canary_venv.run(py, "-X", "shadowprof", PROG, "3")
    assert p.returncode == 3, p.stderr
    assert p.stdout == RESULT
    assert "Top functions by self time" in p.stderr
    fib_rows = [l for l in p.stderr.splitlines() if l.rstrip().endswith("canary_prog.py:6")
                and " fib " in l]
    assert fib_rows and f"{FIB_CALLS:,}" in fib_rows[0], p.stderr


def test_flag_with_output_file(py, tmp_path):
    from shadowprof.analysis.pprof import read_pprof
    out = tmp_path / "out.pb.gz"
    p = canary_venv.run(py, f"-Xshadowprof={out}", PROG)
    assert p.returncode == 0 and p.stdout == RESULT, p.stderr
    assert "Top functions" not in p.stderr
    prof = read_pprof(str(out))
    fib = [fid for fid, fn in prof.functions.items() if fn.name == "fib"]
    assert len(fib) == 1 and prof.calls[fib[0]] == FIB_CALLS


def test_full_form_with_pid_template(py, tmp_path):
    from shadowprof.analysis.pprof import read_pprof
    p = canary_venv.run(py, "-X", "shadowprof=interval=5ms,mode=wall,"
                        "output=prof-{pid}.pb.gz,format=pprof", PROG, cwd=str(tmp_path))
    assert p.returncode == 0 and p.stdout == RESULT, p.stderr
    files = glob.glob(str(tmp_path / "prof-*.pb.gz"))
    assert len(files) == 1, files
    prof = read_pprof(files[0])
    assert prof.mode == "wall" and prof.interval_ns == 5_000_000


def test_flag_wins_over_variable(py):
    p = canary_venv.run(py, "-X", "shadowprof=top=3", PROG,
                        env={"SHADOWPROF": "interval=nonsense"})
    assert p.returncode == 0 and p.stdout == RESULT
    assert "nonsense" not in p.stderr and "Top functions" in p.stderr


def test_forked_child_profiles_into_its_own_file(py, tmp_path, write_script):
    from shadowprof.analysis.pprof import read_pprof
    script = write_script(
        "import os, sys\n"
        "def parent_work():\n    return sum(i for i in range(1000))\n"
        "def child_work():\n    return sum(i for i in range(1000))\n"
        "parent_work()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    for _ in range(7): child_work()\n"
        "    sys.exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print('child', pid)\n")
    out = tmp_path / "out.pb.gz"
    p = canary_venv.run(py, f"-Xshadowprof={out}", script)
    assert p.returncode == 0, p.stderr
    child_pid = int(p.stdout.split()[1])
    parent, child = read_pprof(str(out)), read_pprof(str(tmp_path / f"out.{child_pid}.pb.gz"))
    calls = lambda prof, name: sum(n for fid, n in prof.calls.items()
                                   if prof.functions[fid].name == name)
    assert calls(child, "child_work") == 7 and calls(child, "parent_work") == 0
    assert calls(parent, "parent_work") == 1 and calls(parent, "child_work") == 0


def test_hook_without_flag_imports_nothing(py):
    code = ("import sys; print(sorted(m for m in sys.modules if m.startswith('shadowprof')))")
    p = canary_venv.run(py, "-c", code)
    assert p.returncode == 0 and p.stdout.strip() == "[]", (p.stdout, p.stderr)
    # Processing the .pth again, as site does, still imports nothing.  (What it costs
    # per start-up is measured in benchmarks/startup.py, not timed here.)
    code = ("import site, sys, sysconfig\n"
            "d = sysconfig.get_paths()['purelib']\n"
            "for _ in range(3): site.addpackage(d, 'shadowprof.pth', set())\n"
            "print(any(m.startswith('shadowprof') for m in sys.modules))\n")
    p = canary_venv.run(py, "-c", code)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"
