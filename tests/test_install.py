"""`pip install .` into a fresh venv gives a working shadowprof, whose own tests pass
against the installed package."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, **kw):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, **kw)
    assert r.returncode == 0, f"{cmd} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_pip_install_into_venv(tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", ROOT])
    # The installed package is used, not the source tree.
    r = run([py, "-c", "import shadowprof, shadowprof._core as c; print(c.__file__)"],
            cwd=str(tmp_path))
    assert str(venv) in r.stdout
    # python -m shadowprof and the console script both profile a program.
    prog = tmp_path / "prog.py"
    prog.write_text("def f(n):\n    return sum(i * i for i in range(n))\n"
                    "for _ in range(30):\n    f(20000)\nprint('done')\n")
    r = run([py, "-m", "shadowprof", "-i", "1ms", str(prog)], cwd=str(tmp_path))
    assert r.stdout == "done\n" and "Top functions by self time" in r.stderr
    assert "[30 calls]" in r.stderr
    r = run([str(venv / "bin" / "shadowprof"), "run", "-q", "-o",
             str(tmp_path / "p.json"), str(prog)], cwd=str(tmp_path))
    r = run([str(venv / "bin" / "shadowprof"), "report", str(tmp_path / "p.json")])
    assert "f  " in r.stdout
    # pytest, run directly against the installed package.
    run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "pytest"])
    tests = tmp_path / "tests"
    tests.mkdir()
    for name in ("conftest.py", "test_api.py"):
        (tests / name).write_text(open(os.path.join(ROOT, "tests", name)).read())
    r = run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
            cwd=str(tmp_path))
    assert " passed" in r.stdout and "failed" not in r.stdout
