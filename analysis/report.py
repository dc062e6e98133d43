"""The text report: top functions by self and total time, then the hottest paths.

The layout follows ``python -X importtime``: one line per entry, numbers first, the
name last and indented in the tree, so that it reads well in a terminal and in logs.
"""

from __future__ import annotations

import os

__all__ = ["render"]


def _fmt_s(ns: float) -> str:
    s = ns / 1e9
    if s >= 100:
        return f"{s:7.1f}"
    return f"{s:7.3f}"


def _short(path: str) -> str:
    if path.startswith("<"):
        return path
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith("../..") else path


def _label(fn) -> str:
    if fn.synthetic:
        return fn.name
    return f"{fn.name}  {_short(fn.filename)}:{fn.firstlineno}"


def render(profile, *, top: int = 20, tree_threshold: float = 0.01,
           tree_depth: int = 40) -> str:
    """Return the report of *profile* as text.

    top: functions listed in each table; tree_threshold: smallest share of time a
    call-tree node needs to be shown; tree_depth: deepest tree level shown.
    """
    total = profile.total_ns
    clock = "CPU" if profile.mode == "cpu" else "wall"
    lines = []
    lines.append(
        f"shadowprof: {total / 1e9:.3f} s of {clock} time in {profile.samples} samples "
        f"({profile.effective_rate_hz:.0f} Hz effective, "
        f"{profile.interval_ns / 1e6:g} ms requested), {profile.lost} lost, "
        f"profiler overhead {100 * profile.overhead_share:.1f}%")
    if profile.samples == 0:
        lines.append("shadowprof: no samples were taken (the program ran for less than "
                     "one interval? try -i 1ms)")
    stats = profile.function_stats()
    if total <= 0:
        total = 1
    header = (f"{'self%':>7} {'self s':>7} {'total%':>7} {'total s':>7} {'samples':>8} "
              f"{'calls':>11}  function")

    def row(st) -> str:
        calls = f"{st.calls:,}" if st.calls else "-"
        return (f"{100 * st.self_ns / total:6.1f}% {_fmt_s(st.self_ns)} "
                f"{100 * st.total_ns / total:6.1f}% {_fmt_s(st.total_ns)} "
                f"{st.total_samples:>8} {calls:>11}  {_label(st.function)}")

    by_self = sorted((s for s in stats.values() if s.self_ns / total >= 0.0005),
                     key=lambda s: -s.self_ns)[:top]
    lines.append("")
    lines.append("Top functions by self time")
    lines.append(header)
    lines.extend(row(s) for s in by_self)

    by_total = sorted((s for s in stats.values()
                       if s.total_ns > 0 and not s.function.synthetic),
                      key=lambda s: -s.total_ns)[:top]
    lines.append("")
    lines.append("Top functions by total time")
    lines.append(header)
    lines.extend(row(s) for s in by_total)

    by_calls = sorted((s for s in stats.values() if s.calls),
                      key=lambda s: -s.calls)[:top]
    if by_calls:
        lines.append("")
        lines.append("Most called functions (exact counts)")
        lines.append(header)
        lines.extend(row(s) for s in by_calls)

    lines.append("")
    lines.append(f"Call tree (paths with at least {100 * tree_threshold:g}% of the time; "
                 "calls are exact)")
    lines.extend(_tree(profile, total, tree_threshold, tree_depth))
    return "\n".join(lines) + "\n"


def _tree(profile, total: float, threshold: float, max_depth: int) -> list:
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
            name = _label(fn) if fn else f"<id {fid}>"
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
