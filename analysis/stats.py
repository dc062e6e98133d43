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
* **Did the cost per call change?**  shadowprof also knows each function's exact
  number of calls c, so its time per call is estimated by (samples in it x time per
  sample) / c.  The samples x landing in a function are close to Poisson with mean
  E * tau, where tau is its time per call and the *exposure* E = c / (time per
  sample).  Given x1 + x2 = s, x2 is Binomial(s, pi) with
  pi = E2 R / (E1 + E2 R), R = tau2 / tau1 the ratio of the costs per call (the
  classical conditional test for a ratio of Poisson rates).  So the interval of R is
  the Wilson interval of pi mapped through that relation, and R = 1 is tested by a
  binomial test of x2 against pi0 = E2 / (E1 + E2): exact below EXACT_LIMIT, the score
  z-test above.  Calls are exact, so all the uncertainty is in the samples; a share
  near 1 makes the Poisson model a little conservative (the binomial varies less).

Caveat: the binomial model assumes independent samples.  Samples from one run are
close to that for CPU-bound code sampled far more slowly than it changes phase, but
run-to-run variation (caches, noisy neighbours, input) is *not* in the model: the
intervals say how precisely this run was measured, not how the next run will behave.
"""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["z_for", "wilson_interval", "diff_interval", "cohens_h",
           "two_proportion_test", "fisher_exact", "binomial_test",
           "rate_ratio_interval", "rate_ratio_test", "adjust_pvalues"]

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


def binomial_test(x: int, n: int, p: float) -> float:
    """Two-sided p-value that *x* successes in *n* trials come from Binomial(n, p):
    exact (summing the outcomes no more likely than *x*) for small counts, the score
    z-test when both n*p and n*(1-p) exceed EXACT_LIMIT."""
    if n <= 0:
        return 1.0
    if p <= 0.0:
        return 1.0 if x == 0 else 0.0
    if p >= 1.0:
        return 1.0 if x == n else 0.0
    if min(n * p, n * (1 - p)) > EXACT_LIMIT:
        z = (x - n * p) / math.sqrt(n * p * (1 - p))
        return math.erfc(abs(z) / math.sqrt(2))
    log_p, log_q = math.log(p), math.log1p(-p)

    def logpmf(k: int) -> float:
        return _log_choose(n, k) + k * log_p + (n - k) * log_q

    cutoff = logpmf(x) + math.log1p(1e-7)
    # The pmf is unimodal: walk out from the mode on each side until the terms are
    # too small to matter (below e^-40 of the observed outcome's, which is in the
    # sum), so a large n stays cheap.
    mode = min(n, int((n + 1) * p))
    floor = cutoff - 40.0
    total = 0.0
    for ks in (range(mode, n + 1), range(mode - 1, -1, -1)):
        for k in ks:
            lp = logpmf(k)
            if lp < floor:
                break
            if lp <= cutoff:
                total += math.exp(lp)
    return min(1.0, total)


def rate_ratio_interval(x1: int, e1: float, x2: int, e2: float,
                        confidence: float = 0.95) -> tuple:
    """The interval (low, high) of R = (x2 / e2) / (x1 / e1), the ratio of two Poisson
    rates with counts x1, x2 and exposures e1, e2 (see the module docstring): the
    Wilson interval of x2 in x1 + x2, mapped to R.  high is math.inf when x1 is 0;
    with no count at all nothing is known: (0.0, math.inf)."""
    s = x1 + x2
    if s <= 0 or e1 <= 0 or e2 <= 0:
        return (0.0, math.inf)
    lo, hi = wilson_interval(x2, s, confidence)

    def ratio(pi: float) -> float:
        return math.inf if pi >= 1.0 else pi * e1 / ((1.0 - pi) * e2)

    return (ratio(lo), ratio(hi) if x1 > 0 else math.inf)


def rate_ratio_test(x1: int, e1: float, x2: int, e2: float) -> float:
    """Two-sided p-value that two Poisson rates are equal (R = 1): x2 of x1 + x2
    tested against e2 / (e1 + e2)."""
    if e1 <= 0 or e2 <= 0:
        return 1.0
    return binomial_test(x2, x1 + x2, e2 / (e1 + e2))


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
