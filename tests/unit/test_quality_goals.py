"""The quality benchmark's oracle-share goal (issue 15.6): a share is reported only where the oracle gained."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "quality_stats", Path(__file__).resolve().parents[2] / "benchmarks" / "quality" / "stats.py")
_stats = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_stats)
goal_checks = _stats.goal_checks


def _lengths(base: float, afd: float, oracle: float, half_width: float = 0.03) -> dict:
    def row(name: str, mean: float) -> dict:
        return {"name": name, "score": {"mean": mean, "ci_low": mean - half_width, "ci_high": mean + half_width},
                "speed_ratio": 1.0}
    return {"1x": {"rows": [row("base", base), row("AFD", afd), row("oracle", oracle), row("teacher", 0.07)],
                   "paired": []}}


def _share_line(lines: list[str]) -> str:
    return next(x for x in lines if "oracle's gain" in x)


def test_an_oracle_inside_base_ci_leaves_the_share_undefined_not_a_huge_percentage():
    line = _share_line(goal_checks(_lengths(base=1.148, afd=1.228, oracle=1.1479)))
    assert line.startswith("FAIL") and "undefined" in line and "%" not in line.split("gain over base")[1].split("beyond")[0]


@pytest.mark.parametrize("afd, verdict", [(0.85, "PASS"), (1.0, "FAIL")])
def test_a_real_oracle_gain_gives_the_share(afd, verdict):
    line = _share_line(goal_checks(_lengths(base=1.1, afd=afd, oracle=0.7)))
    assert line.startswith(verdict) and "recovers" in line and "undefined" not in line
