"""The on-demand dump: on a signal (SIGUSR2 by default), write the profile so far and
every thread's current Python stack, without stopping anything.

The C handler (profiler/dumpsig.c) only writes a byte to a pipe; a daemon thread here,
blocked reading the pipe, does the dump as ordinary Python code.  The stacks are read
from the profiler's shadow stacks (``_core.thread_stacks()``: the functions each thread
is in, root first; no line numbers, since a shadow entry's frame may already be gone).
The dump goes to stderr (stacks) and to two files in *directory*:
``shadowprof-dump-HOST-PID-TIME.pb.gz`` (the profile since the session started) and
``....stacks.txt``.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

from . import _core, formats

__all__ = ["DumpListener", "format_stacks"]


def format_stacks(stacks: dict) -> str:
    """Text of ``_core.thread_stacks()``: one block per thread, innermost call last
    (as in a traceback)."""
    names = {t.native_id: t.name for t in threading.enumerate()
             if getattr(t, "native_id", None)}
    lines = []
    for tid, frames in sorted(stacks.items()):
        lines.append(f"Thread {tid} ({names.get(tid, 'unnamed')}), "
                     f"{len(frames)} frames, most recent call last:")
        for name, filename, firstlineno in frames:
            where = f"  {filename}:{firstlineno}" if filename else ""
            lines.append(f"  {name}{where}")
    return "\n".join(lines) + "\n"


class DumpListener:
    """Install the dump signal *signo* and serve it from a daemon thread.  *profile*
    is a callable that returns the current Profile; *directory* receives the files."""

    def __init__(self, signo: int, profile, directory: str, quiet: bool = False):
        self.signo = signo
        self.profile = profile
        self.directory = directory
        self.quiet = quiet
        self.dumps = 0
        self.fd = None

    def install(self) -> bool:
        """Install the handler; False if the application already handles or ignores
        the signal (then nothing changes)."""
        fd = _core._dump_signal(self.signo)
        if fd is None:
            return False
        self.fd = fd
        threading.Thread(target=self._loop, args=(fd,), name="shadowprof-dump",
                         daemon=True).start()
        return True

    def uninstall(self) -> None:
        _core._dump_signal(0)

    def after_fork_in_child(self) -> None:
        """In a forked child: a pipe and a thread of its own."""
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None
            self.install()

    def _loop(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, 64)
            except InterruptedError:
                continue
            except OSError:
                return
            if not data:
                return
            try:
                self.dump()
            except Exception as e:
                print(f"shadowprof: cannot write the dump: {e}", file=sys.stderr)

    def dump(self) -> str:
        """Write the profile and the stacks now; returns the profile's path."""
        stacks = format_stacks(_core.thread_stacks())
        host = socket.gethostname().replace("/", "_") or "host"
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self.dumps += 1
        base = os.path.join(self.directory,
                            f"shadowprof-dump-{host}-{os.getpid()}-{stamp}-{self.dumps}")
        formats.write_profile(self.profile(), base + ".pb.gz", "pprof")
        formats.write_bytes(stacks.encode("utf-8"), base + ".stacks.txt")
        if not self.quiet:
            sys.stderr.write(f"shadowprof: dump written to {base}.pb.gz\n{stacks}")
            sys.stderr.flush()
        return base + ".pb.gz"
