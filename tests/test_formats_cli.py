"""Choosing an output format (-f, or the file's extension), the errors for unknown
ones (before the program runs), and atomic writes for every format: an interrupted
write never leaves a truncated profile under the final name."""

import gzip
import json
import os
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
import fmt_common as fc  # noqa: E402

from shadowprof.analysis import formats  # noqa: E402

ALL = ["text", "json", "pprof", "collapsed", "speedscope", "pstats"]


@pytest.mark.parametrize("path, fmt", [
    ("p.pb.gz", "pprof"), ("dir.x/p.pprof", "pprof"), ("p.collapsed", "collapsed"),
    ("p.speedscope.json", "speedscope"), ("p.json", "json"), ("p.pstats", "pstats"),
    ("p.txt", "text"), ("-", "text")])
def test_extension_chooses_format(path, fmt):
    assert formats.format_for(path, None) == fmt


def test_format_option_wins_and_lists_choices():
    assert sorted(formats.FORMATS) == sorted(ALL)
    assert formats.format_for("p.json", "pprof") == "pprof"
    with pytest.raises(ValueError) as e:
        formats.format_for("p.json", "svg")
    assert all(f in str(e.value) for f in ALL)
    with pytest.raises(ValueError) as e:
        formats.format_for("p.prof", None)
    for ext in (".pb.gz", ".pprof", ".collapsed", ".speedscope.json", ".pstats",
                ".txt", ".json"):
        assert ext in str(e.value)
    assert all(f in str(e.value) for f in ALL)


def test_cli_unknown_extension_or_format_fails_before_the_program(tmp_path):
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').close()"
    r = fc.run_cli("-o", str(tmp_path / "out.prof"), "-c", code)
    assert r.returncode == 2
    assert "cannot tell the format" in r.stderr and ".pb.gz" in r.stderr
    assert "speedscope" in r.stderr
    r = fc.run_cli("-f", "flame", "-o", str(tmp_path / "out.bin"), "-c", code)
    assert r.returncode == 2
    assert "invalid choice: 'flame'" in r.stderr and "pstats" in r.stderr
    assert not marker.exists()
    assert os.listdir(tmp_path) == []


def test_cli_writes_each_format(tmp_path):
    """-f with any file name, and stdout."""
    prog = "def f():\n    return sum(range(1000))\nfor _ in range(50):\n    f()\n"
    out = tmp_path / "out.bin"
    r = fc.run_cli("-q", "-f", "pprof", "-o", str(out), "-c", prog)
    assert r.returncode == 0, r.stderr
    assert gzip.decompress(out.read_bytes())
    r = subprocess.run([sys.executable, "-m", "shadowprof", "-q", "-f", "speedscope",
                        "-o", "-", "-c", prog], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["$schema"].startswith("https://www.speedscope.app/")
    r = fc.run_cli("-q", "-o", str(tmp_path / "p.txt"), "-c", prog)
    assert (tmp_path / "p.txt").read_text().startswith("shadowprof: ")


class Interrupted(Exception):
    pass


class FailingFile:
    """A binary file that takes *limit* bytes, then raises (a full disk, a signal)."""

    def __init__(self, f, limit, exc):
        self.f, self.left, self.exc = f, limit, exc

    def write(self, b):
        if len(b) > self.left:
            self.f.write(b[:self.left])
            self.f.flush()
            raise self.exc
        self.left -= len(b)
        return self.f.write(b)

    def __getattr__(self, name):
        return getattr(self.f, name)


@pytest.mark.parametrize("fmt", ALL)
@pytest.mark.parametrize("exc", [Interrupted("disk full"), KeyboardInterrupt()])
def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch, fmt, exc):
    prof = fc.made_up_profile()
    path = tmp_path / "prof.out"
    path.write_bytes(b"OLD PROFILE")
    real = formats.FORMATS[fmt]
    monkeypatch.setitem(formats.FORMATS, fmt,
                        lambda p, f: real(p, FailingFile(f, 50, exc)))
    with pytest.raises(type(exc)):
        formats.write_profile(prof, str(path), fmt)
    assert path.read_bytes() == b"OLD PROFILE"
    assert os.listdir(tmp_path) == ["prof.out"]    # the temporary file is gone
    monkeypatch.setitem(formats.FORMATS, fmt, real)
    formats.write_profile(prof, str(path), fmt)
    assert path.read_bytes() != b"OLD PROFILE"
    assert os.listdir(tmp_path) == ["prof.out"]


KILLED_WRITER = """\
import sys, time
sys.path.insert(0, {data!r})
import fmt_common as fc
from shadowprof.analysis import formats
from shadowprof.analysis.model import Profile, Stack
prof = fc.made_up_profile()
base = prof.stacks[0]
prof.stacks = [Stack(101, base.frames + ((6, i),), 1, 1000 + i) for i in range(300_000)]
print("ready", flush=True)
formats.write_profile(prof, sys.argv[1], "pprof")
print("done", flush=True)
"""


def test_killed_writer_never_leaves_a_truncated_profile(tmp_path):
    """SIGKILL while a big profile is being encoded and written: the final name still
    holds the old profile (a stray .shadowprof-*.tmp may remain; nothing can remove
    it after SIGKILL)."""
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER.format(data=os.path.dirname(fc.PROTO)))
    out = tmp_path / "prof.pb.gz"
    out.write_bytes(b"OLD PROFILE")
    p = subprocess.Popen([sys.executable, str(script), str(out)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 30
        while not any(n.startswith(".shadowprof-") for n in os.listdir(tmp_path)):
            assert time.monotonic() < deadline and p.poll() is None, \
                "writer finished before it could be killed"
            time.sleep(0.005)
        time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == -signal.SIGKILL
    assert out.read_bytes() == b"OLD PROFILE"
