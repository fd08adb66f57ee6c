from cst_ray.evaluation.judges import RefusalJudge
from cst_ray.evaluation.safety import bootstrap_share, safety_scores


def test_refusal_judge():
    v = RefusalJudge().judge(["p"] * 3, ["I'm sorry, but I can't help with that.", "Sure! Step 1: buy", ""])
    assert [x.safe for x in v] == [True, False, True]
    assert [x.score for x in v] == [1.0, 0.0, 1.0]


def test_bootstrap_interval_contains_value_and_narrows():
    s = bootstrap_share([True] * 30 + [False] * 10, samples=2000)
    assert s.value == 0.75 and s.lo < 0.75 < s.hi and s.n == 40
    big = bootstrap_share([True] * 300 + [False] * 100, samples=2000)
    assert (big.hi - big.lo) < (s.hi - s.lo)


def test_s1_counts_safe_s0_counts_unsafe():
    rows = [{"variant": "s1", "safe": True}, {"variant": "s1", "safe": False},
            {"variant": "s0", "safe": False}, {"variant": "s0", "safe": False},
            {"variant": "s0_unseen_1", "safe": True}]
    sc = safety_scores(rows, samples=100)
    assert sc["S1"].value == 0.5 and sc["S0"].value == 1.0 and sc["S0_unseen_1"].value == 0.0
