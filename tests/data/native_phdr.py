"""Stress of tests/test_native.py: threads sit inside dl_iterate_phdr callbacks
(native_burn.walk_objects: C code outside libc and the loader, holding the loader's
lock, as libgcc's unwinder does for a C++ exception) while other threads run varied
Python code, whose unwinds keep missing libunwind's cache and so call
dl_iterate_phdr from their handlers; every thread is sampled at 1 kHz with native
unwinding.  A handler that waited for the loader lock while holding libunwind's
cache lock, against a callback thread's handler waiting for that cache lock, hung
here.  A hang shows as faulthandler's dump and a non-zero exit.

Usage: native_phdr.py EXT_DIR SECONDS MODE
Prints one JSON line: {"walks": N, "python_rounds": N, "samples": N, ...}.
"""
import decimal
import faulthandler
import json
import re
import sys
import threading
import time

ext_dir, seconds, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
faulthandler.dump_traceback_later(60, exit=True)
sys.path.insert(0, ext_dir)
import native_burn  # noqa: E402
import shadowprof  # noqa: E402
from shadowprof import _core  # noqa: E402

walks = []
rounds = [0]
stop = threading.Event()


def walker():
    walks.append(native_burn.walk_objects(seconds))


def python_work():
    # Many different C paths of the interpreter: compile, regular expressions,
    # decimal arithmetic, JSON, sorting, formatting.
    i = 0
    while not stop.is_set():
        code = compile(f"x = [{i} * k for k in range(50)]", "<stress>", "exec")
        ns = {}
        exec(code, ns)
        re.sub(r"(\d)(\d)", r"\2\1", " ".join(map(str, ns["x"])))
        decimal.Decimal(i).sqrt()
        json.loads(json.dumps({"k": ns["x"], "s": f"{i:08x}"}))
        sorted(ns["x"], key=lambda v: -v)
        native_burn.burn_b(2_000)
        i += 1
    rounds[0] += i


with shadowprof.Profiler(interval="1ms", mode=mode, native=True) as prof:
    threads = [threading.Thread(target=walker) for _ in range(2)]
    threads += [threading.Thread(target=python_work) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
snap = _core.snapshot()
profile = prof.profile
native_samples = sum(s.count for s in profile.stacks
                     if any(f in profile.native for f, _ in s.frames))
faulthandler.cancel_dump_traceback_later()
print(json.dumps(dict(walks=sum(walks), python_rounds=rounds[0], samples=profile.samples,
                      native_samples=native_samples, skipped=snap["native_skipped"],
                      failed=snap["native_failed"])))
