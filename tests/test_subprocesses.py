"""--subprocesses: the Python programs a profiled program starts (subprocess,
multiprocessing with spawn) profile themselves into FILE.PID.ext."""

import glob
import os

from conftest import run_shadowprof

PARENT = """\
import multiprocessing as mp, subprocess, sys
def in_spawned(n):
    return sum(i * i for i in range(n))
if __name__ == "__main__":
    child = subprocess.run([sys.executable, sys.argv[1], "7"], capture_output=True,
                           text=True, check=True)
    print("child said", child.stdout.strip())
    p = mp.get_context("spawn").Process(target=in_spawned, args=(1000,))
    p.start()
    p.join()
    print("spawned exit", p.exitcode)
"""

CHILD = """\
import builtins, sys
def in_child(n):
    return n * 6
print(sum(in_child(int(sys.argv[1])) for _ in range(5)) + getattr(builtins, "USER_SITE", 0))
"""


def load_calls(path):
    from shadowprof import Profile
    p = Profile.load_json(path)
    return {p.functions[k].name: v for k, v in p.calls.items()}


def test_children_profile_themselves(tmp_path):
    (tmp_path / "parent.py").write_text(PARENT)
    (tmp_path / "child.py").write_text(CHILD)
    # The program's own sitecustomize still runs in the children.
    user_site = tmp_path / "usersite"
    user_site.mkdir()
    (user_site / "sitecustomize.py").write_text("import builtins\nbuiltins.USER_SITE = 1000\n")
    path = os.pathsep.join([os.environ.get("PYTHONPATH", ""), str(user_site)])
    out = tmp_path / "prof.json"
    r = run_shadowprof("-q", "--subprocesses", "-o", str(out), str(tmp_path / "parent.py"),
                       str(tmp_path / "child.py"), cwd=str(tmp_path),
                       env={"PYTHONPATH": path.strip(os.pathsep)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["child", "said", "1210", "spawned", "exit", "0"]
    assert r.stderr == ""
    files = sorted(glob.glob(str(tmp_path / "prof.*.json")))
    calls = [load_calls(f) for f in files]
    # the subprocess, the spawned process (and the resource tracker it may start)
    assert any(c.get("in_child") == 5 for c in calls), (files, calls)
    assert any(c.get("in_spawned") == 1 for c in calls), (files, calls)
    parent = load_calls(out)
    assert "in_child" not in parent and "in_spawned" not in parent
    # the temporary sitecustomize directory is gone
    assert not [d for d in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                if "shadowprof-site-" in d]


def test_subprocesses_needs_an_output(tmp_path):
    (tmp_path / "child.py").write_text(CHILD)
    r = run_shadowprof("--subprocesses", str(tmp_path / "child.py"), "1")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "shadowprof: error: --subprocesses needs -o FILE: each child process writes "
        "FILE.PID.ext next to it"]
