"""The significance tests give the textbook values on a published worked example.

Student (1908), "The probable error of a mean", Biometrika 6(1): 1-25, Table II: additional hours
of sleep of 10 patients under two soporifics (data of Cushny & Peebles, 1905); the same data are
R's ``datasets::sleep``, whose help page runs ``t.test(extra ~ group, data = sleep, paired = TRUE)``:
``t = -4.0621, df = 9, p-value = 0.002833``; ``wilcox.test(..., paired = TRUE)`` gives ``V = 0,
p-value = 0.009091`` (normal approximation with continuity correction, as there are ties and a zero).
"""

import math

import pytest
from scipy.special import betainc

from recbole_recgoat.benchmark import stats as st

DRUG_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
DRUG_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_paired_t_textbook_value():
    res = st.paired_t(DRUG_1, DRUG_2)
    assert res["n"] == 10 and res["df"] == 9
    assert round(res["t"], 4) == -4.0621  # the published t
    assert round(res["p"], 6) == 0.002833  # the published p
    # By hand: t = mean(d) / (sd(d) / sqrt(n)), p = I_{df/(df+t^2)}(df/2, 1/2) (two-sided).
    d = [a - b for a, b in zip(DRUG_1, DRUG_2)]
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    t = mean / (sd / math.sqrt(n))
    p = betainc((n - 1) / 2, 0.5, (n - 1) / ((n - 1) + t * t))
    assert mean == pytest.approx(-1.58)
    assert res["t"] == pytest.approx(t, rel=1e-12)
    assert res["p"] == pytest.approx(p, rel=1e-9)
    assert res["mean_diff"] == pytest.approx(-1.58)


def test_wilcoxon_textbook_value():
    res = st.paired_wilcoxon(DRUG_1, DRUG_2)
    assert res["n_nonzero"] == 9  # patient 5 has a zero difference, dropped
    assert res["W"] == 0.0
    assert round(res["p"], 6) == 0.009091


def test_degenerate_and_holm():
    assert st.paired_t([1, 2, 3], [1, 2, 3])["p"] == 1.0
    assert st.paired_wilcoxon([1, 2], [1, 2])["p"] == 1.0
    assert st.paired_t([1.0], [0.5])["p"] is None
    assert st.mean_std([2.0]) == (2.0, 0.0)
    mean, std = st.mean_std([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3) and std == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    # Holm (1979): sorted p (0.01, 0.02, 0.04) x (3, 2, 1) -> (0.03, 0.04, 0.04), monotone.
    assert st.holm([0.04, 0.01, None, 0.02]) == [pytest.approx(0.04), pytest.approx(0.03), None, pytest.approx(0.04)]
    assert st.relative_improvement(0.11, 0.10) == pytest.approx(10.0)
    assert st.relative_improvement(0.1, 0.0) is None


def test_per_user_means_match_rounded_metrics_within_half_a_unit():
    """RecBole stores the float32 mean 0.07375 as 0.0738; float64 rounding gives 0.0737. The
    per-user file of such a cell must be kept (it was dropped: significance tests lost cells)."""
    from recbole_recgoat.trainer import matches_rounded

    assert matches_rounded(0.07375, 0.0738, 4) and matches_rounded(0.07375, 0.0737, 4)
    assert matches_rounded(0.123449, 0.1234, 4)
    assert not matches_rounded(0.07390, 0.0738, 4) and not matches_rounded(0.0736, 0.0738, 4)


def test_feature_set_label_names_what_the_model_read():
    from recbole_recgoat.benchmark.leaderboard.compute import feature_label

    labels = {"text": "text (MiniLM)", "user": "offline summary"}
    rec = {"features": {"items": ["text", "audio"], "users": True}, "feature_norm": {"text": "none", "audio": "l2"}}
    assert feature_label(rec, labels) == "text (MiniLM) + audio [l2]; users: offline summary"
    assert feature_label({"features": {"items": [], "users": False}}, labels) == "IDs only"
    assert feature_label({}, labels) == "n/a"  # records made before the field existed
