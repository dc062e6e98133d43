"""The text report: top functions by self and total time, then the hottest paths.

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


def _short(path: str, roots=()) -> str:
    return display_path(path, roots)


def _label(fn, roots=()) -> str:
    if fn.synthetic:
        return fn.name
    return f"{fn.name}  {_short(fn.filename, roots)}:{fn.firstlineno}"


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


def render(profile, *, top: int = 20, tree_threshold: float = 0.01,
           tree_depth: int = 40, machinery: bool = False) -> str:
    """Return the report of *profile* as text.

    top: functions listed in each table; tree_threshold: smallest share of time a
    call-tree node needs to be shown; tree_depth: deepest tree level shown;
    machinery: also list the interpreter's machinery (import system, threading
    bootstrap, shadowprof) in the most-called table.
    """
    empty = no_samples_reason(profile)
    if empty:
        return empty + "\n"
    total = profile.total_ns
    roots = profile.roots
    lines = [header(profile)]
    if profile.duty < 1.0:
        lines.append(duty_line(profile))
    stats = profile.function_stats()
    if total <= 0:
        total = 1
    columns = (f"{'self%':>7} {'self s':>7} {'total%':>7} {'total s':>7} {'samples':>8} "
               f"{'calls':>11}  function")

    def row(st) -> str:
        calls = f"{st.calls:,}" if st.calls else "-"
        return (f"{100 * st.self_ns / total:6.1f}% {_fmt_s(st.self_ns)} "
                f"{100 * st.total_ns / total:6.1f}% {_fmt_s(st.total_ns)} "
                f"{st.total_samples:>8} {calls:>11}  {_label(st.function, roots)}")

    by_self = sorted((s for s in stats.values() if s.self_ns / total >= 0.0005),
                     key=lambda s: -s.self_ns)[:top]
    lines.append("")
    lines.append("Top functions by self time")
    lines.append(columns)
    lines.extend(row(s) for s in by_self)

    by_total = sorted((s for s in stats.values()
                       if s.total_ns > 0 and not s.function.synthetic),
                      key=lambda s: -s.total_ns)[:top]
    lines.append("")
    lines.append("Top functions by total time")
    lines.append(columns)
    lines.extend(row(s) for s in by_total)

    paths = PathMapper(profile)
    called = [s for s in stats.values() if s.calls]
    hidden = 0
    if not machinery:
        kept = [s for s in called if not is_machinery(
            s.function, paths.module_path(s.function.filename))]
        hidden, called = len(called) - len(kept), kept
    by_calls = sorted(called, key=lambda s: -s.calls)[:top]
    if by_calls:
        lines.append("")
        lines.append("Most called functions (exact counts" + (
            f"; {hidden} functions of the import system, threading and shadowprof "
            "left out: --machinery"
            if hidden else "") + ")")
        lines.append(columns)
        lines.extend(row(s) for s in by_calls)

    lines.append("")
    lines.append(f"Call tree (paths with at least {100 * tree_threshold:g}% of the time; "
                 "calls are exact)")
    lines.extend(_tree(profile, total, tree_threshold, tree_depth, roots))
    return "\n".join(lines) + "\n"


def _tree(profile, total: float, threshold: float, max_depth: int,
          roots=()) -> list:
    """Merge the stacks into a tree.  Direct recursion is folded into one node; each
    node shows the exact calls along its edge (caller -> function)."""
    root: dict = {}
    for s in profile.stacks:
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
