"""Stress the hook and the signal path, normally and under AddressSanitizer and
UndefinedBehaviorSanitizer (the extension rebuilt with -fsanitize, libasan preloaded
into the interpreter)."""

import os
import shutil
import subprocess
import sys


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRESS = os.path.join(ROOT, "tests", "data", "stress_signal.py")


def test_stress():
    r = subprocess.run([sys.executable, STRESS], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("ok")


def test_stress_under_asan_and_ubsan(tmp_path):
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build the sanitizer variant"
    libasan = subprocess.run([gcc, "-print-file-name=libasan.so"], capture_output=True,
                             text=True).stdout.strip()
    assert os.path.isabs(libasan), "gcc has no libasan (install gcc's sanitizer runtime)"
    env = dict(os.environ, EXTRA_CFLAGS="-fsanitize=address,undefined "
               "-fno-sanitize-recover=undefined")
    b = subprocess.run(["bash", os.path.join(ROOT, "tools", "devbuild.sh"), str(tmp_path),
                        sys.executable], env=env, capture_output=True, text=True)
    assert b.returncode == 0, b.stdout + b.stderr
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(tmp_path), LD_PRELOAD=libasan,
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    r = subprocess.run([sys.executable, STRESS], capture_output=True, text=True,
                       timeout=600, env=env)
    assert "AddressSanitizer" not in r.stderr, r.stderr[-5000:]
    assert "runtime error" not in r.stderr, r.stderr[-5000:]
    assert r.returncode == 0, r.stdout + r.stderr[-5000:]
    assert r.stdout.strip().endswith("ok")
