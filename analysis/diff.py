"""Comparing two profiles: which functions' shares of the samples changed, whose cost
per call changed, and how sure.

**Shares.**  For every function sampled in either profile, the share of the samples
it had in the baseline (x1 of n1) and in the canary (x2 of n2) is compared with a
two-proportion test (Fisher's exact test for small counts, the pooled z-test above;
see stats.py).  The effect size is the change in percentage points with Newcombe's 95%
interval, and Cohen's h.

**Cost per call.**  Shares move with the traffic mix and with every other function;
the time per call does not.  shadowprof counts every call exactly, so for each
function called in both profiles the sampled time (self, or total with ``by="total"``)
divided by its exact calls is its cost per call, in ns.  The ratio canary/baseline has
an interval from the sample counts and a test of "no change" (the conditional test for
a ratio of Poisson rates, stats.rate_ratio_interval); the calls, being exact, add no
uncertainty.

The p-values of both families are corrected together for the number of tests, by
Holm's method by default: a deployment gate wants the chance of *any* false alarm on
two equal builds to stay below alpha, which is what Holm guarantees
(Benjamini-Hochberg, ``bh``, bounds only the expected share of false alarms among the
findings).

A *regression* is a function whose share grew by at least ``threshold`` points, or
whose cost per call grew by at least the factor ``per_call_threshold``, with a
corrected p-value below ``alpha``; :func:`regressions` lists them, and the command
line exits with status 1 when there is one.

Functions are matched by qualified name and the file's path relative to its import
root (``match="path"``, the default; paths.py): the same program deployed into
``v1/`` and ``v2/`` folders, or run by two interpreters, matches function by function.
``line`` also compares the first line (an edit above a function moves it), ``name``
uses the file's base name only, ``absolute`` the absolute path.  Shares are of sample
counts (the binomial quantity); a profile that has only times (a foreign pprof file
without a count sample type) is counted in periods of its sampling interval.
"""

from __future__ import annotations

import math
import os

from . import stats
from .model import Profile
from .paths import PathMapper

__all__ = ["FunctionChange", "Comparison", "compare", "regressions", "render",
           "to_json"]

FunctionKey = tuple   # (qualified name, file, first line or 0)

MATCH = ("path", "line", "name", "absolute")
# Earlier names of the matching rules.
_ALIASES = {"file": "path"}


def _check_match(match: str) -> str:
    match = _ALIASES.get(match, match)
    if match not in MATCH:
        raise ValueError(f"--match-functions {match!r}: choose path, line, name or "
                         "absolute")
    return match


def function_key(fn, match: str = "line", paths: PathMapper | None = None
                 ) -> FunctionKey:
    """How a function is recognised in the other profile.  path: qualified name and
    the file's path relative to its import root (*paths*; without it, the file as
    it is); line: also the first line; name: name and the file's base name;
    absolute: name and the absolute file."""
    match = _check_match(match)
    if match == "absolute":
        return (fn.name, fn.filename, 0)
    if match == "name":
        return (fn.name, os.path.basename(fn.filename), 0)
    filename = paths.module_path(fn.filename) if paths is not None else fn.filename
    return (fn.name, filename, fn.firstlineno if match == "line" else 0)


def _sampled(profile: Profile, by: str, match: str, paths) -> tuple:
    """({function key: [samples, ns]}, total samples, total ns) of *profile*: the
    functions with samples (Profile.function_stats), self or total, summed by key."""
    if by not in ("self", "total"):
        raise ValueError(f"--by {by!r}: choose self or total")
    match = _check_match(match)
    count = profile.sample_counter()
    counted = [s for s in profile.stacks if s.frames and count(s) > 0]
    out: dict = {}
    for fid, st in profile.function_stats().items():
        c, ns = ((st.self_samples, st.self_ns) if by == "self"
                 else (st.total_samples, st.total_ns))
        if c <= 0:
            continue
        fn = profile.functions.get(fid)
        k = function_key(fn, match, paths) if fn else (f"<id {fid}>", "?", 0)
        acc = out.setdefault(k, [0, 0.0])
        acc[0] += c
        acc[1] += ns
    return (out, sum(count(s) for s in counted),
            sum(s.weight_ns for s in counted))


def sample_counts(profile: Profile, by: str = "self", match: str = "line",
                  paths: PathMapper | None = None) -> tuple:
    """({function key: samples}, total samples) of *profile*.  by: ``self`` (samples
    in which the function was running) or ``total`` (on the stack at all); match and
    paths: see :func:`function_key`."""
    got, n, _ = _sampled(profile, by, match, paths)
    return {k: v[0] for k, v in got.items()}, n


class FunctionChange:
    """One function in both profiles: its shares, the change and the evidence for
    it; its exact calls; and, if it was called in both, its cost per call."""
    __slots__ = ("key", "x1", "n1", "x2", "n2", "low", "high", "h", "p", "p_adjusted",
                 "calls1", "calls2", "ns1", "ns2", "ratio", "ratio_low", "ratio_high",
                 "p_call", "p_call_adjusted")

    def __init__(self, key, x1, n1, x2, n2, calls1, calls2, confidence,
                 ns1=0.0, ns2=0.0, ns_per_sample=(0.0, 0.0)):
        self.key = key
        self.x1, self.n1, self.x2, self.n2 = x1, n1, x2, n2
        self.calls1, self.calls2 = calls1, calls2
        self.ns1, self.ns2 = ns1, ns2
        self.low, self.high = stats.diff_interval(x1, n1, x2, n2, confidence)
        self.h = stats.cohens_h(self.share1, self.share2)
        self.p = stats.two_proportion_test(x1, n1, x2, n2)
        self.p_adjusted = self.p
        self.ratio = self.ratio_low = self.ratio_high = None
        self.p_call = self.p_call_adjusted = None
        if calls1 and calls2 and x1 + x2 > 0:
            # Exposure: calls per ns of one sample (the function's own time per
            # sample where it was sampled, else the profile's).
            w1 = ns1 / x1 if x1 and ns1 > 0 else ns_per_sample[0]
            w2 = ns2 / x2 if x2 and ns2 > 0 else ns_per_sample[1]
            if w1 > 0 and w2 > 0:
                e1, e2 = calls1 / w1, calls2 / w2
                self.ratio = (x2 / e2) / (x1 / e1) if x1 else math.inf
                self.ratio_low, self.ratio_high = stats.rate_ratio_interval(
                    x1, e1, x2, e2, confidence)
                self.p_call = self.p_call_adjusted = stats.rate_ratio_test(
                    x1, e1, x2, e2)

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

    @property
    def ns_per_call1(self) -> float | None:
        """Baseline sampled time per exact call, ns (None if never called)."""
        return self.ns1 / self.calls1 if self.calls1 else None

    @property
    def ns_per_call2(self) -> float | None:
        """Canary sampled time per exact call, ns (None if never called)."""
        return self.ns2 / self.calls2 if self.calls2 else None

    def __repr__(self) -> str:
        per_call = "" if self.ratio is None else f", per call x{self.ratio:.3g}"
        return (f"FunctionChange({self.name!r}, {100 * self.share1:.2f}% -> "
                f"{100 * self.share2:.2f}%, p_adjusted={self.p_adjusted:.3g}"
                f"{per_call})")


class Comparison:
    """The result of :func:`compare`: changes sorted by the evidence for a change of
    share (corrected p-value, then size of the change), and the settings used."""

    def __init__(self, changes, n1, n2, by, confidence, correction, call_changes,
                 match="path", matched_by=("", "")):
        self.changes = changes
        self.n1, self.n2 = n1, n2
        self.by, self.confidence, self.correction = by, confidence, correction
        self.call_changes = call_changes   # [(key, calls1, calls2)] not sampled
        self.match = match
        self.matched_by = matched_by       # (baseline, canary): how paths were found

    @property
    def tests(self) -> int:
        """The number of tests the p-values were corrected for."""
        return len(self.changes) + sum(c.p_call is not None for c in self.changes)

    def describe_match(self) -> str:
        """How functions were matched, in words."""
        rule = {"path": "qualified name and file path relative to the import root",
                "line": "qualified name, first line and file path relative to the "
                        "import root",
                "name": "qualified name and the file's base name",
                "absolute": "qualified name and absolute file path"}[self.match]
        if self.match in ("path", "line"):
            b, c = self.matched_by
            rule += (f" (both: {b})" if b == c else
                     f" (baseline: {b}; canary: {c})")
        return rule

    def find(self, name: str) -> FunctionChange | None:
        """The change of the function called *name* (qualified name), if sampled."""
        for c in self.changes:
            if c.name == name:
                return c
        return None


def _calls(profile: Profile, match: str, paths) -> dict:
    out: dict = {}
    for fid, n in profile.calls.items():
        if fid in profile.functions:
            k = function_key(profile.functions[fid], match, paths)
            out[k] = out.get(k, 0) + n
    return out


def compare(baseline: Profile, canary: Profile, *, by: str = "self",
            confidence: float = 0.95, correction: str = "holm",
            match: str = "path") -> Comparison:
    """Compare the function shares and costs per call of *baseline* and *canary*;
    functions are matched by :func:`function_key` (*match*: path, line, name or
    absolute)."""
    match = _check_match(match)
    paths1, paths2 = PathMapper(baseline), PathMapper(canary)
    got1, n1, t1 = _sampled(baseline, by, match, paths1)
    got2, n2, t2 = _sampled(canary, by, match, paths2)
    calls1 = _calls(baseline, match, paths1)
    calls2 = _calls(canary, match, paths2)
    per_sample = (t1 / n1 if n1 else 0.0, t2 / n2 if n2 else 0.0)
    changes = []
    for k in set(got1) | set(got2):
        x1, ns1 = got1.get(k, (0, 0.0))
        x2, ns2 = got2.get(k, (0, 0.0))
        changes.append(FunctionChange(k, x1, n1, x2, n2, calls1.get(k), calls2.get(k),
                                      confidence, ns1, ns2, per_sample))
    # One family: the share tests and the per-call tests, corrected together.
    pvalues = [c.p for c in changes] + [c.p_call for c in changes
                                        if c.p_call is not None]
    adjusted = iter(stats.adjust_pvalues(pvalues, correction))
    for c in changes:
        c.p_adjusted = next(adjusted)
    for c in changes:
        if c.p_call is not None:
            c.p_call_adjusted = next(adjusted)
    changes.sort(key=lambda c: (c.p_adjusted, c.p, -abs(c.change), c.key))
    sampled = set(got1) | set(got2)
    call_changes = sorted(
        ((k, calls1.get(k, 0), calls2.get(k, 0)) for k in set(calls1) | set(calls2)
         if k not in sampled and calls1.get(k, 0) != calls2.get(k, 0)),
        key=lambda t: (-abs(t[2] - t[1]), t[0]))
    return Comparison(changes, n1, n2, by, confidence, correction, call_changes,
                      match, (paths1.how, paths2.how))


def share_regressions(comparison: Comparison, threshold: float = 1.0,
                      alpha: float = 0.05) -> list:
    """Functions whose share grew by at least *threshold* percentage points with a
    corrected p-value below *alpha*."""
    return [c for c in comparison.changes
            if 100 * c.change >= threshold and c.p_adjusted < alpha]


def per_call_regressions(comparison: Comparison, per_call_threshold: float = 1.25,
                         alpha: float = 0.05) -> list:
    """Functions whose cost per call grew by at least the factor
    *per_call_threshold* with a corrected p-value below *alpha*."""
    return [c for c in comparison.changes
            if c.ratio is not None and c.ratio >= per_call_threshold
            and c.p_call_adjusted < alpha]


def regressions(comparison: Comparison, threshold: float = 1.0,
                alpha: float = 0.05, per_call_threshold: float = 1.25) -> list:
    """Functions that fail the gate: a share regression (:func:`share_regressions`)
    or a per-call one (:func:`per_call_regressions`), in order of evidence."""
    found = {id(c) for c in share_regressions(comparison, threshold, alpha)}
    found |= {id(c) for c in per_call_regressions(comparison, per_call_threshold,
                                                  alpha)}
    return [c for c in comparison.changes if id(c) in found]


def _calls_text(c1, c2) -> str:
    if c1 is None and c2 is None:
        return "-"
    a, b = c1 or 0, c2 or 0
    if a == b:
        return f"{a:,} (=)"
    return f"{a:,} -> {b:,} ({b - a:+,})"


def _p(p: float) -> str:
    return "<1e-300" if p == 0 else (f"{p:.2g}" if p < 0.01 else f"{p:.3f}")


def _ns(ns: float | None) -> str:
    if ns is None:
        return "-"
    if ns >= 1e6:
        return f"{ns / 1e6:,.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:,.2f} us"
    return f"{ns:,.0f} ns"


def _x(r: float | None) -> str:
    if r is None:
        return "-"
    return "inf" if math.isinf(r) else f"{r:.2f}"


def _where(key) -> str:
    _name, filename, line = key
    if not filename or filename.startswith("<"):
        return ""
    return f"  {filename}" + (f":{line}" if line else "")


def render(comparison: Comparison, *, threshold: float = 1.0, alpha: float = 0.05,
           limit: int = 30, names=("baseline", "canary"),
           per_call_threshold: float = 1.25) -> str:
    """The comparison as text: one line per function, most evidence first, then the
    costs per call."""
    cmp = comparison
    pct = f"{100 * cmp.confidence:g}%"
    lines = [
        f"shadowprof diff: {names[0]} ({cmp.n1:,} samples) vs {names[1]} "
        f"({cmp.n2:,} samples), {cmp.by} share of samples",
        f"  functions matched by {cmp.describe_match()}",
        f"  change: canary - baseline in points, with its {pct} Newcombe interval; "
        f"h: Cohen's h; p: two-sided, {cmp.correction}-corrected over "
        f"{cmp.tests} tests (shares and costs per call); calls are exact",
        "",
        f"{'base%':>7} {'canary%':>7} {'change':>7} {pct + ' interval':>17} "
        f"{'h':>6} {'p':>8}  {'calls (base -> canary)':<28} function",
    ]
    for c in cmp.changes[:limit]:
        mark = "*" if c.p_adjusted < alpha else " "
        lines.append(
            f"{100 * c.share1:6.2f}% {100 * c.share2:6.2f}% {100 * c.change:+7.2f} "
            f"[{100 * c.low:+6.2f}, {100 * c.high:+6.2f}] {c.h:+6.3f} "
            f"{_p(c.p_adjusted):>7}{mark}  {_calls_text(c.calls1, c.calls2):<28} "
            f"{c.name}{_where(c.key)}")
    if len(cmp.changes) > limit:
        lines.append(f"  ... {len(cmp.changes) - limit} more functions (--limit)")
    per_call = sorted((c for c in cmp.changes if c.ratio is not None),
                      key=lambda c: (c.p_call_adjusted, -(c.ratio or 0), c.key))
    if per_call:
        lines += ["",
                  f"Cost per call ({cmp.by} time / exact calls); ratio: canary / "
                  f"baseline with its {pct} interval; p: as above",
                  f"{'base/call':>12} {'canary/call':>12} {'ratio':>6} "
                  f"{pct + ' interval':>16} {'p':>8}  function"]
        for c in per_call[:limit]:
            mark = "*" if c.p_call_adjusted < alpha else " "
            lines.append(
                f"{_ns(c.ns_per_call1):>12} {_ns(c.ns_per_call2):>12} "
                f"{_x(c.ratio):>6} [{_x(c.ratio_low):>6}, {_x(c.ratio_high):>6}] "
                f"{_p(c.p_call_adjusted):>7}{mark}  {c.name}{_where(c.key)}")
        if len(per_call) > limit:
            lines.append(f"  ... {len(per_call) - limit} more functions (--limit)")
    if cmp.call_changes:
        lines.append("")
        lines.append("Call-count changes of functions never sampled (exact)")
        for key, a, b in cmp.call_changes[:limit]:
            lines.append(f"  {_calls_text(a, b):<28} {key[0]}{_where(key)}")
    shares = share_regressions(cmp, threshold, alpha)
    calls = per_call_regressions(cmp, per_call_threshold, alpha)
    lines.append("")
    if shares or calls:
        parts = []
        if shares:
            parts.append(f"{len(shares)} function(s) grew by >= {threshold:g} points: "
                         + ", ".join(f"{c.name} ({100 * c.change:+.2f})"
                                     for c in shares))
        if calls:
            parts.append(f"{len(calls)} function(s) cost >= {per_call_threshold:g}x "
                         "per call: " + ", ".join(
                             f"{c.name} (x{_x(c.ratio)} [{_x(c.ratio_low)}, "
                             f"{_x(c.ratio_high)}])" for c in calls))
        lines.append(f"REGRESSION at corrected p < {alpha:g}: " + "; ".join(parts))
    else:
        lines.append(f"no regression: no function grew by >= {threshold:g} points or "
                     f"cost >= {per_call_threshold:g}x per call at corrected p < "
                     f"{alpha:g} (* marks p < {alpha:g})")
    return "\n".join(lines) + "\n"


def _num(v):
    if v is None:
        return None
    return None if isinstance(v, float) and (math.isinf(v) or math.isnan(v)) else v


def to_json(comparison: Comparison, *, threshold: float = 1.0, alpha: float = 0.05,
            per_call_threshold: float = 1.25, names=("baseline", "canary")) -> dict:
    """The comparison as a JSON-ready dict: settings, the verdict, and per function
    (``functions``, in order of the evidence for either change) its shares, change, calls, cost per call and
    p-values.  Numbers that are not defined (no calls, an infinite ratio) are None."""
    cmp = comparison
    shares = {id(c) for c in share_regressions(cmp, threshold, alpha)}
    calls = {id(c) for c in per_call_regressions(cmp, per_call_threshold, alpha)}
    functions = []
    order = sorted(cmp.changes, key=lambda c: (
        min(c.p_adjusted, 1.0 if c.p_call_adjusted is None else c.p_call_adjusted),
        c.p_adjusted, -abs(c.change), c.key))
    for c in order:
        name, filename, line = c.key
        sig_share = c.p_adjusted < alpha
        sig_call = c.p_call_adjusted is not None and c.p_call_adjusted < alpha
        functions.append({
            "function": name, "file": filename, "line": line or None,
            "share_baseline": c.share1, "share_canary": c.share2,
            "change_points": 100 * c.change,
            "change_interval_points": [100 * c.low, 100 * c.high],
            "cohens_h": c.h, "p": c.p, "p_adjusted": c.p_adjusted,
            "samples_baseline": c.x1, "samples_canary": c.x2,
            "calls_baseline": c.calls1, "calls_canary": c.calls2,
            "ns_per_call_baseline": c.ns_per_call1,
            "ns_per_call_canary": c.ns_per_call2,
            "per_call_ratio": _num(c.ratio),
            "per_call_ratio_interval": (None if c.ratio is None else
                                        [_num(c.ratio_low), _num(c.ratio_high)]),
            "per_call_p": c.p_call, "per_call_p_adjusted": c.p_call_adjusted,
            "share_significant": sig_share, "per_call_significant": sig_call,
            "significant": sig_share or sig_call,
            "share_regression": id(c) in shares, "per_call_regression": id(c) in calls,
        })
    found = regressions(cmp, threshold, alpha, per_call_threshold)
    return {
        "baseline": names[0], "canary": names[1],
        "samples_baseline": cmp.n1, "samples_canary": cmp.n2,
        "by": cmp.by, "confidence": cmp.confidence, "correction": cmp.correction,
        "tests": cmp.tests, "alpha": alpha, "threshold_points": threshold,
        "per_call_threshold": per_call_threshold,
        "match": cmp.match, "matched_by": cmp.describe_match(),
        "regression": bool(found),
        "regressions": [c.name for c in found],
        "functions": functions,
        "call_changes": [{"function": k[0], "file": k[1], "line": k[2] or None,
                          "calls_baseline": a, "calls_canary": b}
                         for k, a, b in cmp.call_changes],
    }
