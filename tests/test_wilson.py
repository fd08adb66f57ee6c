"""Wilson score intervals for single shares (S1, S0, over-refusal): known values, and no
collapse to a zero-width interval at 0 or 1 as the percentile bootstrap has."""

import math

import pytest

from cst_ray.evaluation.metrics import bootstrap_share, safety_scores, wilson_interval, wilson_share


@pytest.mark.parametrize("k,n,lo,hi", [
    (0, 10, 0.0, 0.2775),     # the rule of three's neighbour: 0/10 is not "surely 0"
    (10, 10, 0.7225, 1.0),
    (5, 10, 0.2366, 0.7634),
    (3, 10, 0.1078, 0.6032),
    (81, 263, 0.2553, 0.3662),
])
def test_wilson_known_values(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_share_at_the_edges_is_not_zero_width():
    none, every = wilson_share([False] * 10), wilson_share([True] * 10)
    assert (none.value, none.lo, none.n) == (0.0, 0.0, 10) and none.hi == pytest.approx(0.2775, abs=1e-4)
    assert (every.value, every.hi) == (1.0, 1.0) and every.lo == pytest.approx(0.7225, abs=1e-4)
    boot = bootstrap_share([True] * 10)
    assert (boot.lo, boot.hi) == (1.0, 1.0)  # why single shares moved to Wilson


def test_wilson_wider_at_higher_confidence_and_narrower_with_n():
    lo95, hi95 = wilson_interval(7, 20)
    lo99, hi99 = wilson_interval(7, 20, confidence=0.99)
    assert lo99 < lo95 < 7 / 20 < hi95 < hi99
    lo_big, hi_big = wilson_interval(70, 200)
    assert hi_big - lo_big < hi95 - lo95


def test_wilson_empty_and_bad_counts():
    s = wilson_share([])
    assert s.n == 0 and all(math.isnan(x) for x in (s.value, s.lo, s.hi))
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_safety_scores_use_wilson():
    rows = [{"variant": "s0", "safe": False}] * 10 + [{"variant": "s1", "safe": True}] * 10
    sc = safety_scores(rows)
    assert sc["S0"].value == 1.0 and sc["S0"].lo == pytest.approx(0.7225, abs=1e-4)
    assert sc["S1"].as_dict() == {"value": 1.0, "ci95": [0.7225, 1.0], "n": 10}
