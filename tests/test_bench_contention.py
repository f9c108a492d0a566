"""The contention benchmark's summary (benchmarks/bench_contention.py): the idle price is the median
of the per-repeat ratios (each pair measured back to back), and a missed target is named."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import bench_contention as bc  # noqa: E402
import pytest  # noqa: E402

pytestmark = pytest.mark.process  # process behaviour, not numpy/scipy versions: CI's second lane leaves it out


def _rows(times):
    """``times``: {(arm, beside): [epoch_s per repeat]} -> the benchmark's row dicts for model M."""
    return [{"model": "M", "arm": arm, "beside": beside, "repeat": i, "epoch_s": t, "policy": ""}
            for (arm, beside), ts in times.items() for i, t in enumerate(ts)]


def test_idle_price_is_the_median_of_paired_ratios_and_targets_are_checked():
    rows = _rows({("torch default", False): [1.0, 2.0, 1.0], ("policy", False): [1.02, 2.2, 1.01],
                  ("torch default", True): [3.0, 3.0, 3.0], ("policy", True): [1.2, 1.3, 1.25]})
    text = bc.summary(rows, ["M"], ["torch default", "policy"])
    line = next(l for l in text.splitlines() if l.startswith("M") and "policy " in l)
    cols = line.split()
    # medians: alone 1.02, beside 1.25 -> 1.23; per-repeat prices 1.02, 1.10, 1.01 -> median 1.02
    # (the ratio of the medians, 1.02 / 1.0, happens to agree; the third repeat shows the pairing)
    assert cols[2:6] == ["1.020", "1.250", "1.23", "1.020"], line
    assert "1.020 1.100 1.010" in line
    assert text.splitlines()[-1].endswith("met")


def test_a_missed_target_names_the_model_and_alone_only_skips_the_slowdown():
    rows = _rows({("torch default", False): [1.0, 1.0], ("policy", False): [1.2, 1.1]})
    text = bc.summary(rows, ["M"], ["torch default", "policy"], alone_only=True)
    assert "MISSED by M (idle price 1.150)" in text
    assert "beside/alone <= 1.5" not in text.splitlines()[-1]
    rows = _rows({("torch default", False): [1.0], ("policy", False): [1.0],
                  ("torch default", True): [3.0], ("policy", True): [1.6]})
    assert "MISSED by M (slowdown 1.60" in bc.summary(rows, ["M"], ["torch default", "policy"])


def test_an_arm_sets_environment_variables_and_config_keys(monkeypatch):
    """``--arm NAME:K=V,config.KEY=V``: environment variables for the worker, ``config.`` keys as
    its config overrides; the script's own OpenMP variables reach no arm."""
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    got = bc.arms(["spin:GOMP_SPINCOUNT=100,config.fused_optimizer=True"])
    assert [name for name, _, _ in got] == ["torch default", "policy", "spin"]
    default, policy, spin = (dict(env=e, config=c) for _, e, c in got)
    assert default["env"]["RECGOAT_THREAD_POLICY"] == "off" and "RECGOAT_THREAD_POLICY" not in policy["env"]
    assert all("OMP_NUM_THREADS" not in a["env"] for a in (default, policy, spin))
    assert spin["env"]["GOMP_SPINCOUNT"] == "100" and "config.fused_optimizer" not in spin["env"]
    assert spin["config"] == ["fused_optimizer=True"] and default["config"] == policy["config"] == []


def test_the_wake_probe_reports_one_regions_cost():
    """``--wake``'s worker prints the cost of one 1 MiB elementwise operator and its thread count."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    got = bc.measure_wake(env)
    assert got is not None and got[1] == 1 and 0.0 < got[0] < 10_000.0
