"""The analysis subcommands of the ``shadowprof`` command: report, merge, diff and
flamegraph, over saved profiles (shadowprof JSON, and pprof files ours or foreign).

Each ``cmd_*`` function takes the words after its subcommand and returns the exit
status: 0 done, 1 (diff only) a significant regression, 2 bad input, with a one-line
error on stderr that names the problem.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

from .model import Profile

__all__ = ["COMMANDS", "cmd_report", "cmd_merge", "cmd_diff", "cmd_flamegraph"]

PROFILE_SUFFIXES = (".json", ".pb.gz", ".pprof", ".pb")


class _Error(Exception):
    """Bad input: the message is printed as ``shadowprof: error: MESSAGE``."""


def _error(msg: str) -> int:
    print(f"shadowprof: error: {msg}", file=sys.stderr)
    return 2


def _expand(paths: list) -> list:
    """Files named, and the profile files of directories named (sorted)."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p)
                           if f.endswith(PROFILE_SUFFIXES)
                           and not f.endswith(".speedscope.json"))
            if not found:
                raise _Error(f"directory {p!r} holds no profiles (*.json, *.pb.gz, "
                             "*.pprof)")
            out.extend(found)
        elif not os.path.exists(p):
            raise _Error(f"cannot read {p!r}: no such file")
        else:
            out.append(p)
    return out


def _load(paths: list) -> Profile:
    """One profile from one or more files or directories (merged when several)."""
    from .merge import Merger, load_profile
    files = _expand(paths)
    try:
        if len(files) == 1:
            return load_profile(files[0])
        merger = Merger()
        for f in files:
            merger.add(load_profile(f), name=f)
        return merger.profile()
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        msg = str(e)
        raise _Error(msg if any(f in msg for f in files)
                     else f"cannot read {files[0] if len(files) == 1 else 'a profile'}"
                          f": {msg}") from None


def _select_threads(profile: Profile, thread: str | None) -> Profile:
    if thread is None:
        return profile
    ids = {tid for tid, name in profile.threads.items() if name == thread}
    if thread.isdigit():
        ids.add(int(thread))
    known = {s.thread_id for s in profile.stacks}
    if not ids & known:
        names = sorted({f"{profile.threads.get(t, t)} ({t})" for t in known})
        raise _Error(f"--thread {thread!r} matches no sampled thread; choose one of: "
                     + ", ".join(names))
    out = copy.copy(profile)
    out.stacks = [s for s in profile.stacks if s.thread_id in ids]
    out.samples = sum(s.count for s in out.stacks)
    return out


# --------------------------------------------------------------------------- report

def _confidence(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.5 <= value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a confidence level from 0.5 to 0.999, e.g. 0.95")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number >= 1")
    return value


def cmd_report(argv: list) -> int:
    p = argparse.ArgumentParser(
        prog="shadowprof report",
        description="Print the report of saved profiles (several are merged): top "
                    "functions with a confidence interval on every share, and the call "
                    "tree.")
    p.add_argument("profiles", nargs="+", metavar="PROFILE",
                   help="a profile written with -o FILE.json or FILE.pb.gz, any "
                        "pprof file, or a directory of them")
    p.add_argument("--top", "--limit", dest="top", type=_positive, default=20,
                   metavar="N", help="functions listed (default 20)")
    p.add_argument("--sort", default="self",
                   choices=("self", "cumulative", "total", "calls"),
                   help="order of the table (default self)")
    p.add_argument("--file", metavar="REGEX", help="only functions whose file matches")
    p.add_argument("--function", metavar="REGEX",
                   help="only functions whose qualified name matches")
    p.add_argument("--match", metavar="REGEX",
                   help="only functions whose 'name file:line' matches")
    p.add_argument("--thread", metavar="NAME|ID",
                   help="only the samples of this thread (shares are then of its "
                        "samples)")
    p.add_argument("--lines", metavar="REGEX",
                   help="instead of the tables, the line-level view of the functions "
                        "whose qualified name matches")
    p.add_argument("--confidence", type=_confidence, default=0.95,
                   help="confidence level of the intervals (default 0.95)")
    p.add_argument("--tree-threshold", type=float, default=1.0, metavar="PERCENT",
                   help="smallest share of the time a call-tree path needs (default 1)")
    p.add_argument("--machinery", action="store_true",
                   help="with --sort calls, also list the interpreter's machinery "
                        "(import system, threading bootstrap, shadowprof itself)")
    opts = p.parse_args(argv)
    from .report import render
    try:
        prof = _select_threads(_load(opts.profiles), opts.thread)
        text = render(prof, top=opts.top, sort=opts.sort, confidence=opts.confidence,
                      file=opts.file, function=opts.function, match=opts.match,
                      lines=opts.lines, tree_threshold=opts.tree_threshold / 100,
                      machinery=opts.machinery)
    except (_Error, ValueError) as e:
        return _error(str(e))
    sys.stdout.write(text)
    return 0


# --------------------------------------------------------------------------- merge

def cmd_merge(argv: list) -> int:
    p = argparse.ArgumentParser(
        prog="shadowprof merge",
        description="Merge many profiles (a fleet's, or one run's periodic files) into "
                    "one, reading one file at a time: memory grows with the distinct "
                    "stacks, not with the number of files.")
    p.add_argument("profiles", nargs="+", metavar="PROFILE",
                   help="profile files (.json, .pb.gz, .pprof) or directories of them")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="the merged profile; the format comes from -f or the extension")
    p.add_argument("-f", "--format", metavar="FORMAT",
                   help="pprof, json, collapsed, speedscope, pstats or text")
    opts = p.parse_args(argv)
    from . import formats
    from .merge import Merger, load_profile
    try:
        fmt = formats.format_for(opts.output, opts.format)
    except ValueError as e:
        return _error(str(e))
    merger = Merger()
    try:
        for path in _expand(opts.profiles):
            try:
                merger.add(load_profile(path), name=path)
            except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
                msg = str(e)
                raise _Error(msg if path in msg else f"cannot read {path!r}: {msg}")
    except _Error as e:
        return _error(str(e))
    merged = merger.profile()
    try:
        formats.write_profile(merged, opts.output, fmt)
    except OSError as e:
        return _error(f"cannot write {opts.output!r}: {e}")
    print(f"shadowprof: merged {merger.files} profiles: {merged.samples:,} samples, "
          f"{len(merged.stacks):,} distinct stacks, {len(merged.functions):,} "
          f"functions -> {opts.output}; functions matched by {merger.matched_by}",
          file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- diff

def cmd_diff(argv: list) -> int:
    p = argparse.ArgumentParser(
        prog="shadowprof diff",
        description="Compare a canary's profile with a baseline's: which functions' "
                    "shares of the samples changed, by how much (points, Newcombe "
                    "interval, Cohen's h), whose cost per call (sampled time / exact "
                    "calls) changed, by what factor (with its interval), and how sure "
                    "(tests corrected for their number).  Exit status 1 when a "
                    "function's share grew by at least --threshold points or its "
                    "cost per call by at least --per-call-threshold times, "
                    "significantly; 0 otherwise; 2 on bad input.")
    p.add_argument("baseline", metavar="BASELINE", help="profile file or directory")
    p.add_argument("canary", metavar="CANARY", help="profile file or directory")
    p.add_argument("--by", choices=("self", "total"), default="self",
                   help="compare self shares (default) or total (inclusive) shares")
    p.add_argument("--threshold", type=float, default=1.0, metavar="POINTS",
                   help="smallest growth of a share, in percentage points, that fails "
                        "the comparison (default 1.0)")
    p.add_argument("--per-call-threshold", type=float, default=1.25, metavar="RATIO",
                   help="smallest growth of a function's cost per call, as a factor, "
                        "that fails the comparison (default 1.25)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="significance level after correction (default 0.05)")
    p.add_argument("--correction", choices=("holm", "bh"), default="holm",
                   help="holm: family-wise error (default, for gates); bh: false "
                        "discovery rate")
    p.add_argument("--confidence", type=_confidence, default=0.95,
                   help="confidence level of the intervals (default 0.95)")
    p.add_argument("--limit", type=_positive, default=30, metavar="N",
                   help="functions listed (default 30)")
    p.add_argument("--match-functions", dest="match",
                   choices=("path", "line", "name", "absolute", "file"), default="path",
                   help="recognise a function in the other profile by its qualified "
                        "name and its file's path relative to the import root "
                        "(path, the default; file is the same), also its first line "
                        "(line), name and the file's base name (name), or name and "
                        "absolute path (absolute)")
    p.add_argument("--json", action="store_true",
                   help="print the comparison as one JSON object (its 'functions' "
                        "list has shares, costs per call, p-values and verdicts)")
    p.add_argument("--flamegraph", metavar="FILE.html",
                   help="also write a differential flame graph page")
    opts = p.parse_args(argv)
    if not 0 < opts.alpha < 1:
        return _error(f"--alpha {opts.alpha:g}: give a level between 0 and 1, e.g. "
                      "0.05")
    if opts.threshold < 0:
        return _error(f"--threshold {opts.threshold:g}: give a growth in points >= 0")
    if not opts.per_call_threshold > 0:
        return _error(f"--per-call-threshold {opts.per_call_threshold:g}: give a factor "
                      "> 0, e.g. 1.25 (25% costlier per call)")
    from . import diff, formats
    try:
        base = _load([opts.baseline])
        canary = _load([opts.canary])
        if base.mode != canary.mode:
            raise _Error(f"the baseline is a {base.mode}-time profile and the canary a "
                         f"{canary.mode}-time one; compare profiles of the same --mode")
    except _Error as e:
        return _error(str(e))
    cmp = diff.compare(base, canary, by=opts.by, confidence=opts.confidence,
                       correction=opts.correction, match=opts.match)
    gate = dict(threshold=opts.threshold, alpha=opts.alpha,
                per_call_threshold=opts.per_call_threshold,
                names=(opts.baseline, opts.canary))
    if opts.json:
        import json
        sys.stdout.write(json.dumps(diff.to_json(cmp, **gate), indent=1) + "\n")
    else:
        sys.stdout.write(diff.render(cmp, limit=opts.limit, **gate))
    if opts.flamegraph:
        from .flamegraph import render_diff_html
        try:
            formats.write_bytes(render_diff_html(base, canary, match=opts.match)
                                .encode("utf-8"),
                                opts.flamegraph)
        except OSError as e:
            return _error(f"cannot write {opts.flamegraph!r}: {e}")
    return 1 if diff.regressions(cmp, opts.threshold, opts.alpha,
                                 opts.per_call_threshold) else 0


# --------------------------------------------------------------------------- flamegraph

def cmd_flamegraph(argv: list) -> int:
    p = argparse.ArgumentParser(
        prog="shadowprof flamegraph",
        description="Write a flame graph of saved profiles: a self-contained "
                    "interactive HTML page (click to zoom, search, hover for numbers; "
                    "no network needed), or a static SVG when FILE ends in .svg.")
    p.add_argument("profiles", nargs="+", metavar="PROFILE",
                   help="profile files or directories (several are merged)")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="FILE.html (interactive) or FILE.svg (static)")
    p.add_argument("--baseline", metavar="PROFILE",
                   help="draw a differential flame graph of PROFILE against this")
    p.add_argument("--thread", metavar="NAME|ID", help="only this thread's samples")
    p.add_argument("--samples", action="store_true",
                   help="widths from sample counts rather than time")
    p.add_argument("--title", help="the page's title")
    opts = p.parse_args(argv)
    from . import flamegraph, formats
    svg = opts.output.endswith(".svg")
    if not svg and not opts.output.endswith((".html", ".htm")):
        return _error(f"-o {opts.output!r}: name the output FILE.html (interactive) or "
                      "FILE.svg (static)")
    if opts.baseline and svg:
        return _error("a differential flame graph is HTML only: use -o FILE.html")
    try:
        prof = _select_threads(_load(opts.profiles), opts.thread)
        base = _load([opts.baseline]) if opts.baseline else None
    except _Error as e:
        return _error(str(e))
    use = "samples" if opts.samples else "auto"
    if base is not None:
        text = flamegraph.render_diff_html(
            base, prof, title=opts.title or "shadowprof differential flame graph")
    elif svg:
        text = flamegraph.render_svg(prof, use=use,
                                     title=opts.title or "shadowprof flame graph")
    else:
        text = flamegraph.render_html(prof, use=use,
                                      title=opts.title or "shadowprof flame graph")
    try:
        formats.write_bytes(text.encode("utf-8"), opts.output)
    except OSError as e:
        return _error(f"cannot write {opts.output!r}: {e}")
    return 0


COMMANDS = {"report": cmd_report, "merge": cmd_merge, "diff": cmd_diff,
            "flamegraph": cmd_flamegraph}
