"""Synthetic profiles with known shares, for tests/test_analysis_*.py.

``draw(shares, n, rng)`` samples n stacks (multinomial over leaf functions, seeded,
pure Python) and returns a Profile whose stacks are main -> handle -> <leaf>, so that
the true self share of each leaf is known exactly.
"""

import random

from shadowprof.analysis.model import Function, Profile, Stack

FILE = "/srv/app/service.py"
LEAVES = ("parse_request", "render_page", "query_db", "compress", "log_line",
          "auth_check", "cache_get", "serialize", "validate", "route")
SHARES = (0.30, 0.20, 0.15, 0.10, 0.08, 0.06, 0.05, 0.03, 0.02, 0.01)


def functions() -> dict:
    fns = {1: Function(1, "main", FILE, 1), 2: Function(2, "handle", FILE, 10)}
    for i, name in enumerate(LEAVES):
        fns[10 + i] = Function(10 + i, name, FILE, 100 + 10 * i)
    return fns


def draw(shares, n: int, rng: random.Random, *, calls_scale: int = 1,
         thread_id: int = 101) -> Profile:
    """A profile of n samples whose leaf shares are drawn from *shares*."""
    picks = rng.choices(range(len(shares)), weights=shares, k=n)
    counts = [0] * len(shares)
    for i in picks:
        counts[i] += 1
    stacks = []
    for i, c in enumerate(counts):
        if c:
            line = 101 + 10 * i
            stacks.append(Stack(thread_id, ((1, 5), (2, 12), (10 + i, line)), c,
                                c * 4_000_000))
    calls = {1: 1, 2: 1000 * calls_scale}
    calls.update({10 + i: 1000 * calls_scale * (i + 1) for i in range(len(shares))})
    edges = {(0, 1): 1, (1, 2): 1000 * calls_scale}
    edges.update({(2, 10 + i): v for i, v in
                  ((i, 1000 * calls_scale * (i + 1)) for i in range(len(shares)))})
    return Profile(functions=functions(), stacks=stacks, calls=calls, edges=edges,
                   threads={thread_id: "MainThread"}, samples=n,
                   weight_ns=n * 4_000_000, cpu_ns=n * 4_000_000,
                   duration_ns=n * 4_000_000, interval_ns=4_000_000)


def shifted(shares, frm: int, to: int, points: float) -> list:
    """*shares* with *points* percentage points moved from leaf *frm* to leaf *to*."""
    out = list(shares)
    out[frm] -= points / 100
    out[to] += points / 100
    return out
