"""Page faults and CPU of one pprof file of the live session in the steady state (a
writer called once a period): the C writer over benchmarks/writer.py's made-up table,
one write to warm up, then the medians of REPS writes (bytes returned, no file).

    PYTHONPATH=/tmp/spdev python3.11 benchmarks/writer_faults.py [STACKS [REPS]]

"faults" are the process's minor page faults during a write (getrusage): fresh
memory the kernel maps in, page by page; "gil" is the GIL-held part (info["gil_ns"]),
"encode" the encoding without the GIL, "gzip" the compression (wall times).
"""
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import writer  # noqa: E402
from shadowprof import _core, pprof_writer  # noqa: E402


def main() -> None:
    stacks = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    writer.fill(stacks)
    comments = pprof_writer._comment_fn(["x"])

    def write():
        return _core.write_pprof(None, None, None, threads={}, per_call_overhead_ns=40.0,
                                 per_call_overhead_cap=0.5, comments=comments, level=1)

    write()
    rows = []
    for _ in range(reps):
        r0, c0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time_ns()
        info, _, _ = write()
        c1, r1 = time.process_time_ns(), resource.getrusage(resource.RUSAGE_SELF)
        rows.append((r1.ru_minflt - r0.ru_minflt, (c1 - c0) / 1e6, info["gil_ns"] / 1e6,
                     (info["encode_ns"] - info["gil_ns"]) / 1e6, info["compress_ns"] / 1e6))
    med = [statistics.median(col) for col in zip(*rows)]
    print(f"{stacks} stacks, median of {reps}: faults {med[0]:.0f}, CPU {med[1]:.2f} ms, "
          f"gil {med[2]:.2f} ms, encode {med[3]:.2f} ms, gzip {med[4]:.2f} ms, "
          f"raw {info['raw_bytes']} bytes")


if __name__ == "__main__":
    main()
