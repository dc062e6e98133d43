"""What writing one pprof file of the live session costs: the Python path (snapshot,
Profile.from_snapshot, pprof.encode, gzip, atomic write: what continuous mode did
before) against the C writer (_core.write_pprof: encode from the core's tables,
gzip and write with the GIL released), at 2,000 and 200,000 distinct stacks (the
table's cap).

The table is filled with made-up stacks (_core._table_add, as the drain would add
them) over 2,000 real functions that the hook has counted: walks 5-41 frames deep
down a made-up call graph (each function calls 4 others from fixed lines), 4
threads, so the sizes are exact and the run short.  Times are the median of --reps
runs, wall and CPU (process time: the compression runs on the calling thread, so
CPU = wall on a quiet machine).  encode/gzip/write are the C writer's own split
(wall); "GIL ms" is the part of it that holds the GIL (marks, differences, filling
the encoder's profile: info["gil_ns"]); the encoding proper, gzip and the write run
without it.

    PYTHONPATH=/tmp/spdev python benchmarks/writer.py [--reps 5] [--sizes 2000,200000]
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import statistics
import sys
import tempfile
import time

import shadowprof
from shadowprof import _core, pprof_writer
from shadowprof.analysis import formats, pprof
from shadowprof.analysis.model import Profile

N_FUNCS = 2000
THREADS = (101, 102, 103, 104)


def make_functions(n: int) -> list:
    src = "".join(f"def f{i}(x=0):\n    return {i}\n\n\n" for i in range(n))
    ns: dict = {}
    exec(compile(src, "/bench/made_up_module.py", "exec"), ns)
    return [ns[f"f{i}"] for i in range(n)]


def fill(stacks: int, seed: int = 1) -> list:
    """Start a session (no real samples), count calls of N_FUNCS functions, add
    *stacks* distinct made-up stacks; returns the functions' code ids."""
    fns = make_functions(N_FUNCS)
    prof = shadowprof.Profiler(interval="60s", correct_overhead=False)
    prof.start()
    for f in fns:      # each function called from a few callers: calls and edges
        f()
    prof.stop()
    ids = [_core.code_id(f.__code__) for f in fns]
    # A program's shape: each function calls a few others from fixed lines; a stack
    # is a walk down that call graph from one of a few entry points, so stacks share
    # prefixes and locations as real ones do (and compress as real ones do).
    rnd = random.Random(seed)
    callees = [[(rnd.randrange(N_FUNCS), rnd.randint(2, 60)) for _ in range(4)]
               for _ in range(N_FUNCS)]
    entries = [rnd.randrange(N_FUNCS) for _ in range(8)]
    seen: set = set()
    while len(seen) < stacks - 1:
        depth = rnd.randint(4, 40)
        fid = rnd.choice(entries)
        frames = []
        for _ in range(depth):
            nxt, line = callees[fid][rnd.randrange(4)]
            frames.append((ids[fid], line))
            fid = nxt
        frames.append((ids[fid], rnd.randint(2, 60)))
        tid = rnd.choice(THREADS)
        key = (tid, tuple(frames))
        if key in seen:
            continue
        seen.add(key)
        _core._table_add(tid, frames, rnd.randint(1, 5), rnd.randint(1, 50_000_000))
    return ids


def python_path(path: str, base) -> None:
    """Continuous mode before the C writer: one period file from snapshots."""
    snap = _core.snapshot()
    prof = Profile.from_snapshot(snap, base, per_call_overhead_ns=40.0,
                                 per_call_overhead_cap=0.5)
    data = pprof.encode(prof, ["shadowprof.period note"])
    formats.write_bytes(gzip.compress(data, compresslevel=6, mtime=0), path)


def c_path(path: str, base, level: int, fsync: bool) -> dict:
    info, _, _ = _core.write_pprof(
        path, base, None, threads={}, per_call_overhead_ns=40.0,
        per_call_overhead_cap=0.5, comments=pprof_writer._comment_fn(["note"]),
        level=level, fsync=fsync)
    return info


def timed(fn, reps: int) -> tuple:
    walls, cpus = [], []
    for _ in range(reps):
        c0, w0 = time.process_time_ns(), time.perf_counter_ns()
        out = fn()
        walls.append(time.perf_counter_ns() - w0)
        cpus.append(time.process_time_ns() - c0)
    return statistics.median(walls) / 1e6, statistics.median(cpus) / 1e6, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--python-reps", type=int, default=1,
                    help="runs of the (slow) Python path")
    ap.add_argument("--sizes", default="2000,200000")
    ap.add_argument("--no-python", action="store_true", help="skip the Python path")
    ap.add_argument("--dump-raw", metavar="DIR",
                    help="also write each size's uncompressed message to DIR/SIZE.pb "
                    "(for benchmarks/deflate.c)")
    args = ap.parse_args(argv)
    print(f"Python {sys.version.split()[0]}, {N_FUNCS} functions, stacks 4-40 deep, "
          f"median of {args.reps} (Python path: {args.python_reps})")
    print("| stacks | path | wall ms | CPU ms | GIL ms | encode ms | gzip ms | write ms "
          "| raw MB | file MB | deflate |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "p.pb.gz")
        for n in (int(s) for s in args.sizes.split(",")):
            fill(n)
            size = _core.memory()["table_stacks"]
            if args.dump_raw:
                _, _, raw = _core.write_pprof(
                    None, None, None, threads={}, per_call_overhead_ns=40.0,
                    per_call_overhead_cap=0.5, comments=pprof_writer._comment_fn(["note"]),
                    compress=False)
                with open(os.path.join(args.dump_raw, f"{n}.pb"), "wb") as f:
                    f.write(raw)
            rows = [("C, gzip 1, fsync", 1, True), ("C, gzip 1, no fsync", 1, False),
                    ("C, gzip 6, fsync", 6, True)]
            for label, level, fs in rows:
                wall, cpu, info = timed(lambda: c_path(path, None, level, fs), args.reps)
                print(f"| {size} | {label} | {wall:.1f} | {cpu:.1f} | "
                      f"{info['gil_ns'] / 1e6:.1f} | {info['encode_ns'] / 1e6:.1f} | {info['compress_ns'] / 1e6:.1f} | "
                      f"{info['write_ns'] / 1e6:.1f} | {info['raw_bytes'] / 1e6:.2f} | "
                      f"{os.path.getsize(path) / 1e6:.2f} | {info['deflater']} |")
            if args.no_python:
                continue
            wall, cpu, _ = timed(lambda: python_path(path, None), args.python_reps)
            print(f"| {size} | Python (snapshot, model, encode, gzip 6) | {wall:.1f} | "
                  f"{cpu:.1f} | | | | | | {os.path.getsize(path) / 1e6:.2f} | zlib |")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
