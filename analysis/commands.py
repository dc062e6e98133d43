"""The analysis subcommands of the ``shadowprof`` command: report, merge, diff and
flamegraph, over saved profiles (shadowprof JSON, and pprof files ours or foreign).

Each ``cmd_*`` function takes the words after its subcommand and returns the exit
status: 0 done, 1 (diff only) a significant regression, 2 bad input, with a one-line
error on stderr that names the problem.
"""

from __future__ import annotations

import argparse
import copy
import linecache
import os
import re
import sys

from . import stats
from .model import Profile

__all__ = ["COMMANDS", "cmd_report", "cmd_merge", "cmd_diff", "cmd_flamegraph",
           "render_report"]

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


def _regex(pattern: str | None, option: str):
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as e:
        raise _Error(f"{option} {pattern!r} is not a valid regular expression ({e}); "
                     "escape special characters with \\") from None


def _counts_of(profile: Profile):
    """The sample count of a stack; for profiles with times only (some foreign pprof
    files), the time in periods of the sampling interval."""
    if any(s.count for s in profile.stacks):
        return lambda s: s.count
    period = profile.interval_ns or 1
    return lambda s: round(s.weight_ns / period)


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

def _short(path: str, roots=()) -> str:
    from .paths import display_path
    return display_path(path, roots)


def _where(fn, roots=()) -> str:
    return "" if fn.synthetic else f"  {_short(fn.filename, roots)}:{fn.firstlineno}"


def render_report(profile: Profile, *, top: int = 20, sort: str = "self",
                  confidence: float = 0.95, file: str | None = None,
                  function: str | None = None, match: str | None = None,
                  tree_threshold: float = 0.01, machinery: bool = False) -> str:
    """The report with a confidence interval on every share, filtered and sorted.

    Shares are of sample counts, each with its Wilson score interval (stats.py says
    why); seconds are the time the samples stand for.  file, function and match are
    regular expressions (searched in the file name, the qualified name, and
    ``name file:line``) selecting the functions listed and the call-tree paths shown;
    shares stay shares of all samples.  Sorted by calls, the interpreter's machinery
    (paths.is_machinery) is left out unless *machinery*.  A profile without a sample
    of the program gives one line saying why.
    """
    from .paths import PathMapper, is_machinery
    from .report import _tree, duty_line, header, no_samples_reason
    keys = {"self": "self", "total": "total", "cumulative": "total", "calls": "calls"}
    if sort not in keys:
        raise _Error(f"--sort {sort!r}: choose self, cumulative (total) or calls")
    sort = keys[sort]
    rx_file, rx_func, rx_any = (_regex(file, "--file"), _regex(function, "--function"),
                                _regex(match, "--match"))

    def wanted(fn) -> bool:
        if rx_file and not rx_file.search(fn.filename):
            return False
        if rx_func and not rx_func.search(fn.name):
            return False
        if rx_any and not rx_any.search(f"{fn.name} {fn.filename}:{fn.firstlineno}"):
            return False
        return True

    empty = no_samples_reason(profile)
    if empty:
        return empty + "\n"
    count = _counts_of(profile)
    n = sum(count(s) for s in profile.stacks if s.frames)
    self_n: dict = {}
    total_n: dict = {}
    for s in profile.stacks:
        c = count(s)
        if not s.frames or c <= 0:
            continue
        leaf = s.frames[-1][0]
        self_n[leaf] = self_n.get(leaf, 0) + c
        for fid in {f for f, _ in s.frames}:
            total_n[fid] = total_n.get(fid, 0) + c
    fstats = profile.function_stats()
    pct = f"{100 * confidence:g}%"
    lines = [header(profile, confidence),
             f"shares are of {n:,} samples, each with its {pct} Wilson score interval; "
             "calls are exact"]
    if profile.duty < 1.0:
        lines.insert(1, duty_line(profile))
    rows = [st for st in fstats.values() if wanted(st.function)
            and (self_n.get(st.function.id) or total_n.get(st.function.id)
                 or st.calls)]
    hidden = 0
    if sort == "calls" and not machinery:
        paths = PathMapper(profile)
        kept = [st for st in rows if not is_machinery(
            st.function, paths.module_path(st.function.filename))]
        hidden, rows = len(rows) - len(kept), kept
    order = {"self": lambda st: (-self_n.get(st.function.id, 0), -st.self_ns),
             "total": lambda st: (-total_n.get(st.function.id, 0), -st.total_ns),
             "calls": lambda st: (-st.calls, -st.self_ns)}[sort]
    rows.sort(key=order)
    shown = rows[:top]
    title = {"self": "self samples", "total": "cumulative samples",
             "calls": "exact calls"}[sort]
    filters = ", ".join(f"{k} ~ {v!r}" for k, v in
                        (("file", file), ("function", function), ("match", match)) if v)
    lines += ["", f"Top functions by {title}" + (f" ({filters})" if filters else "")
              + (f", {len(shown)} of {len(rows)}" if len(rows) > len(shown) else "")
              + (f" ({hidden} functions of the import system, threading and "
                 "shadowprof left out: --machinery)" if hidden else ""),
              f"{'self%':>6} {pct + ' CI':>15} {'total%':>6} {pct + ' CI':>15} "
              f"{'self s':>7} {'total s':>7} {'samples':>8} {'calls':>11}  function"]
    for st in shown:
        fid = st.function.id
        xs, xt = self_n.get(fid, 0), total_n.get(fid, 0)
        ls, hs = stats.wilson_interval(xs, n, confidence)
        lt, ht = stats.wilson_interval(xt, n, confidence)
        calls = f"{st.calls:,}" if st.calls else "-"
        lines.append(
            f"{100 * xs / max(n, 1):5.1f}% [{100 * ls:5.1f}, {100 * hs:5.1f}]% "
            f"{100 * xt / max(n, 1):5.1f}% [{100 * lt:5.1f}, {100 * ht:5.1f}]% "
            f"{st.self_ns / 1e9:7.3f} {st.total_ns / 1e9:7.3f} {xt:>8} {calls:>11}  "
            f"{st.function.name}{_where(st.function, profile.roots)}")
    if not shown:
        lines.append("  (no function matches the filters)")

    tree_profile = profile
    if filters:
        hit = {fid for fid, fn in profile.functions.items() if wanted(fn)}
        tree_profile = Profile(profile.functions,
                               [s for s in profile.stacks
                                if any(f in hit for f, _ in s.frames)],
                               profile.calls, profile.edges, roots=profile.roots)
    total_ns = profile.total_ns or 1
    lines += ["", f"Call tree (paths with at least {100 * tree_threshold:g}% of the "
                  "time" + (f", through functions with {filters}" if filters else "")
              + "; calls are exact)"]
    lines.extend(_tree(tree_profile, total_ns, tree_threshold, 40, profile.roots))
    return "\n".join(lines) + "\n"


def render_lines(profile: Profile, function: str, *, confidence: float = 0.95,
                 limit: int = 50) -> str:
    """Line-level view of the functions whose qualified name matches the regular
    expression *function*: per line, the share of samples running that line (self)
    and running it or something it called (total), with intervals and the source."""
    rx = _regex(function, "--lines")
    targets = [fn for fn in profile.functions.values()
               if not fn.synthetic and rx.search(fn.name)]
    if not targets:
        raise _Error(f"--lines {function!r} matches no function of the profile; give a "
                     "regular expression matching a qualified name, e.g. 'Class.method'")
    count = _counts_of(profile)
    n = sum(count(s) for s in profile.stacks if s.frames)
    pct = f"{100 * confidence:g}%"
    out = []
    for fn in sorted(targets, key=lambda f: (f.filename, f.firstlineno))[:10]:
        per_line: dict = {}
        for s in profile.stacks:
            c = count(s)
            if c <= 0:
                continue
            seen = set()
            for i, (fid, line) in enumerate(s.frames):
                if fid != fn.id or line in seen:
                    continue
                seen.add(line)
                acc = per_line.setdefault(line, [0, 0])
                acc[1] += c
                if i == len(s.frames) - 1:
                    acc[0] += c
        out += ["", f"{fn.name}  {_short(fn.filename, profile.roots)}:{fn.firstlineno}  "
                    f"(shares of {n:,} samples, {pct} Wilson intervals)",
                f"{'line':>6} {'self%':>6} {pct + ' CI':>15} {'total%':>6} "
                f"{pct + ' CI':>15} {'samples':>8}  source"]
        if not per_line:
            out.append("  (never sampled)")
        for line in sorted(per_line)[:limit]:
            xs, xt = per_line[line]
            ls, hs = stats.wilson_interval(xs, n, confidence)
            lt, ht = stats.wilson_interval(xt, n, confidence)
            src = linecache.getline(fn.filename, line).strip() if line > 0 else ""
            out.append(f"{line:>6} {100 * xs / max(n, 1):5.1f}% "
                       f"[{100 * ls:5.1f}, {100 * hs:5.1f}]% "
                       f"{100 * xt / max(n, 1):5.1f}% "
                       f"[{100 * lt:5.1f}, {100 * ht:5.1f}]% {xt:>8}  {src[:80]}")
    return "\n".join(out).lstrip("\n") + "\n"


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
    try:
        prof = _select_threads(_load(opts.profiles), opts.thread)
        if opts.lines:
            text = render_lines(prof, opts.lines, confidence=opts.confidence)
        else:
            text = render_report(prof, top=opts.top, sort=opts.sort,
                                 confidence=opts.confidence, file=opts.file,
                                 function=opts.function, match=opts.match,
                                 tree_threshold=opts.tree_threshold / 100,
                                 machinery=opts.machinery)
    except _Error as e:
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
        if fmt == "text":
            formats.write_bytes(merged.report().encode("utf-8"), opts.output)
        else:
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
