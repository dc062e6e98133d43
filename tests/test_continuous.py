"""Continuous mode (period=): one complete pprof file per period, counts of each
period only, old files pruned, never a partial file under a final name.  Always on
(budget=off) here; the duty-cycled windows of budget= are in test_duty.py."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "data"))
import canary_venv  # noqa: E402

SERVER = os.path.join(HERE, "data", "canary_server.py")
SUMMARY = re.compile(r"shadowprof: (\d+) periodic profiles in (.*) \((\d+) samples in total\)")


@pytest.fixture(scope="module")
def py(tmp_path_factory):
    return canary_venv.make_venv(str(tmp_path_factory.mktemp("cont")))


def serve(py, options, seconds):
    p = canary_venv.run(py, SERVER, str(seconds), env={"SHADOWPROF": options})
    assert p.returncode == 0, p.stderr
    m = SUMMARY.search(p.stderr)
    assert m, p.stderr
    return int(p.stdout), int(m.group(1)), int(m.group(3))


def calls_of(prof, name):
    return sum(n for fid, n in prof.calls.items()
               if prof.functions[fid].name.split(".")[-1] == name)


def test_files_cover_each_period_exactly(py, tmp_path):
    from shadowprof.analysis.pprof import decode, read_pprof
    import gzip
    d = tmp_path / "profiles"
    served, written, total = serve(py, f"period=0.5s,keep=0,interval=1ms,budget=off,output={d}",
                                   2.6)
    files = sorted(d.glob("*.pb.gz"))
    assert len(files) == written
    assert 4 <= written <= 8, written     # 2.6 s / 0.5 s, plus the partial last one
    host_pid = {f.name.rsplit("-", 1)[0] for f in files}
    assert len(host_pid) == 1             # one HOST-PID-START prefix
    profs = [read_pprof(str(f)) for f in files]
    assert total > 0 and sum(p.samples for p in profs) == total
    # Exact call counts: every request served is in exactly one file.
    assert sum(calls_of(p, "do_GET") for p in profs) == served
    assert sum(calls_of(p, "fib") for p in profs) == served * 3193   # calls of fib(16)
    comments = gzip.decompress(files[0].read_bytes())
    assert b"shadowprof.period file=" in comments
    assert any(c.startswith("shadowprof.period") for c in decode(comments).comments)
    assert not list(d.glob(".*.tmp"))


def test_old_files_pruned(py, tmp_path):
    d = tmp_path / "profiles"
    served, written, total = serve(py, f"period=0.3s,keep=2,budget=off,output={d}", 1.5)
    files = sorted(f.name for f in d.glob("*.pb.gz"))
    assert written >= 4 and len(files) == 2
    seqs = [int(f.split("-")[-1].split(".")[0]) for f in files]
    assert seqs == [written - 1, written]


def test_kill_mid_write_never_leaves_a_partial_file(py, tmp_path):
    from shadowprof.analysis.pprof import read_pprof
    d = tmp_path / "profiles"
    # Many distinct functions make each file slow enough to be caught mid-write.
    prog = tmp_path / "many.py"
    prog.write_text(
        "import time\n"
        "fs = []\n"
        "for i in range(3000):\n"
        "    exec(f'def f{i}(x):\\n    return x + {i}\\n')\n"
        "    fs.append(globals()[f'f{i}'])\n"
        "while True:\n"
        "    for f in fs: f(1)\n")
    # Kills at several moments; on a loaded machine the first files may come late,
    # so the later kills wait longer until some file was written.
    for delay in (0.35, 0.5, 0.62, 0.8, 1.05, 1.6, 2.5, 4.0):
        if delay > 1.05 and list(d.glob("*.pb.gz")):
            break
        proc = subprocess.Popen([py, str(prog)], env=canary_venv.clean_env(
            SHADOWPROF=f"period=0.1s,keep=0,interval=1ms,budget=off,output={d}"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finals = list(d.glob("*.pb.gz"))
    assert finals
    for f in finals:
        assert not f.name.startswith(".")
        read_pprof(str(f))      # complete: decodes


def test_start_up_imports_no_reader_code(tmp_path):
    # An always-on process pays for every module continuous mode imports at start:
    # socket, tempfile, dataclasses (with inspect), json and re (about 40 ms of CPU
    # together) and gzip are not among them.  -S: no site, whose .pth files may
    # import some of them first; this interpreter's path is handed over instead.
    code = ("import sys; before = set(sys.modules)\n"
            "import shadowprof._startup as s; s.run()\n"
            "print(sorted(set(sys.modules) - before))\n"
            "print(sorted(before))\n")
    env = dict(os.environ, SHADOWPROF=f"period=1s,quiet,output={tmp_path}",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    loaded, before = map(eval, r.stdout.splitlines())
    assert "shadowprof.continuous" in loaded    # the writer did start
    heavy = ("socket", "tempfile", "dataclasses", "inspect", "json", "re", "gzip")
    assert not set(heavy) & set(before), before     # each is a real check
    for name in heavy:
        assert name not in loaded, (name, loaded)
