"""The dump signal: SIGUSR2 writes the profile so far and every thread's stack,
read from the shadow stacks, without stopping the program."""

import os
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "data"))
import canary_venv  # noqa: E402

STUCK = (
    "import sys, threading\n"
    "stop = threading.Event()\n"
    "def stuck_in_worker():\n"
    "    while not stop.is_set():\n"
    "        sum(range(100))\n"
    "def waiting_in_main():\n"
    "    print('ready', flush=True)\n"
    "    sys.stdin.readline()\n"
    "t = threading.Thread(target=stuck_in_worker, name='worker'); t.start()\n"
    "waiting_in_main()\n"
    "stop.set(); t.join()\n"
    "print('done')\n")


@pytest.fixture(scope="module")
def py(tmp_path_factory):
    return canary_venv.make_venv(str(tmp_path_factory.mktemp("dump")))


def start(py, tmp_path, options):
    prog = tmp_path / "stuck.py"
    prog.write_text(STUCK)
    proc = subprocess.Popen([py, str(prog)], cwd=str(tmp_path), text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            env=canary_venv.clean_env(SHADOWPROF=options))
    assert proc.stdout.readline() == "ready\n"
    return proc


def test_dump_writes_profile_and_stacks_without_stopping(py, tmp_path):
    from shadowprof.analysis.pprof import read_pprof
    proc = start(py, tmp_path, "interval=1ms,quiet")
    time.sleep(0.3)
    proc.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 20
    while not list(tmp_path.glob("shadowprof-dump-*.stacks.txt")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    stacks = next(tmp_path.glob("shadowprof-dump-*.stacks.txt")).read_text()
    out, err = proc.communicate("\n", timeout=30)
    assert proc.returncode == 0 and out == "done\n", err
    blocks = stacks.split("Thread ")
    worker = [b for b in blocks if "(worker)" in b]
    main = [b for b in blocks if "(MainThread)" in b]
    assert worker and "stuck_in_worker" in worker[0]
    assert main and "waiting_in_main" in main[0]
    prof = read_pprof(str(next(tmp_path.glob("shadowprof-dump-*.pb.gz"))))
    assert any(fn.name == "stuck_in_worker" for fn in prof.functions.values())


def test_signal_off_leaves_the_default_action(py, tmp_path):
    proc = start(py, tmp_path, "signal=off,quiet")
    proc.send_signal(signal.SIGUSR2)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGUSR2
    assert not list(tmp_path.glob("shadowprof-dump-*"))


NO_THREADING = (
    "import os, signal, sys, time\n"
    "assert 'threading' not in sys.modules\n"
    "os.kill(os.getpid(), signal.SIGUSR2)\n"
    "deadline = time.monotonic() + 20\n"
    "while time.monotonic() < deadline and not any(\n"
    "        f.endswith('.stacks.txt') for f in os.listdir('.')):\n"
    "    time.sleep(0.01)\n"
    "import threading\n"
    "print(threading.main_thread() is threading.current_thread(), flush=True)\n")


@pytest.fixture(scope="module")
def bare_py(tmp_path_factory):
    # No base site-packages: their .pth files may import threading at start-up.
    return canary_venv.make_venv(str(tmp_path_factory.mktemp("bare")), system_site=False)


@pytest.mark.parametrize("options", ["quiet", "quiet,output=out.pb.gz"])
def test_a_dump_leaves_threading_to_the_main_thread(bare_py, tmp_path, options):
    # A program that never imported threading: the dump's thread must not be the
    # first to import it (threading would take it for the main thread; on 3.9 the
    # process then waits for it at exit, for ever).
    prog = tmp_path / "plain.py"
    prog.write_text(NO_THREADING)
    r = subprocess.run([bare_py, str(prog)], cwd=str(tmp_path), capture_output=True,
                       text=True, timeout=60, env=canary_venv.clean_env(SHADOWPROF=options))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "True\n", r.stderr
    assert list(tmp_path.glob("shadowprof-dump-*.stacks.txt"))
