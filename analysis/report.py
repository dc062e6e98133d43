"""The text report: top functions by self and total time, then the hottest paths.

One renderer, :func:`render`, with options: the report printed when a profiled
program ends (shares of time) and ``shadowprof report``'s (shares of samples with
confidence intervals, filters, one order, the line view) are the same code.

The layout follows ``python -X importtime``: one line per entry, numbers first, the
name last and indented in the tree, so that it reads well in a terminal and in logs.
Files are shown short (paths.display_path): libraries by module path
(``json/decoder.py``), the program's own files relative to the working directory.
The most-called table leaves out the interpreter's machinery (the import system, the
``threading`` bootstrap, shadowprof itself) unless asked.  A profile without a sample
of the program is one line that says so and why.
"""

from __future__ import annotations

from .paths import PathMapper, display_path, is_machinery

__all__ = ["render", "header", "duty_line", "no_samples_reason"]


def _fmt_s(ns: float) -> str:
    s = ns / 1e9
    if s >= 100:
        return f"{s:7.1f}"
    return f"{s:7.3f}"


def _label(fn, roots=()) -> str:
    if fn.synthetic:
        return fn.name
    return f"{fn.name}  {display_path(fn.filename, roots)}:{fn.firstlineno}"


def _ms(ns: float) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:.3g} s"
    return f"{ns / 1e6:.2g} ms" if ns < 1e6 else f"{ns / 1e6:.3g} ms"


def no_samples_reason(profile) -> str | None:
    """One line saying that *profile* holds no sample of the program, and why; None
    when it does hold some."""
    program = sum(s.count or (s.weight_ns > 0) for s in profile.stacks if s.frames
                  and not profile.functions.get(s.frames[-1][0], _NOFN).synthetic)
    if program:
        return None
    clock = "CPU" if profile.mode == "cpu" else "wall"
    ran = profile.cpu_ns if profile.mode == "cpu" else profile.duration_ns
    if profile.samples and not profile.lost and ran >= profile.interval_ns:
        return None    # a few samples, all shadowprof's: its tables say so
    calls = sum(profile.calls.values())
    counted = (f"; {calls:,} call{'s were' if calls != 1 else ' was'} counted "
               "exactly" if calls else "")
    if profile.lost:
        why = (f"all {profile.lost:,} samples were lost (the ring was full); "
               "sample less often (-i 10ms)")
    elif ran and ran < profile.interval_ns:
        why = (f"the program ran {_ms(ran)} of {clock} time, less than one sampling "
               f"interval ({_ms(profile.interval_ns)}); try -i 1ms or a longer run")
    elif profile.samples:
        why = (f"the {profile.samples:,} samples all fell in shadowprof's own code "
               f"in {_ms(ran)} of {clock} time; try -i 1ms or a longer run")
    else:
        why = (f"no sampling interval elapsed in {_ms(ran)} of {clock} time; "
               "try -i 1ms or a longer run")
    return f"shadowprof: no samples of the program: {why}{counted}"


class _NoFunction:
    synthetic = False


_NOFN = _NoFunction()


def header(profile, confidence: float = 0.95) -> str:
    """The report's first line: time, samples, rates, lost samples and the overhead
    with its interval."""
    total = profile.total_ns
    clock = "CPU" if profile.mode == "cpu" else "wall"
    low, high = profile.overhead_interval(confidence)
    share = 100 * profile.overhead_share
    band = (f" ({100 * confidence:g}% interval {100 * low:.1f}-{100 * high:.1f}%)"
            if high > low else "")
    return (f"shadowprof: {total / 1e9:.3f} s of {clock} time in {profile.samples} "
            f"samples ({profile.effective_rate_hz:.0f} Hz effective, "
            f"{profile.interval_ns / 1e6:g} ms requested), {profile.lost} lost, "
            f"profiler overhead {share:.1f}%{band}")


def duty_line(profile) -> str:
    """For a profile of duty-cycled windows (continuous mode with a budget): the
    profiled and covered time, and rates per second of profiled time."""
    profiled = profile.duration_ns / 1e9
    calls = sum(profile.calls.values())
    clock = "CPU" if profile.mode == "cpu" else "wall"
    return (f"duty-cycled: {profiled:.3g} s profiled in {profile.covered_ns / 1e9:.3g} s "
            f"(duty {100 * profile.duty:.3g}%); per second profiled: {calls / profiled:,.0f} "
            f"calls, {profile.total_ns / 1e9 / profiled:.3g} s of {clock} time.  Times and "
            f"calls below are of the profiled windows only; scaled by the duty "
            f"(x{1 / profile.duty:.3g}) they estimate the whole time covered: about "
            f"{calls / profile.duty:,.0f} calls")


def render(profile, *, top: int = 20, sort: str | None = None,
           confidence: float | None = None, file: str | None = None,
           function: str | None = None, match: str | None = None,
           lines: str | None = None, tree_threshold: float = 0.01,
           tree_depth: int = 40, machinery: bool = False) -> str:
    """Return the report of *profile* as text.

    Without *confidence*, shares are of time: the top functions by self time, by
    total time and by exact calls.  With *confidence* (e.g. 0.95), shares are of
    sample counts, each with its Wilson score interval (stats.py says why), and the
    seconds are the time the samples stand for.  Then the call tree.

    top: functions listed in each table; sort: ``self``, ``total`` (or
    ``cumulative``) or ``calls`` lists one table in that order instead of all
    three; file, function and match: regular expressions (searched in the file
    name, the qualified name, and ``name file:line``) selecting the functions
    listed and the call-tree paths shown, while shares stay shares of everything;
    lines: instead of the tables, the line-level view of the functions whose
    qualified name this regular expression matches; tree_threshold: smallest
    share of time a call-tree node needs; tree_depth: deepest tree level shown;
    machinery: also list the interpreter's machinery (import system, threading
    bootstrap, shadowprof) by calls.  A profile without a sample of the program
    gives one line saying why.  Bad options raise ValueError naming the option.
    """
    if lines is not None:
        return _line_view(profile, lines, 0.95 if confidence is None else confidence)
    if sort not in _SORTS:
        raise ValueError(f"--sort {sort!r}: choose self, cumulative (total) or calls")
    kinds = (_SORTS[sort],) if sort else ("self", "total", "calls")
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
    filters = ", ".join(f"{k} ~ {v!r}" for k, v in
                        (("file", file), ("function", function), ("match", match)) if v)
    stats = [st for st in profile.function_stats().values() if wanted(st.function)]
    total = profile.total_ns
    if total <= 0:
        total = 1
    out = [header(profile, 0.95 if confidence is None else confidence)]
    if profile.duty < 1.0:
        out.append(duty_line(profile))
    if confidence is None:
        for kind in kinds:
            out += _time_table(profile, stats, kind, total, top, machinery)
    else:
        count = profile.sample_counter()
        n = sum(count(s) for s in profile.stacks if s.frames)
        out.append(f"shares are of {n:,} samples, each with its "
                   f"{100 * confidence:g}% Wilson score interval; calls are exact")
        for kind in kinds:
            out += _share_table(profile, stats, kind, n, confidence, top, machinery,
                                filters)
    stacks = profile.stacks
    if filters:
        hit = {st.function.id for st in stats}
        stacks = [s for s in stacks if any(f in hit for f, _ in s.frames)]
    out += ["", f"Call tree (paths with at least {100 * tree_threshold:g}% of the time"
                + (f", through functions with {filters}" if filters else "")
                + "; calls are exact)"]
    out.extend(_tree(profile, stacks, total, tree_threshold, tree_depth))
    return "\n".join(out) + "\n"


_SORTS = {None: None, "self": "self", "total": "total", "cumulative": "total",
          "calls": "calls"}

_MACHINERY_LEFT_OUT = ("{} functions of the import system, threading and shadowprof "
                       "left out: --machinery")


def _regex(pattern: str | None, option: str):
    if pattern is None:
        return None
    import re
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"{option} {pattern!r} is not a valid regular expression "
                         f"({e}); escape special characters with \\") from None


def _without_machinery(profile, stats: list) -> tuple:
    """(*stats* without the interpreter's machinery, how many were left out)."""
    paths = PathMapper(profile)
    kept = [st for st in stats
            if not is_machinery(st.function, paths.module_path(st.function.filename))]
    return kept, len(stats) - len(kept)


def _time_table(profile, stats: list, kind: str, total: float, top: int,
                machinery: bool) -> list:
    """The lines of one table of shares of time: by self or total time, or the
    most called functions (left out when none was counted)."""
    hidden = 0
    if kind == "self":
        rows = sorted((st for st in stats if st.self_ns / total >= 0.0005),
                      key=lambda st: -st.self_ns)
        title = "Top functions by self time"
    elif kind == "total":
        rows = sorted((st for st in stats
                       if st.total_ns > 0 and not st.function.synthetic),
                      key=lambda st: -st.total_ns)
        title = "Top functions by total time"
    else:
        rows = [st for st in stats if st.calls]
        if not machinery:
            rows, hidden = _without_machinery(profile, rows)
        rows.sort(key=lambda st: -st.calls)
        if not rows:
            return []
        title = "Most called functions (exact counts" + (
            "; " + _MACHINERY_LEFT_OUT.format(hidden) if hidden else "") + ")"
    out = ["", title,
           f"{'self%':>7} {'self s':>7} {'total%':>7} {'total s':>7} {'samples':>8} "
           f"{'calls':>11}  function"]
    for st in rows[:top]:
        calls = f"{st.calls:,}" if st.calls else "-"
        out.append(f"{100 * st.self_ns / total:6.1f}% {_fmt_s(st.self_ns)} "
                   f"{100 * st.total_ns / total:6.1f}% {_fmt_s(st.total_ns)} "
                   f"{st.total_samples:>8} {calls:>11}  "
                   f"{_label(st.function, profile.roots)}")
    return out


def _share_table(profile, stats: list, kind: str, n: int, confidence: float,
                 top: int, machinery: bool, filters: str) -> list:
    """The lines of one table of shares of samples with their intervals, in the
    order *kind* names (self, total or calls)."""
    from .stats import wilson_interval
    rows = [st for st in stats if st.self_samples or st.total_samples or st.calls]
    hidden = 0
    if kind == "calls" and not machinery:
        rows, hidden = _without_machinery(profile, rows)
    rows.sort(key={"self": lambda st: (-st.self_samples, -st.self_ns),
                   "total": lambda st: (-st.total_samples, -st.total_ns),
                   "calls": lambda st: (-st.calls, -st.self_ns)}[kind])
    shown = rows[:top]
    title = {"self": "self samples", "total": "cumulative samples",
             "calls": "exact calls"}[kind]
    pct = f"{100 * confidence:g}%"
    out = ["", f"Top functions by {title}" + (f" ({filters})" if filters else "")
           + (f", {len(shown)} of {len(rows)}" if len(rows) > len(shown) else "")
           + (f" ({_MACHINERY_LEFT_OUT.format(hidden)})" if hidden else ""),
           f"{'self%':>6} {pct + ' CI':>15} {'total%':>6} {pct + ' CI':>15} "
           f"{'self s':>7} {'total s':>7} {'samples':>8} {'calls':>11}  function"]
    for st in shown:
        xs, xt = st.self_samples, st.total_samples
        ls, hs = wilson_interval(xs, n, confidence)
        lt, ht = wilson_interval(xt, n, confidence)
        calls = f"{st.calls:,}" if st.calls else "-"
        out.append(
            f"{100 * xs / max(n, 1):5.1f}% [{100 * ls:5.1f}, {100 * hs:5.1f}]% "
            f"{100 * xt / max(n, 1):5.1f}% [{100 * lt:5.1f}, {100 * ht:5.1f}]% "
            f"{st.self_ns / 1e9:7.3f} {st.total_ns / 1e9:7.3f} {xt:>8} {calls:>11}  "
            f"{_label(st.function, profile.roots)}")
    if not shown:
        out.append("  (no function matches the filters)")
    return out


def _tree(profile, stacks, total: float, threshold: float, max_depth: int) -> list:
    """Merge *stacks* into a tree.  Direct recursion is folded into one node; each
    node shows the exact calls along its edge (caller -> function)."""
    root: dict = {}
    for s in stacks:
        node = root
        prev = None
        for fid, _line in s.frames:
            if fid == prev:
                continue
            prev = fid
            child = node.setdefault(fid, [0.0, {}])
            child[0] += s.weight_ns
            node = child[1]
    edges = profile.edges
    roots = profile.roots
    out = []

    def walk(children: dict, parent: int, depth: int) -> None:
        for fid, (weight, grand) in sorted(children.items(), key=lambda kv: -kv[1][0]):
            if weight / total < threshold:
                continue
            fn = profile.functions.get(fid)
            name = _label(fn, roots) if fn else f"<id {fid}>"
            n = edges.get((parent, fid), 0)
            recursive = edges.get((fid, fid), 0)
            suffix = f"  [{n:,} call{'s' if n != 1 else ''}" if n else ""
            if recursive:
                suffix += f" + {recursive:,} recursive" if suffix else \
                    f"  [{recursive:,} recursive"
            suffix += "]" if suffix else ""
            out.append(f"{100 * weight / total:6.1f}% {_fmt_s(weight)}  "
                       f"{'  ' * depth}{name}{suffix}")
            if depth + 1 < max_depth:
                walk(grand, fid, depth + 1)

    walk(root, 0, 0)
    return out


def _line_view(profile, pattern: str, confidence: float, limit: int = 50) -> str:
    """Line-level view of the functions whose qualified name matches *pattern*: per
    line, the share of samples running that line (self) and running it or
    something it called (total), with intervals and the source."""
    import linecache
    from .stats import wilson_interval
    rx = _regex(pattern, "--lines")
    targets = [fn for fn in profile.functions.values()
               if not fn.synthetic and rx.search(fn.name)]
    if not targets:
        raise ValueError(f"--lines {pattern!r} matches no function of the profile; "
                         "give a regular expression matching a qualified name, e.g. "
                         "'Class.method'")
    count = profile.sample_counter()
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
        out += ["", f"{_label(fn, profile.roots)}  "
                    f"(shares of {n:,} samples, {pct} Wilson intervals)",
                f"{'line':>6} {'self%':>6} {pct + ' CI':>15} {'total%':>6} "
                f"{pct + ' CI':>15} {'samples':>8}  source"]
        if not per_line:
            out.append("  (never sampled)")
        for line in sorted(per_line)[:limit]:
            xs, xt = per_line[line]
            ls, hs = wilson_interval(xs, n, confidence)
            lt, ht = wilson_interval(xt, n, confidence)
            src = linecache.getline(fn.filename, line).strip() if line > 0 else ""
            out.append(f"{line:>6} {100 * xs / max(n, 1):5.1f}% "
                       f"[{100 * ls:5.1f}, {100 * hs:5.1f}]% "
                       f"{100 * xt / max(n, 1):5.1f}% "
                       f"[{100 * lt:5.1f}, {100 * ht:5.1f}]% {xt:>8}  {src[:80]}")
    return "\n".join(out).lstrip("\n") + "\n"
