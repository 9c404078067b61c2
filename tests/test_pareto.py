"""Pareto fronts and hypervolume: hand-computed values, and the suite report's fronts section."""

import pytest

from anonymax import pareto, suite_report, suites
from tests.test_suites import _record


def test_dominance_needs_both_axes_and_one_strict():
  assert pareto.dominates((70.0, 50.0), (60.0, 55.0))
  assert pareto.dominates((70.0, 50.0), (70.0, 55.0))  # equal utility, lower cMAP
  assert not pareto.dominates((70.0, 50.0), (70.0, 50.0))  # a point does not dominate itself
  assert not pareto.dominates((70.0, 50.0), (75.0, 52.0))  # a trade: neither dominates


def test_the_front_drops_dominated_points_and_duplicates():
  points = [(60.0, 50.0), (70.0, 58.0), (65.0, 55.0), (60.0, 50.0), (55.0, 52.0), (69.0, 59.0)]
  assert pareto.front(points) == [(70.0, 58.0), (65.0, 55.0), (60.0, 50.0)]


def test_hypervolume_is_the_union_of_the_points_boxes():
  # Boxes [0,80]x[55,60] (400) and [0,50]x[40,60] (1000) overlap in [0,50]x[55,60] (250).
  assert pareto.hypervolume([(80.0, 55.0), (50.0, 40.0)], (0.0, 60.0)) == pytest.approx(1150.0)
  # A dominated point adds nothing; so does one beyond the reference point.
  assert pareto.hypervolume(
    [(80.0, 55.0), (50.0, 40.0), (45.0, 50.0), (90.0, 61.0)], (0.0, 60.0)
  ) == pytest.approx(1150.0)
  assert pareto.hypervolume([], (0.0, 60.0)) == 0.0
  # Normalised by the box up to the ideal (100, 40): 100 x 20.
  assert pareto.normalized_hypervolume(
    [(80.0, 55.0), (50.0, 40.0)], (0.0, 60.0), (100.0, 40.0)
  ) == pytest.approx(1150.0 / 2000.0)
  with pytest.raises(ValueError, match="does not dominate"):
    pareto.normalized_hypervolume([(80.0, 55.0)], (0.0, 60.0), (100.0, 65.0))


def test_the_suite_report_gives_each_fronts_hypervolume_and_the_verdict(tmp_path):
  table1 = [
    {"name": "raw", "kind": "raw", "utility": 78.0, "privacy_cmap_max": 75.0},
    {"name": "ours", "kind": "ours", "utility": 74.0, "privacy_cmap_max": 64.0},
  ]
  results = {
    "ours": [_record("ours", 0, 74.0, 64.0, weights=[0.97, 0.03], evaluation_rows=table1)],
    "ours_w0.8": [_record("ours_w0.8", 0, 70.0, 58.0, weights=[0.8, 0.2])],
    "equal_weights": [_record("equal_weights", 0, 60.0, 50.0, weights=[0.5, 0.5])],
    "spsa": [_record("spsa", 0, 75.0, 66.0, weights=[0.97, 0.03])],
    "spsa_w0.8": [_record("spsa_w0.8", 0, 71.0, 63.0, weights=[0.8, 0.2])],
    "spsa_w0.5": [_record("spsa_w0.5", 0, 65.0, 64.0, weights=[0.5, 0.5])],
  }
  # The surrogate model's front left out: every front in the suite is complete.
  rows = [r for r in suites.PAPER_ROWS if r.front != "surrogate_model"]
  text = open(
    suite_report.write(str(tmp_path), "paper", rows, results, seeds=1, quick=True, base="B")
  ).read()
  # Reference (0, 75), ideal (78, chance 46): box 78 x 29 = 2262.
  # ours: 74(75-64) + 70(64-58) + 60(58-50) = 814 + 420 + 480 = 1714 -> 0.758.
  # spsa: 75(75-66) + 71(66-63) = 675 + 213 = 888 (65/64 is dominated by 71/63) -> 0.393.
  assert "| ours | 0.5: 60.0 / 50.0, 0.8: 70.0 / 58.0, 0.97: 74.0 / 64.0 | 1714 | 0.758 |" in text
  assert "0.5: 65.0 / 64.0 (dominated)" in text
  assert "| 888 | 0.393 |" in text
  assert "**ours has the front with the largest hypervolume**: holds (ours 1714, spsa 888)" in text
  assert (tmp_path / "fronts.png").stat().st_size > 1000
  # With the surrogate model's three rows in the suite but not run, no verdict yet; a record
  # without its λ (an older one) takes the row's override.
  del results["spsa_w0.8"][0]["weights"]
  text = open(
    suite_report.write(
      str(tmp_path), "paper", suites.PAPER_ROWS, results, seeds=1, quick=True, base="B"
    )
  ).read()
  assert (
    "**ours has the front with the largest hypervolume**: not measured (ours 1714, spsa 888; "
    "points not measured yet: surrogate_model 3)" in text
  )
  assert "0.8: 71.0 / 63.0" in text


def test_without_the_raw_row_the_fronts_have_no_hypervolume_yet(tmp_path):
  results = {"spsa": [_record("spsa", 0, 75.0, 66.0, weights=[0.97, 0.03])]}
  text = open(
    suite_report.write(
      str(tmp_path), "paper", suites.PAPER_ROWS, results, seeds=1, quick=True, base="B"
    )  # fmt: skip
  ).read()
  assert "Hypervolumes need the method's Table 1 run" in text
  assert "| spsa | 0.97: 75.0 / 66.0 | n/a | n/a |" in text
  assert not (tmp_path / "fronts.png").exists()


def test_every_front_method_has_a_row_at_each_sweep_weight():
  rows = {r.name: r for r in suites.PAPER_ROWS}
  for method in suites.FRONT_METHODS:
    members = [r for r in rows.values() if r.front == method]
    weights = {r.overrides.get("optim.scalarization.weights", "base") for r in members}
    assert weights == {"base", *((u, round(1 - u, 6)) for u in suites.FRONT_WEIGHTS)}, method
