"""Helpers shared by tests/test_formats_*.py: a made-up profile that exercises every
field, a real profile of fmt_workload.py, field-by-field comparison, and the
environment for the external tools (go, protoc) under Bazel's sandbox."""

import os
import shutil
import subprocess
import sys

import pytest

from shadowprof.analysis.model import SYNTHETIC_FILE, Function, Profile, Stack

DATA = os.path.dirname(os.path.abspath(__file__))
WORKLOAD = os.path.join(DATA, "fmt_workload.py")
PROTO = os.path.join(DATA, "fmt_profile.proto")
GO_PROGRAM = os.path.join(DATA, "fmt_goprof.go")

SCALARS = ("mode", "interval_ns", "samples", "weight_ns", "lost", "lost_weight_ns",
           "overhead", "overhead_weight_ns", "table_full", "start_unix_ns",
           "duration_ns", "cpu_ns", "per_call_overhead_ns", "corrected_ns")


def made_up_profile(mode="cpu") -> Profile:
    """Every case an exporter must carry: synthetic frames (ids <= 0), recursion, calls
    from the root, calls without a recorded edge, a function that was called but never
    sampled, non-integer weights, a weight-only stack (count 0), several threads, a
    thread without samples, names with ';', spaces and non-ASCII characters."""
    f = "/src/app.py"
    functions = {
        1: Function(1, "<module>", f, 1),
        2: Function(2, "main", f, 10),
        3: Function(3, "Handler.handle.<locals>.parse;v2", f, 20),
        4: Function(4, "rec", "/src/lib/util é.py", 5),
        5: Function(5, "only_called", f, 40),
        6: Function(6, "leaf", f, 50),
        -1: Function(-1, "[shadowprof overhead]", SYNTHETIC_FILE, 0),
        -2: Function(-2, "[lost samples]", SYNTHETIC_FILE, 0),
    }
    stacks = [
        Stack(101, ((1, 3), (2, 12), (4, 6), (4, 6), (4, 7), (6, 51)), 7, 7_300_000.4),
        Stack(101, ((1, 3), (2, 12), (3, 22)), 3, 2_999_999.5),
        Stack(101, ((1, 3), (2, 13), (3, 22)), 1, 1_000_000),
        Stack(202, ((6, 52),), 4, 4_100_000),
        Stack(202, ((-2, 0),), 2, 2_000_000),
        Stack(0, ((-1, 0),), 0, 123_456.7),
    ]
    calls = {1: 1, 2: 1, 3: 5, 4: 9, 5: 7, 6: 30}
    edges = {(0, 1): 1, (1, 2): 1, (2, 3): 5, (2, 4): 3, (4, 4): 6, (4, 6): 20,
             (0, 6): 10, (2, 5): 5}  # only_called: 2 calls without an edge
    return Profile(
        functions=functions, stacks=stacks, calls=calls, edges=edges, mode=mode,
        interval_ns=1_000_000, samples=17, weight_ns=17_400_000, lost=2,
        lost_weight_ns=2_000_000, overhead=1, overhead_weight_ns=50_000,
        table_full=0, start_unix_ns=1_700_000_000_123_456_789,
        duration_ns=250_000_000, cpu_ns=17_500_000, per_call_overhead_ns=41.25,
        corrected_ns=123_456.7,
        threads={101: "MainThread", 202: "worker ünï", 303: "idle thread"})


def rounded(profile: Profile) -> Profile:
    """*profile* with each stack's weight rounded to whole ns (as pprof stores it)."""
    return Profile(**{**profile.__dict__, "stacks": [
        Stack(s.thread_id, s.frames, s.count, round(s.weight_ns))
        for s in profile.stacks]})


def assert_same_profile(got: Profile, want: Profile) -> None:
    """Field by field, with a message that names the field."""
    assert got.functions == want.functions, "functions"
    assert got.stacks == want.stacks, "stacks"
    assert got.calls == want.calls, "calls"
    assert got.edges == want.edges, "edges"
    assert got.threads == want.threads, "threads"
    for k in SCALARS:
        assert getattr(got, k) == getattr(want, k), k
        assert type(getattr(got, k)) is type(getattr(want, k)), k


def run_cli(*args, cwd=None, timeout=120):
    full_env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "shadowprof", *args], cwd=cwd,
                          env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def profile_workload(out_path, *extra) -> subprocess.CompletedProcess:
    """Profile fmt_workload.py with the command line, writing *out_path*."""
    r = run_cli("-q", "-i", "1ms", *extra, "-o", str(out_path), WORKLOAD)
    assert r.returncode == 0, r.stderr
    assert os.path.exists(out_path), r.stderr
    return r


def tool(name: str) -> str:
    """The path of an external tool the tests need; fail (not skip) without it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name!r} not found on PATH: install Debian's "
                    f"{'golang-go' if name == 'go' else 'protobuf-compiler'} "
                    "(.ci/run does)")
    return path


def go_env(tmp) -> dict:
    """Environment for go and go tool pprof: offline, caches in *tmp*, no modules."""
    env = dict(os.environ)
    tmp = str(tmp)
    env.update(HOME=tmp, GOCACHE=os.path.join(tmp, "gocache"),
               GOPATH=os.path.join(tmp, "gopath"), GO111MODULE="off", GOPROXY="off",
               GOFLAGS="", CGO_ENABLED="0", GOTOOLCHAIN="local",
               PPROF_TMPDIR=os.path.join(tmp, "pprof"))
    return env
