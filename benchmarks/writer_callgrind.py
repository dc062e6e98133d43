"""Three writes (or WRITES) of a 2,000-stack (or STACKS) table by the C pprof writer,
with the deflater it picks (or DEFLATER: isal, libdeflate, zlib), for callgrind:

    PYTHONPATH=/tmp/spdev valgrind --tool=callgrind --toggle-collect=sp_export_write_pprof \
        python3.11 benchmarks/writer_callgrind.py [STACKS [WRITES [DEFLATER]]]
    callgrind_annotate --inclusive=yes callgrind.out.*   # sp_gzip: the deflate share

sp_pprof_emit's inclusive count is what runs with the GIL released (encoding,
compression, the write); the rest of sp_export_write_pprof holds the GIL.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import writer  # noqa: E402
from shadowprof import _core, pprof_writer  # noqa: E402

writer.fill(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 3):
    _core.write_pprof(None, None, None, threads={}, per_call_overhead_ns=40.0,
                      per_call_overhead_cap=0.5, comments=pprof_writer._comment_fn(["x"]),
                      level=1, deflater=sys.argv[3] if len(sys.argv) > 3 else None)
