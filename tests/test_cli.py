"""python -m shadowprof: the profiled program keeps its argv, __main__, stdout, exit
code and exceptions; the report goes to stderr; bad options fail before it runs."""

import json
import os
import subprocess
import sys

from conftest import run_shadowprof

PROGRAM = """\
import sys, time
def hot():
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
def helper(x):
    return x + 1
def main():
    hot()
    print(sum(helper(i) for i in range(100)))
    print("argv=" + repr(sys.argv[1:]), "name=" + __name__)
if __name__ == "__main__":
    main()
"""


def test_script_report_stdout_argv_exit_code(write_script):
    script = write_script(PROGRAM + "sys.exit(3)\n")
    r = run_shadowprof("-i", "1ms", script, "a", "--flag")
    assert r.returncode == 3
    assert r.stdout.splitlines() == ["5050", "argv=['a', '--flag'] name=__main__"]
    err = r.stderr
    assert err.startswith("shadowprof: ")
    assert "Top functions by self time" in err and "Call tree" in err
    hot_line = next(l for l in err.splitlines() if " hot " in l)
    assert "%" in hot_line
    helper_line = next(l for l in err.splitlines() if " helper " in l or "helper  " in l)
    assert " 100 " in helper_line or " 100  " in helper_line   # exact call count
    # Our own frames (the command line's) are not in the report.
    assert "__main__.py" not in err and "runpy" not in err


def test_exception_passes_through_with_users_traceback(write_script):
    script = write_script("def f():\n    raise ValueError('boom')\nf()\n")
    r = run_shadowprof(script)
    assert r.returncode == 1
    assert "ValueError: boom" in r.stderr
    assert 'in f' in r.stderr and "shadowprof" in r.stderr  # report still printed
    tb = r.stderr[r.stderr.index("Traceback"):]
    assert "_api.py" not in tb and "__main__.py" not in tb


def test_same_behaviour_as_plain_python(write_script):
    script = write_script(PROGRAM + "sys.exit(7)\n")
    plain = subprocess.run([sys.executable, script, "x"], capture_output=True, text=True)
    prof = run_shadowprof("-q", script, "x")
    assert (plain.returncode, plain.stdout) == (prof.returncode, prof.stdout)
    assert prof.stderr == ""


def test_module_and_code(tmp_path):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tool.py").write_text(PROGRAM)
    r = run_shadowprof("-m", "mypkg.tool", "1", cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "argv=['1'] name=__main__" in r.stdout
    assert "hot" in r.stderr
    r = run_shadowprof("-c", "import sys; print(sys.argv); sys.exit(4)", "z")
    assert r.returncode == 4
    assert r.stdout.strip() == "['-c', 'z']"


def test_help_explains():
    r = run_shadowprof("--help")
    assert r.returncode == 0
    for word in ("--interval", "--output", "--format", "--mode", "-m MODULE", "text",
                 "json"):
        assert word in r.stdout


def test_bad_options_fail_before_the_program_runs(tmp_path, write_script):
    marker = tmp_path / "ran"
    script = write_script(f"open({str(marker)!r}, 'w').close()\n")
    cases = [
        (["-i", "fast"], "bad option interval=fast"),
        (["-i", "5"], "a bare number is seconds"),
        (["--max-depth", "3"], "bad option max_depth=3"),
        (["-f", "xml"], "invalid choice"),
        (["-o", str(tmp_path / "out.xyz")], "cannot tell the format"),
        (["-o", str(tmp_path / "nodir" / "out.json")], "does not exist"),
        (["--mode", "gpu"], "invalid choice"),
    ]
    for opts, message in cases:
        r = run_shadowprof(*opts, script)
        assert r.returncode == 2, (opts, r.stderr)
        assert message in r.stderr, (opts, r.stderr)
        assert len([l for l in r.stderr.splitlines() if "error" in l]) == 1
        assert not marker.exists(), opts
    r = run_shadowprof(str(tmp_path / "missing.py"))
    assert r.returncode == 2 and "no such file" in r.stderr


def test_output_files_json_and_text(tmp_path, write_script):
    script = write_script(PROGRAM)
    r = run_shadowprof("-q", "-o", str(tmp_path / "p.json"), script)
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["format"] == "shadowprof-profile"
    names = {f[1] for f in data["functions"]}
    assert {"main", "hot", "helper"} <= names
    r = run_shadowprof("-q", "-o", str(tmp_path / "p.txt"), script)
    assert "Top functions by self time" in (tmp_path / "p.txt").read_text()
    # Written atomically: no temporary files left behind.
    assert sorted(os.listdir(tmp_path)) == ["p.json", "p.txt", "prog.py"]
    # The console script's report subcommand reads the JSON back.
    r = subprocess.run([sys.executable, "-m", "shadowprof", "report",
                        str(tmp_path / "p.json")], capture_output=True, text=True)
    assert r.returncode == 0 and "hot" in r.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    r = subprocess.run([sys.executable, "-m", "shadowprof", "report", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "not a shadowprof JSON profile" in r.stderr


def test_quiet_pprof_output_builds_no_profile(tmp_path, write_script):
    """-q -o F.pprof writes the file from the core's tables at exit without a
    snapshot or a Profile (they took 0.2 s at 7,000 stacks), still without the
    command line's own frames (runpy's too, under -m) and with exact calls."""
    write_script(PROGRAM, name="prog.py")
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(
        "from shadowprof.analysis import model\n"
        "def refuse(*args, **kwargs):\n"
        "    raise AssertionError('a Profile was built')\n"
        "model.Profile.from_snapshot = refuse\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(guard),
                                                      env.get("PYTHONPATH")]))
    import runpy
    import shadowprof
    from shadowprof.analysis.pprof import read_pprof
    package = os.path.dirname(shadowprof.__file__) + os.sep
    for target in (["prog.py"], ["-m", "prog"]):
        out = tmp_path / "p.pprof"
        r = subprocess.run([sys.executable, "-m", "shadowprof", "-q", "-i", "1ms", "-o",
                            str(out), *target], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        profile = read_pprof(str(out))
        ours = {fid for fid, fn in profile.functions.items()
                if fn.filename.startswith((package, "<frozen runpy", runpy.__file__))}
        roots = {profile.functions[s.frames[0][0]].filename for s in profile.stacks}
        assert roots and roots <= {str(tmp_path / "prog.py"), "prog.py", "<shadowprof>"}
        assert not [s for s in profile.stacks if ours & {f for f, _ in s.frames}]
        assert not ours & {fid for fid, n in profile.calls.items() if n}
        assert not ours & {f for edge in profile.edges for f in edge}
        calls = {fn.name: profile.calls.get(fid, 0)
                 for fid, fn in profile.functions.items()}
        assert calls["helper"] == 100 and calls["hot"] == 1, calls


def test_forked_child_does_not_write_the_parents_report(tmp_path, write_script):
    script = write_script(
        "import os, sys\n"
        "def work():\n    return sum(i * i for i in range(2000000))\n"
        "work()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n    work()\n    sys.exit(0)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print('child exit', os.waitstatus_to_exitcode(status))\n")
    out = tmp_path / "p.json"
    # About 120 ms of CPU in the parent: 200,000 items (12 ms) let a 10 ms
    # interval on a 4 ms tick go by without a sample now and then.
    r = run_shadowprof("-i", "1ms", "-o", str(out), script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "child exit 0"
    assert r.stderr.count("Top functions by self time") == 1
    assert json.loads(out.read_text())["format"] == "shadowprof-profile"
