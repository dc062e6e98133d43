"""Comparing two profiles: which functions' shares of the samples changed, and how sure.

For every function sampled in either profile, the share of the samples it had in the
baseline (x1 of n1) and in the canary (x2 of n2) is compared with a two-proportion
test (Fisher's exact test for small counts, the pooled z-test above; see stats.py).
The p-values are corrected for the number of functions compared, by Holm's method by
default: a deployment gate wants the chance of *any* false alarm on two equal builds
to stay below alpha, which is what Holm guarantees (Benjamini-Hochberg, ``bh``, bounds
only the expected share of false alarms among the findings).  The effect size is the
change in percentage points with Newcombe's 95% interval, and Cohen's h.

A *regression* is a function whose share grew by at least ``threshold`` points with a
corrected p-value below ``alpha``; :func:`regressions` lists them, and the command
line exits with status 1 when there is one.  Exact call counts are shown beside, as
they are: they are not sampled, so they need no test.

Functions are matched by qualified name and file (``match="file"``, the default: an
edit above a function moves its first line), or also by first line (``line``), or by
name and the file's base name (``name``: builds installed in different directories).
Shares are of sample counts (the binomial quantity); a profile that has only times (a foreign pprof file
without a count sample type) is counted in periods of its sampling interval.
"""

from __future__ import annotations

import os

from . import stats
from .model import Profile

__all__ = ["FunctionChange", "Comparison", "compare", "regressions", "render"]

FunctionKey = tuple   # (qualified name, filename, first line)


MATCH = ("line", "file", "name")


def function_key(fn, match: str = "line") -> FunctionKey:
    """How a function is recognised in the other profile.  line: qualified name, file
    and first line; file: name and file (an edit above a function moves its first
    line); name: name and the file's base name (builds installed in other
    directories)."""
    if match == "line":
        return (fn.name, fn.filename, fn.firstlineno)
    if match == "file":
        return (fn.name, fn.filename, 0)
    if match == "name":
        return (fn.name, os.path.basename(fn.filename), 0)
    raise ValueError(f"--match-functions {match!r}: choose line, file or name")


def sample_counts(profile: Profile, by: str = "self", match: str = "line") -> tuple:
    """({function key: samples}, total samples) of *profile*.  by: ``self`` (samples
    in which the function was running) or ``total`` (on the stack at all); match: see
    :func:`function_key`."""
    if by not in ("self", "total"):
        raise ValueError(f"--by {by!r}: choose self or total")
    if match not in MATCH:
        raise ValueError(f"--match-functions {match!r}: choose line, file or name")
    use_weight = not any(s.count for s in profile.stacks)
    period = profile.interval_ns or 1
    counts: dict = {}
    n = 0
    for s in profile.stacks:
        c = round(s.weight_ns / period) if use_weight else s.count
        if c <= 0 or not s.frames:
            continue
        n += c
        if by == "self":
            fids = (s.frames[-1][0],)
        else:
            fids = {fid for fid, _ in s.frames}
        for fid in fids:
            fn = profile.functions.get(fid)
            k = function_key(fn, match) if fn else (f"<id {fid}>", "?", 0)
            counts[k] = counts.get(k, 0) + c
    return counts, n


class FunctionChange:
    """One function's shares in both profiles, the change and the evidence for it."""
    __slots__ = ("key", "x1", "n1", "x2", "n2", "low", "high", "h", "p", "p_adjusted",
                 "calls1", "calls2")

    def __init__(self, key, x1, n1, x2, n2, calls1, calls2, confidence):
        self.key = key
        self.x1, self.n1, self.x2, self.n2 = x1, n1, x2, n2
        self.calls1, self.calls2 = calls1, calls2
        self.low, self.high = stats.diff_interval(x1, n1, x2, n2, confidence)
        self.h = stats.cohens_h(self.share1, self.share2)
        self.p = stats.two_proportion_test(x1, n1, x2, n2)
        self.p_adjusted = self.p

    @property
    def name(self) -> str:
        return self.key[0]

    @property
    def share1(self) -> float:
        return self.x1 / self.n1 if self.n1 else 0.0

    @property
    def share2(self) -> float:
        return self.x2 / self.n2 if self.n2 else 0.0

    @property
    def change(self) -> float:
        """Canary share minus baseline share (a fraction; x100 for points)."""
        return self.share2 - self.share1

    def __repr__(self) -> str:
        return (f"FunctionChange({self.name!r}, {100 * self.share1:.2f}% -> "
                f"{100 * self.share2:.2f}%, p_adjusted={self.p_adjusted:.3g})")


class Comparison:
    """The result of :func:`compare`: changes sorted by evidence (corrected p-value,
    then size of the change), and the settings used."""

    def __init__(self, changes, n1, n2, by, confidence, correction, call_changes):
        self.changes = changes
        self.n1, self.n2 = n1, n2
        self.by, self.confidence, self.correction = by, confidence, correction
        self.call_changes = call_changes   # [(key, calls1, calls2)] not sampled

    def find(self, name: str) -> FunctionChange | None:
        """The change of the function called *name* (qualified name), if sampled."""
        for c in self.changes:
            if c.name == name:
                return c
        return None


def _calls(profile: Profile, match: str) -> dict:
    out: dict = {}
    for fid, n in profile.calls.items():
        if fid in profile.functions:
            k = function_key(profile.functions[fid], match)
            out[k] = out.get(k, 0) + n
    return out


def compare(baseline: Profile, canary: Profile, *, by: str = "self",
            confidence: float = 0.95, correction: str = "holm",
            match: str = "file") -> Comparison:
    """Compare the function shares of *baseline* and *canary*; functions are matched
    by :func:`function_key` (*match*: line, file or name)."""
    counts1, n1 = sample_counts(baseline, by, match)
    counts2, n2 = sample_counts(canary, by, match)
    calls1 = _calls(baseline, match)
    calls2 = _calls(canary, match)
    changes = [FunctionChange(k, counts1.get(k, 0), n1, counts2.get(k, 0), n2,
                              calls1.get(k), calls2.get(k), confidence)
               for k in set(counts1) | set(counts2)]
    for c, p in zip(changes, stats.adjust_pvalues([c.p for c in changes], correction)):
        c.p_adjusted = p
    changes.sort(key=lambda c: (c.p_adjusted, c.p, -abs(c.change), c.key))
    sampled = set(counts1) | set(counts2)
    call_changes = sorted(
        ((k, calls1.get(k, 0), calls2.get(k, 0)) for k in set(calls1) | set(calls2)
         if k not in sampled and calls1.get(k, 0) != calls2.get(k, 0)),
        key=lambda t: (-abs(t[2] - t[1]), t[0]))
    return Comparison(changes, n1, n2, by, confidence, correction, call_changes)


def regressions(comparison: Comparison, threshold: float = 1.0,
                alpha: float = 0.05) -> list:
    """Functions whose share grew by at least *threshold* percentage points with a
    corrected p-value below *alpha*."""
    return [c for c in comparison.changes
            if 100 * c.change >= threshold and c.p_adjusted < alpha]


def _calls_text(c1, c2) -> str:
    if c1 is None and c2 is None:
        return "-"
    a, b = c1 or 0, c2 or 0
    if a == b:
        return f"{a:,} (=)"
    return f"{a:,} -> {b:,} ({b - a:+,})"


def _p(p: float) -> str:
    return "<1e-300" if p == 0 else (f"{p:.2g}" if p < 0.01 else f"{p:.3f}")


def render(comparison: Comparison, *, threshold: float = 1.0, alpha: float = 0.05,
           limit: int = 30, names=("baseline", "canary")) -> str:
    """The comparison as text: one line per function, most evidence first."""
    cmp = comparison
    pct = f"{100 * cmp.confidence:g}%"
    lines = [
        f"shadowprof diff: {names[0]} ({cmp.n1:,} samples) vs {names[1]} "
        f"({cmp.n2:,} samples), {cmp.by} share of samples",
        f"  change: canary - baseline in points, with its {pct} Newcombe interval; "
        f"h: Cohen's h; p: two-sided, {cmp.correction}-corrected over "
        f"{len(cmp.changes)} functions; calls are exact",
        "",
        f"{'base%':>7} {'canary%':>7} {'change':>7} {pct + ' interval':>17} "
        f"{'h':>6} {'p':>8}  {'calls (base -> canary)':<28} function",
    ]
    for c in cmp.changes[:limit]:
        mark = "*" if c.p_adjusted < alpha else " "
        name, filename, line = c.key
        where = (f"  {filename}" + (f":{line}" if line else "")) \
            if filename and not filename.startswith("<") else ""
        lines.append(
            f"{100 * c.share1:6.2f}% {100 * c.share2:6.2f}% {100 * c.change:+7.2f} "
            f"[{100 * c.low:+6.2f}, {100 * c.high:+6.2f}] {c.h:+6.3f} "
            f"{_p(c.p_adjusted):>7}{mark}  {_calls_text(c.calls1, c.calls2):<28} "
            f"{name}{where}")
    if len(cmp.changes) > limit:
        lines.append(f"  ... {len(cmp.changes) - limit} more functions (--limit)")
    if cmp.call_changes:
        lines.append("")
        lines.append("Call-count changes of functions never sampled (exact)")
        for (name, filename, line), a, b in cmp.call_changes[:limit]:
            lines.append(f"  {_calls_text(a, b):<28} {name}  {filename}"
                         + (f":{line}" if line else ""))
    found = regressions(cmp, threshold, alpha)
    lines.append("")
    if found:
        lines.append(f"REGRESSION: {len(found)} function(s) grew by >= {threshold:g} "
                     f"points at corrected p < {alpha:g}: "
                     + ", ".join(f"{c.name} ({100 * c.change:+.2f})" for c in found))
    else:
        lines.append(f"no regression: no function grew by >= {threshold:g} points at "
                     f"corrected p < {alpha:g} (* marks p < {alpha:g})")
    return "\n".join(lines) + "\n"

