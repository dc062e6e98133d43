"""The table of shadowprof's options: each option is defined here, once.

Every way of giving an option reads this table:

- the option string of ``python -X shadowprof=...``, ``SHADOWPROF=...`` and
  ``Profiler.from_options()`` (``where`` has ``x``): its keys, value syntax, bounds and
  error messages are compiled into the C parser (profiler/options.c) from
  profiler/options_table.h and profiler/options.gperf, which tools/gen_options.py
  writes from this table;
- the command line (``where`` has ``c``): profiler/__main__.py builds its argparse
  parser and its fast path from ``flags``, ``help`` and ``default``;
- the Profiler API (``where`` has ``a``): the keywords of ``Profiler()`` and their
  defaults, which tools/gen_options.py writes into profiler/_api.py between marker
  comments;
- the README's two option tables, written by tools/gen_options.py between marker
  comments.

Adding an option: a row below, then ``python3 tools/gen_options.py`` (it also runs
gperf), then its use.  tests/test_options.py fails while a generated file is stale.

Values are written in the option-string grammar and parsed by the C parser, the one
place that checks them.  Durations: a number with a unit (``10ms``, ``500us``,
``0.01s``, ``2m``, ``1h``) or a rate (``100hz``); a bare number is seconds, as in
``time.sleep``, and for ``interval`` it must be below 1 (``interval=5`` is refused as
ambiguous: 5 s or 5 ms?).  A Python number given to ``Profiler(interval=...)`` follows
the same rule.  This module imports nothing at start-up.
"""

__all__ = ["Option", "OPTIONS", "BY_KEY", "MODES", "FORMATS", "parse_interval",
           "parse_option", "defaults"]


class Option:
    """One option.

    key: its name in the option string and in ``Profiler()`` (``max_depth``).
    kind: duration | share | uint | bool | choice | signal | path.
    where: ``x`` option string, ``c`` command line, ``a`` Profiler keyword.
    default: in the option grammar (``"10ms"``), or None (not set).
    help: one sentence for --help and the README.
    flags: command-line flags (``("-i", "--interval")``); a bool option whose default
        is on has one flag that turns it off.
    lo, hi: bounds (ns for durations); off: ``off`` (or ``0``) means 0 / none.
    bare_below: durations: a bare number of seconds must be below this.
    choices: the words of a choice or signal option (signal: ``usr1`` is SIGUSR1).
    values: how the README shows the accepted values; hint: the error's advice.
    """

    __slots__ = ("key", "kind", "where", "default", "help", "flags", "metavar", "lo",
                 "hi", "off", "bare_below", "choices", "values", "hint", "doc_default")

    def __init__(self, key, kind, where, default, help, *, flags=(), metavar=None,
                 lo=None, hi=None, off=False, bare_below=None, choices=(), values=None,
                 hint=None, doc_default=None):
        self.key, self.kind, self.where = key, kind, where
        self.default, self.help, self.flags, self.metavar = default, help, flags, metavar
        self.lo, self.hi, self.off, self.bare_below = lo, hi, off, bare_below
        self.choices, self.values, self.hint = choices, values, hint
        self.doc_default = doc_default

    @property
    def dest(self) -> str:
        """The key of the parsed value in _core.parse_options's dict."""
        return self.key + "_ns" if self.kind == "duration" else self.key

    @property
    def value(self):
        """The default as the Python value the command line and Profiler() take:
        a bool for bool options, an int for uint ones, else the option text."""
        if self.kind == "bool":
            return self.default == "on"
        if self.kind == "uint" and self.default is not None:
            return int(self.default)
        return self.default

    def __repr__(self):
        return f"Option({self.key!r}, {self.kind!r}, {self.where!r})"


MODES = ("cpu", "wall")
FORMATS = ("pprof", "collapsed", "speedscope", "pstats", "text", "json")

OPTIONS = (
    Option("interval", "duration", "xca", "10ms",
           "sampling interval: 10ms, 1ms, 500us, 100hz, or a bare number of seconds "
           "below 1 (0.002); 5 is refused as ambiguous (5 s or 5 ms?): write the unit",
           flags=("-i", "--interval"), metavar="TIME", lo=100_000, hi=60_000_000_000,
           bare_below=1,
           values="`10ms`, `500us`, `0.01s`, `100hz`; a bare number is seconds, below 1",
           hint="give a duration from 100us to 60s such as 10ms, 500us, 0.01s, or a "
                "rate such as 100hz"),
    Option("mode", "choice", "xca", "cpu",
           "cpu: CPU time of each thread; wall: elapsed time",
           flags=("--mode",), choices=MODES),
    Option("output", "path", "xc", None,
           "file to write the profile to ('-' for stdout), in the format of -f "
           "(format=) or its extension; with period=, the directory of the periodic "
           "files; {pid}, {host} and {time} are filled in",
           flags=("-o", "--output"), metavar="FILE",
           values="path; a bare item is the output",
           hint="give a file name (or a directory with period=)"),
    Option("format", "choice", "xc", None,
           "format of the output file: pprof, collapsed, speedscope, pstats, text or "
           "json (default: from the extension); continuous mode writes pprof",
           flags=("-f", "--format"), metavar="FORMAT", choices=FORMATS,
           doc_default="from the extension"),
    Option("period", "duration", "x", "off",
           "continuous mode: one pprof file per period in the output directory",
           lo=100_000_000, hi=86_400_000_000_000, off=True,
           values="`60s`, `5m`, `0.5s`, `off`",
           hint="give a duration from 100ms to 24h such as 60s, 5m, 0.5s, or off"),
    Option("keep", "uint", "x", "10",
           "continuous mode: keep this process's newest N files (0 keeps all)",
           lo=0, hi=1_000_000,
           hint="give the number of files to keep, 1..1000000 (0 keeps all)"),
    Option("sample_rate", "share", "x", "1",
           "profile only this share of processes; decided once per process, noted "
           "in the profile's comments",
           lo=0.0, hi=1.0, values="`0..1` or `5%`",
           hint="give the share of processes to profile, 0..1 or 0%..100%, such as "
                "0.05"),
    Option("signal", "signal", "x", "usr2",
           "dump signal: writes the profile so far and every thread's stack; not "
           "installed if the program already handles or ignores it",
           off=True, choices=("usr1", "usr2", "hup", "quit", "winch", "urg")),
    Option("budget", "share", "x", None,
           "continuous mode: everything shadowprof adds (the hook's calibrated "
           "per-call cost x exact calls, the signal handler, the drain and the "
           "writer) stays under this share of the program's CPU: each period "
           "profiles one window at a random offset, and between windows the hook is "
           "removed and the timers disarmed; off: profile all the time",
           lo=0.0, hi=1.0, off=True, values="`1%`, `0.01`, `off`",
           doc_default="1% with period",
           hint="give the profiler's share of CPU time such as 1% or 0.01, or off"),
    Option("max_depth", "uint", "xca", "1024",
           "frames kept per thread; deeper recursion is truncated with a marker",
           flags=("--max-depth",), metavar="N", lo=8, hi=1_000_000,
           hint="give an integer 8..1000000"),
    Option("top", "uint", "xc", "20",
           "functions listed per table in the report",
           flags=("--top",), metavar="N", lo=1, hi=100_000,
           hint="give an integer 1..100000"),
    Option("quiet", "bool", "xc", "off", "no report or notes on stderr",
           flags=("-q", "--quiet")),
    Option("native", "bool", "xca", "off",
           "also sample C stacks (libunwind): C functions appear under the Python "
           "line that called them",
           flags=("--native",)),
    Option("fork", "choice", "xca", "continue",
           "in a forked child: continue profiling it into files of its own pid "
           "(FILE.PID.ext), or stop",
           flags=("--fork",), choices=("continue", "stop")),
    Option("native_internals", "bool", "ca", "off",
           "with native, keep the interpreter's own frames (evaluation loop, call "
           "machinery) instead of folding them away",
           flags=("--native-internals",)),
    Option("correct_overhead", "bool", "ca", "on",
           "report the hook's calibrated per-call cost as profiler overhead; the "
           "flag keeps it in the user's functions instead",
           flags=("--no-correct-overhead",)),
    Option("hook", "choice", "ca", "auto",
           "what counts calls: eval (PEP 523 frame evaluation), monitoring "
           "(sys.monitoring, CPython 3.12+), or auto: monitoring on 3.12+, eval "
           "before and with native",
           flags=("--hook",), choices=("auto", "eval", "monitoring")),
    Option("sigprof", "choice", "ca", "refuse",
           "if the program already uses SIGPROF (a handler or an ITIMER_PROF timer): "
           "refuse to start, or chain: its own SIGPROFs still reach its handler",
           flags=("--sigprof",), choices=("refuse", "chain")),
    Option("machinery", "bool", "c", "off",
           "also list the import system, threading's bootstrap and shadowprof "
           "itself among the most called functions",
           flags=("--machinery",)),
    Option("subprocesses", "bool", "c", "off",
           "also profile the Python programs the program starts (subprocess, "
           "multiprocessing spawn): each writes FILE.PID.ext next to -o FILE, "
           "which is then required",
           flags=("--subprocesses",)),
)

BY_KEY = {o.key: o for o in OPTIONS}


def parse_interval(value) -> int:
    """Return a sampling interval in nanoseconds, from a string of the option
    grammar (``"10ms"``, ``"500us"``, ``"0.01s"``, ``"100hz"``) or a number of
    seconds below 1 (``0.01``).  A bare number of 1 or more (``5``, ``"10"``) is
    refused as ambiguous; ValueError with a one-line message (the C parser's)."""
    from . import _core
    return _core.parse_interval(value)


def parse_option(key: str, value):
    """The value of option *key* given as *value* (a string of the option grammar,
    or a number or bool), parsed and checked by the C parser: durations come back
    in ns.  ValueError with a one-line message naming the option."""
    from . import _core
    return _core.parse_option(key, value)


def defaults() -> dict:
    """The defaults of the option-string keys, parsed as the C parser reads them:
    ``{"interval_ns": 10000000, "mode": "cpu", ..., "output": None}`` (the C table
    holds them too, so that the start-up hook need not import this module)."""
    from . import _core
    return _core.option_defaults()
