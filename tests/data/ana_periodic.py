"""One profiled run cut into periodic files, and the same run as one profile.

usage: python ana_periodic.py OUTDIR PERIODS

Profiles a small CPU workload at 1 ms, taking a snapshot of the C core after each
period and writing what happened in that period to OUTDIR/period-NNNN.json (every
tenth one as .pb.gz instead, to merge the formats together); then writes the whole
run, from the first snapshot to the last, as OUTDIR/whole.json.  Used by
tests/test_analysis_merge.py.
"""

import os
import sys
import time

from shadowprof import Profiler, _core
from shadowprof.analysis import formats
from shadowprof.analysis.pprof import write_pprof
from shadowprof.analysis.model import Profile


def spin(seconds):
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1
    return n


def parse(i):
    return spin(0.0004 + 0.0002 * (i % 3))


def render(i):
    return spin(0.0003)


def period(i):
    parse(i)
    if i % 2:
        render(i)


def main():
    out, periods = sys.argv[1], int(sys.argv[2])
    prof = Profiler(interval="1ms", correct_overhead=False)
    resolve = getattr(prof, "_resolve", lambda snap: snap)
    prof.start()
    try:
        first = prev = resolve(_core.snapshot())
        for i in range(periods):
            period(i)
            snap = resolve(_core.snapshot())
            piece = Profile.from_snapshot(snap, prev, correct=False)
            prev = snap
            # Plain writes (formats.write_profile fsyncs each file: slow for 1000).
            if i % 10 == 9:
                with open(os.path.join(out, f"period-{i:04d}.pb.gz"), "wb") as f:
                    write_pprof(piece, f)
            else:
                with open(os.path.join(out, f"period-{i:04d}.json"), "w") as f:
                    f.write(piece.to_json())
    finally:
        prof.stop()
    whole = Profile.from_snapshot(prev, first, correct=False)
    formats.write_profile(whole, os.path.join(out, "whole.json"), "json")


if __name__ == "__main__":
    main()
