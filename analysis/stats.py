"""Statistics for sampled profiles: confidence intervals, tests, multiple testing.

A sampling profiler estimates a function's share of the time by the share of the
samples that landed in it.  If the N samples are independent draws, the number X that
landed in one function is Binomial(N, p), and everything here follows from that:

* **Confidence interval of a share: the Wilson score interval.**  The textbook Wald
  interval (p +- z*sqrt(p(1-p)/N)) covers far less often than it claims for the small
  shares a profile is full of (it collapses to [0, 0] when X = 0), and can leave
  [0, 1].  Wilson's interval inverts the score test instead: it stays inside [0, 1],
  is never empty, and its coverage stays close to the nominal level down to shares of
  a few samples (Brown, Cai and DasGupta, Statistical Science 16(2), 2001).
* **Did a share change between two profiles?**  Per function, a 2x2 table (samples in
  the function or not, baseline or canary).  When the function or the rest has few
  samples (min(X1+X2, N1+N2-X1-X2) <= 500) we use Fisher's exact test (two-sided,
  summing the probabilities of the tables no more likely than the observed one); above
  that, the pooled two-proportion z-test, whose normal approximation is then excellent
  and which is O(1) instead of O(X).
* **Effect size.**  The difference of shares in percentage points, with Newcombe's
  hybrid score interval (his method 10, built from the two Wilson intervals), and
  Cohen's h = 2 asin(sqrt(p2)) - 2 asin(sqrt(p1)), which puts small and large shares on
  one scale (|h| 0.2 is "small", 0.5 "medium").
* **Many functions at once.**  Testing 200 functions at the 5% level finds about ten
  "changes" in two identical profiles.  ``holm`` (the default) controls the
  family-wise error rate: the probability of even one false alarm stays <= alpha
  under any dependence between the tests; that is the right guarantee for a gate
  that blocks a deployment.  ``bh`` (Benjamini-Hochberg) controls the expected share
  of false discoveries among those reported: more power for exploring, but a gate
  using it would fire on A/A comparisons more often than alpha.

Caveat: the binomial model assumes independent samples.  Samples from one run are
close to that for CPU-bound code sampled far more slowly than it changes phase, but
run-to-run variation (caches, noisy neighbours, input) is *not* in the model: the
intervals say how precisely this run was measured, not how the next run will behave.
"""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["z_for", "wilson_interval", "diff_interval", "cohens_h",
           "two_proportion_test", "fisher_exact", "adjust_pvalues"]

# Below this many samples in the function (or in the rest), use the exact test.
EXACT_LIMIT = 500


def z_for(confidence: float) -> float:
    """The two-sided normal quantile for *confidence* (0.95 -> 1.95996...)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence!r}: give a number between 0 and 1, "
                         "e.g. 0.95")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(x: int, n: int, confidence: float = 0.95) -> tuple:
    """The Wilson score interval (low, high) for a share of *x* in *n* samples.

    With n = 0 nothing is known: (0.0, 1.0).
    """
    if n <= 0:
        return (0.0, 1.0)
    z = z_for(confidence)
    p = x / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    # Exact endpoints at the boundary (rounding would otherwise exclude 0 or 1).
    if x == 0:
        low = 0.0
    if x == n:
        high = 1.0
    return (low, high)


def diff_interval(x1: int, n1: int, x2: int, n2: int,
                  confidence: float = 0.95) -> tuple:
    """Newcombe's hybrid score interval (low, high) for p2 - p1, the change of a share
    from sample 1 (baseline) to sample 2 (canary)."""
    p1 = x1 / n1 if n1 else 0.0
    p2 = x2 / n2 if n2 else 0.0
    l1, u1 = wilson_interval(x1, n1, confidence)
    l2, u2 = wilson_interval(x2, n2, confidence)
    d = p2 - p1
    return (d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2),
            d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2))


def cohens_h(p1: float, p2: float) -> float:
    """Cohen's h effect size for the change of a proportion from p1 to p2."""
    return 2 * math.asin(math.sqrt(min(1.0, max(0.0, p2)))) - \
        2 * math.asin(math.sqrt(min(1.0, max(0.0, p1))))


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_exact(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided p-value of Fisher's exact test that x1/n1 and x2/n2 estimate the same
    proportion: the probability, given the margins, of a table no more likely than
    the observed one."""
    k = x1 + x2                      # samples in the function, both sides
    n = n1 + n2
    lo, hi = max(0, k - n2), min(k, n1)
    log_denom = _log_choose(n, k)

    def logp(a: int) -> float:       # P(x1 = a | margins), hypergeometric
        return _log_choose(n1, a) + _log_choose(n2, k - a) - log_denom

    observed = logp(x1)
    # A relative tolerance, as R's fisher.test uses, so that ties in exact arithmetic
    # are not lost to rounding.
    cutoff = observed + math.log1p(1e-7)
    total = 0.0
    for a in range(lo, hi + 1):
        lp = logp(a)
        if lp <= cutoff:
            total += math.exp(lp)
    return min(1.0, total)


def two_proportion_test(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided p-value that x1/n1 and x2/n2 estimate the same proportion: Fisher's
    exact test for small counts, the pooled z-test otherwise (see the module
    docstring)."""
    if n1 <= 0 or n2 <= 0:
        return 1.0
    k = x1 + x2
    if min(k, n1 + n2 - k) <= EXACT_LIMIT:
        return fisher_exact(x1, n1, x2, n2)
    pooled = k / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (x2 / n2 - x1 / n1) / se
    return math.erfc(abs(z) / math.sqrt(2))


def adjust_pvalues(pvalues: list, method: str = "holm") -> list:
    """p-values adjusted for testing them all at once, in the input's order.

    holm: Holm's step-down correction (family-wise error rate); bh: Benjamini-Hochberg
    (false discovery rate).  An adjusted p-value below alpha is a discovery at level
    alpha under that guarantee.
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [1.0] * m
    if method == "holm":
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (m - rank) * pvalues[i]))
            adjusted[i] = running
    elif method == "bh":
        running = 1.0
        for rank in range(m - 1, -1, -1):
            i = order[rank]
            running = min(running, pvalues[i] * m / (rank + 1))
            adjusted[i] = min(1.0, running)
    else:
        raise ValueError(f"correction {method!r}: choose holm or bh")
    return adjusted
