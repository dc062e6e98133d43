"""Stress of tests/test_native.py: threads dlopen and dlclose shared objects in a
loop (ctypes.CDLL, and imports of fresh extension modules) while every thread is
sampled at 1 kHz with native unwinding.  A deadlock with the dynamic loader shows as a
hang: faulthandler then dumps the threads and exits non-zero.

Usage: native_dlopen.py EXT_DIR TMP_DIR SECONDS
Prints one JSON line: {"dlopens": N, "imports": N, "native_samples": N, ...}.
"""
import _ctypes
import ctypes
import faulthandler
import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
import threading
import time

ext_dir, tmp_dir, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
faulthandler.dump_traceback_later(90, exit=True)
sys.path.insert(0, ext_dir)
import native_burn  # noqa: E402
import shadowprof  # noqa: E402
from shadowprof import _core  # noqa: E402

src = os.path.join(ext_dir, [f for f in os.listdir(ext_dir)
                             if f.startswith("native_burn")][0])
copies = []
for i in range(6):
    dst = os.path.join(tmp_dir, f"dl_copy_{i}.so")
    shutil.copy(src, dst)
    copies.append(dst)

counts = {"dlopens": 0, "imports": 0}
lock = threading.Lock()
stop = threading.Event()


def dlopen_loop(k):
    i = k
    while not stop.is_set():
        lib = ctypes.CDLL(copies[i % len(copies)])
        _ctypes.dlclose(lib._handle)
        i += 1
        with lock:
            counts["dlopens"] += 1


def import_loop():
    # A fresh extension module each time: a new file under the module's own name, so
    # the import really dlopens it (extension modules are never unloaded).
    n = 0
    while not stop.is_set() and n < 40:
        path = os.path.join(tmp_dir, f"imp{n}", "native_burn.so")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copy(src, path)
        loader = importlib.machinery.ExtensionFileLoader(f"native_burn", path)
        spec = importlib.util.spec_from_file_location("native_burn", path, loader=loader)
        mod = importlib.util.module_from_spec(spec)
        loader.exec_module(mod)
        mod.burn_b(20_000)
        n += 1
        with lock:
            counts["imports"] += 1


with shadowprof.Profiler(interval="1ms", native=True) as prof:
    threads = [threading.Thread(target=dlopen_loop, args=(k,)) for k in range(3)]
    threads.append(threading.Thread(target=import_loop))
    for t in threads:
        t.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        native_burn.burn_a(200_000)
    stop.set()
    for t in threads:
        t.join()
snap = _core.snapshot()
profile = prof.profile
native_samples = sum(s.count for s in profile.stacks
                     if any(f in profile.native for f, _ in s.frames))
faulthandler.cancel_dump_traceback_later()
print(json.dumps(dict(counts, native_samples=native_samples, samples=profile.samples,
                      skipped=snap["native_skipped"], failed=snap["native_failed"])))
