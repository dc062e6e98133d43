"""analysis/stats.py: intervals cover at their stated rate, tests and corrections
agree with known values."""

import math
import os
import random
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
import ana_synth  # noqa: E402

from shadowprof.analysis import stats  # noqa: E402
from shadowprof.analysis.diff import sample_counts  # noqa: E402


def _coverage(n, draws, seed):
    """Share of draws in which each leaf's Wilson interval covered its true share."""
    rng = random.Random(seed)
    hits = [0] * len(ana_synth.SHARES)
    for _ in range(draws):
        counts, total = sample_counts(ana_synth.draw(ana_synth.SHARES, n, rng))
        assert total == n
        for i, (name, p) in enumerate(zip(ana_synth.LEAVES, ana_synth.SHARES)):
            x = counts.get((name, ana_synth.FILE, 100 + 10 * i), 0)
            lo, hi = stats.wilson_interval(x, n, 0.95)
            hits[i] += lo <= p <= hi
    return [h / draws for h in hits]


def test_wilson_intervals_cover_the_true_share_at_the_stated_rate():
    # 10 shares from 30% down to 1% (8 expected samples), 800 samples per profile,
    # 1000 profiles: the exact coverage of every one is 94-96%, the simulation's
    # standard error 0.7 points, so [92.5%, 97.5%] fails only on a real defect.
    for attempt, draws in enumerate((1000, 2500)):
        cov = _coverage(800, draws, seed=1234 + attempt)
        if all(0.925 <= c <= 0.975 for c in cov):
            break
    assert all(0.925 <= c <= 0.975 for c in cov), cov
    # And the pooled rate is close to nominal.
    assert abs(sum(cov) / len(cov) - 0.95) < 0.01, cov


def test_wilson_interval_edges():
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = stats.wilson_interval(0, 100)
    assert lo == 0.0 and 0.03 < hi < 0.04          # not the Wald interval's [0, 0]
    lo, hi = stats.wilson_interval(100, 100)
    assert hi == 1.0 and 0.96 < lo < 0.97
    lo, hi = stats.wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    # A higher confidence gives a wider interval.
    assert stats.wilson_interval(50, 100, 0.99)[0] < lo
    with pytest.raises(ValueError, match="between 0 and 1"):
        stats.wilson_interval(1, 10, 95)


def test_fisher_exact_matches_known_values():
    # R: fisher.test(matrix(c(3, 1, 1, 3), 2))$p.value == 0.4857143
    assert stats.fisher_exact(3, 4, 1, 4) == pytest.approx(0.4857143, rel=1e-6)
    # R: fisher.test(matrix(c(1, 9, 9, 1), 2))$p.value == 0.001093341
    assert stats.fisher_exact(1, 10, 9, 10) == pytest.approx(0.001093341, rel=1e-5)
    assert stats.fisher_exact(5, 10, 5, 10) == pytest.approx(1.0)


def test_two_proportion_test_switches_to_z_for_large_counts():
    # 1000 vs 1100 of 10000: z = 2.30, two-sided p = 0.0214 (pooled z-test).
    p = stats.two_proportion_test(1000, 10000, 1100, 10000)
    assert p == pytest.approx(0.0214, abs=5e-4)
    # Below the switch the exact test is used; just above it the z-test agrees with
    # the exact test to within about a tenth of the p-value.
    assert stats.two_proportion_test(200, 4000, 250, 4000) == \
        stats.fisher_exact(200, 4000, 250, 4000)
    z = stats.two_proportion_test(250, 4000, 305, 4000)
    assert z == pytest.approx(stats.fisher_exact(250, 4000, 305, 4000), rel=0.15)
    assert 0.01 < z < 0.05


def test_holm_and_bh_adjustments():
    ps = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1 -> 0.02, 0.03, 0.06, 0.06 (monotone)
    assert stats.adjust_pvalues(ps, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: 0.005*4/1, 0.01*4/2, 0.03*4/3, 0.04*4/4 -> 0.02, 0.02, 0.04, 0.04
    assert stats.adjust_pvalues(ps, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    with pytest.raises(ValueError, match="holm or bh"):
        stats.adjust_pvalues(ps, "bonferroni")


def test_effect_sizes():
    lo, hi = stats.diff_interval(100, 1000, 150, 1000)
    assert lo < 0.05 < hi and 0.015 < lo < 0.03 and 0.07 < hi < 0.085
    assert stats.cohens_h(0.5, 0.5) == 0
    assert stats.cohens_h(0.10, 0.15) == pytest.approx(
        2 * math.asin(math.sqrt(0.15)) - 2 * math.asin(math.sqrt(0.10)))
