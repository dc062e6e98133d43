"""The on-demand dump: on a signal (SIGUSR2 by default), write the profile so far and
every thread's current Python stack, without stopping anything.

The C handler (profiler/dumpsig.c) only writes a byte to a pipe; a daemon thread here,
blocked reading the pipe, does the dump as ordinary Python code.  The stacks are read
from the profiler's shadow stacks (``_core.thread_stacks()``: the functions each thread
is in, root first; no line numbers, since a shadow entry's frame may already be gone).
The thread is the profiler's own (``_core._ignore_thread``): never tracked nor
sampled, and marked before the profiler starts (install() waits for it).
The dump goes to stderr (stacks) and to two files in *directory*:
``shadowprof-dump-HOST-PID-TIME.pb.gz`` (the profile since the session started) and
``....stacks.txt``.
"""

import _thread
import os
import sys
import time

from . import _core

__all__ = ["DumpListener", "format_stacks"]


def format_stacks(stacks: dict) -> str:
    """Text of ``_core.thread_stacks()``: one block per thread, innermost call last
    (as in a traceback)."""
    # Never import threading here: first imported from this thread (not the main
    # one), it would take this thread for the main thread and hang at exit.
    threading = sys.modules.get("threading")
    names = {t.native_id: t.name for t in threading.enumerate()
             if getattr(t, "native_id", None)} if threading else {}
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
        self.cost_ns = 0
        self.fd = None

    def install(self) -> bool:
        """Install the handler; False if the application already handles or ignores
        the signal (then nothing changes)."""
        fd = _core._dump_signal(self.signo)
        if fd is None:
            return False
        self.fd = fd
        # A bare _thread (threading is not imported at start-up); it ends with the
        # process, as a daemon thread would.
        ready = _thread.allocate_lock()
        ready.acquire()
        _thread.start_new_thread(self._loop, (fd, ready))
        ready.acquire(timeout=5.0)   # marked as the profiler's own before profiling
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

    def _loop(self, fd: int, ready) -> None:
        _core._ignore_thread()   # the profiler never profiles itself
        ready.release()
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
        """Write the profile and the stacks now; returns the profile's path.  The
        thread CPU time it takes is added to ``cost_ns`` (shadowprof's own cost)."""
        t0 = time.thread_time_ns()
        try:
            return self._dump()
        finally:
            self.cost_ns += time.thread_time_ns() - t0

    def _dump(self) -> str:
        stacks = format_stacks(_core.thread_stacks())
        from .analysis import formats
        host = os.uname().nodename.replace("/", "_") or "host"
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
