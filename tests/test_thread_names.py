"""Threads keep their names after they end (issue 12, item 6): a thread that was
sampled, ended and was joined before its samples were drained shows under its
threading name in every format that carries thread names, and `report --thread NAME`
selects it."""

import json
import subprocess
import sys

import pytest

from conftest import run_shadowprof

# The worker blocks in C for fewer samples than make the handler ask for a drain, so
# its own last Python calls do not drain them either: it has ended (and left
# threading._active) before any drain sees its samples, the drain thread's first one a
# quarter of a second or more later.  Its name can only come from its Thread object,
# still referenced here.  The main thread then sleeps in C too.
PROGRAM = """\
import threading, time
t = threading.Thread(target=time.sleep, args=(0.015,), name="worker-1")
t.start()
t.join()
time.sleep(0.6)
"""


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("names")
    script = d / "prog.py"
    script.write_text(PROGRAM)
    out = {}
    for fmt, name in (("json", "p.json"), ("pprof", "p.pb.gz"),
                      ("speedscope", "p.speedscope.json")):
        path = d / name
        r = run_shadowprof("-q", "--mode", "wall", "-i", "1ms", "-f", fmt,
                           "-o", str(path), str(script))
        assert r.returncode == 0, r.stderr
        out[fmt] = path
    return out


def test_json_keeps_the_name(outputs):
    from shadowprof import Profile
    p = Profile.load_json(str(outputs["json"]))
    sampled = {s.thread_id for s in p.stacks}
    named = {tid for tid, name in p.threads.items() if name == "worker-1"}
    assert named and named <= sampled, p.threads


def test_pprof_keeps_the_name(outputs):
    from shadowprof.analysis.pprof import read_pprof
    p = read_pprof(str(outputs["pprof"]))
    assert "worker-1" in set(p.threads.values()), p.threads


def test_speedscope_keeps_the_name(outputs):
    doc = json.loads(outputs["speedscope"].read_text())
    names = [prof["name"] for prof in doc["profiles"]]
    assert any(n.startswith("worker-1 ") for n in names), names


@pytest.mark.parametrize("fmt", ["json", "pprof"])
def test_report_selects_the_ended_thread(outputs, fmt):
    r = subprocess.run([sys.executable, "-m", "shadowprof", "report", "--thread",
                        "worker-1", str(outputs[fmt])], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "threading.py" in r.stdout, r.stdout   # the worker's frames
