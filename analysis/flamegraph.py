"""Flame graphs: a self-contained interactive HTML page, and a static SVG.

The stacks of a profile are merged into a tree of functions (threads merged, root at
the top, callees below their callers, the widest child first).  A frame's width is its
share of the time (of the samples, for a profile without times).

The HTML page needs no network: its script and style are inline and the tree is
embedded as JSON.  Click a frame to zoom to it (click the top frame, or "reset", to
zoom out); type a regular expression in the search box to highlight matching frames
and see their share of the total; hover for the numbers.  The search can also be given
in the URL, ``flame.html#search=parse`` (and a zoom, ``&zoom=NAME``, to the
shallowest frame of that name), and the page keeps the URL in step.

The differential page (``shadowprof diff --flamegraph``) draws both trees, the
baseline's above the canary's, each with widths from its own samples, from one tree
that holds the frames of both (functions matched as ``shadowprof diff`` matches them:
by name and path relative to the import root).  Every frame is coloured by the change
of its *self* share from the baseline to the canary: red grew, blue shrank, white
unchanged, the most changed frame at full colour; so a frame the canary lost is blue
in the baseline's tree, a new one red in the canary's.  Zoom and search act on both.
"""

from __future__ import annotations

import html
import json
import zlib

from .flamegraph_template import TEMPLATE
from .model import Profile

__all__ = ["build_tree", "diff_tree", "render_html", "render_diff_html", "render_svg"]


def _keep_all(stack) -> bool:
    return True


def build_tree(profile: Profile, *, use: str = "auto", keep=_keep_all,
               match: str = "line", paths=None) -> dict:
    """The profile's stacks merged into a tree of nested dicts: ``n`` name, ``f``
    file:line, ``v`` value (ns of time, or samples), ``s`` samples, ``c`` children.
    use: ``time``, ``samples``, or ``auto`` (time if the profile has times).  keep: a
    predicate on stacks (for filters).  match, paths: which functions are one node
    (see diff.function_key)."""
    from .diff import function_key
    if use == "auto":
        use = "time" if any(s.weight_ns for s in profile.stacks) else "samples"
    root = {"n": "all", "f": "", "v": 0, "s": 0, "c": {}}
    labels: dict = {}
    for st in profile.stacks:
        if not keep(st):
            continue
        value = st.weight_ns if use == "time" else st.count
        if value <= 0 and st.count <= 0:
            continue
        node = root
        node["v"] += value
        node["s"] += st.count
        for fid, _line in st.frames:
            lab = labels.get(fid)
            if lab is None:
                fn = profile.functions.get(fid)
                lab = labels[fid] = (
                    (function_key(fn, match, paths), fn.name,
                     "" if fn.synthetic else f"{fn.filename}:{fn.firstlineno}")
                    if fn else ((f"<id {fid}>",), f"<id {fid}>", ""))
            child = node["c"].get(lab[0])
            if child is None:
                child = node["c"][lab[0]] = {"n": lab[1], "f": lab[2], "v": 0, "s": 0,
                                             "c": {}}
            child["v"] += value
            child["s"] += st.count
            node = child
    root["unit"] = "ns" if use == "time" else "samples"
    return root


def diff_tree(baseline: Profile, canary: Profile, match: str = "path") -> dict:
    """One tree holding the frames of both profiles (by samples): ``v`` the canary's
    samples, ``b`` the baseline's; a frame only one side has is 0 on the other."""
    from .paths import PathMapper
    base = build_tree(baseline, use="samples", match=match,
                      paths=PathMapper(baseline))
    tree = build_tree(canary, use="samples", match=match, paths=PathMapper(canary))

    def walk(node: dict, other: dict | None) -> None:
        node["b"] = other["v"] if other else 0
        kids = node["c"]
        for key, child in kids.items():
            walk(child, other["c"].get(key) if other else None)
        for key, only in (other["c"].items() if other else ()):
            if key not in kids:
                kids[key] = _baseline_only(only)

    def _baseline_only(node: dict) -> dict:
        return {"n": node["n"], "f": node["f"], "v": 0, "s": 0, "b": node["v"],
                "c": {k: _baseline_only(c) for k, c in node["c"].items()}}

    walk(tree, base)
    return tree


def _plain(node: dict) -> dict:
    """Children as lists, widest first; values rounded for a smaller page."""
    out = {k: (round(v) if isinstance(v, float) else v)
           for k, v in node.items() if k != "c"}
    kids = sorted(node["c"].values(),
                  key=lambda c: (-c["v"], -c.get("b", 0), c["n"]))
    if kids:
        out["c"] = [_plain(c) for c in kids]
    return out


def _page(tree: dict, title: str, diff: bool) -> str:
    data = {"title": title, "diff": diff, "unit": tree.get("unit", "samples"),
            "root": _plain(tree)}
    payload = json.dumps(data, separators=(",", ":"))
    # Nothing in the JSON may close the <script> element that holds it.
    payload = payload.replace("</", "<\\/").replace("<!--", "<\\!--")
    return (TEMPLATE.replace("__TITLE__", html.escape(title))
            .replace("__DATA__", payload))


def render_html(profile: Profile, title: str = "shadowprof flame graph", **kw) -> str:
    """A self-contained interactive flame graph page of *profile*."""
    return _page(build_tree(profile, **kw), title, diff=False)


def render_diff_html(baseline: Profile, canary: Profile,
                     title: str = "shadowprof differential flame graph",
                     match: str = "path") -> str:
    """A self-contained differential flame graph page: the baseline's tree above the
    canary's, coloured by the change of each frame's self share."""
    return _page(diff_tree(baseline, canary, match), title, diff=True)


def _warm(name: str) -> str:
    h = zlib.crc32(name.encode("utf-8", "replace"))
    return f"hsl({h % 50},{70 + (h >> 8) % 25}%,{55 + (h >> 16) % 12}%)"


def render_svg(profile: Profile, *, width: int = 1200, row: int = 18,
               title: str = "shadowprof flame graph", **kw) -> str:
    """A static SVG flame graph of *profile*: frames narrower than half a pixel are
    left out; each frame's <title> gives its numbers (shown on hover by browsers)."""
    tree = build_tree(profile, **kw)
    total = tree["v"] or 1
    unit = tree["unit"]
    rects = []
    depth_seen = [0]

    def num(v: float) -> str:
        return f"{v / 1e9:.3f} s" if unit == "ns" else f"{v:,.0f} samples"

    def walk(node: dict, x: float, w: float, depth: int) -> None:
        if w < 0.5:
            return
        depth_seen[0] = max(depth_seen[0], depth)
        y = 24 + depth * row
        name = node["n"]
        tip = (f"{name}{'  ' + node['f'] if node['f'] else ''}\n{num(node['v'])}, "
               f"{100 * node['v'] / total:.2f}%, {node['s']:,} samples")
        chars = int((w - 6) // 7)
        text = name if len(name) <= chars else (name[:chars - 2] + ".." if chars > 3
                                                 else "")
        rects.append(
            f'<g class="fr"><title>{html.escape(tip)}</title>'
            f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{row - 1}" '
            f'fill="{_warm(name) if depth else "hsl(0,0%,80%)"}" rx="2"/>'
            + (f'<text x="{x + 3:.2f}" y="{y + row - 5}">{html.escape(text)}</text>'
               if text else "") + "</g>")
        cx = x
        for child in sorted(node["c"].values(), key=lambda c: (-c["v"], c["n"])):
            cw = w * child["v"] / node["v"] if node["v"] else 0
            walk(child, cx, cw, depth + 1)
            cx += cw

    walk(tree, 0.0, float(width), 0)
    height = 24 + (depth_seen[0] + 1) * row + 4
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="11">\n'
            f'<text x="4" y="16" font-size="14" font-family="sans-serif">'
            f'{html.escape(title)}  ({num(tree["v"])})</text>\n'
            + "\n".join(rects) + "\n</svg>\n")
