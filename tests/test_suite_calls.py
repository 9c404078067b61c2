"""The suite report's calls to a fixed validation target (Table 6): medians, misses, verdict."""

from anonymax import suite_report, suites
from tests.test_suites import _record


def _calls(row, seed, counted, missed=False):
  return {
    "row": row, "seed": seed, "chosen_a": 0.45, "calls_counted": counted, "missed": missed,
    "calls_to_target": None if missed else counted, "calls_per_sample_to_target": counted / 4000,
    "start_nll": 1.7, "target_nll": 1.25, "raw_nll": 0.8,
  }  # fmt: skip


def _report(tmp_path, calls):
  results = {n: [_record(n, 0, 70.0, 60.0)] for n in ("ours", "spsa", "spsa_gc")}
  path = suite_report.write(
    str(tmp_path), "paper", suites.PAPER_ROWS, results, seeds=3, quick=True, base="B", calls=calls
  )
  return open(path).read()


def test_the_medians_over_seeds_decide_the_calls_claim(tmp_path):
  calls = {
    "ours": [_calls("ours", 0, 160), _calls("ours", 1, 240), _calls("ours", 2, 2400, True)],
    "spsa_gc": [_calls("spsa_gc", s, c) for s, c in enumerate((320, 400, 480))],
    "spsa": [_calls("spsa", s, c) for s, c in enumerate((640, 480, 800))],
  }
  text = _report(tmp_path, calls)
  # Medians 240 < 400 < 640: the ordering holds, the miss named and counted at its most calls.
  assert (
    "**calls to a fixed validation target: ours < SPSA-GC < SPSA**: holds (median calls to the "
    "validation target: ours 240, spsa_gc 400, spsa 640; missed the target on a seed (counted "
    "at the most calls): ours)" in text
  )
  assert "| Ours | 0.45 | 160, 240, 2400 † | 240 | 0.060 | 24 |" in text
  assert "| SPSA | 0.45 | 640, 480, 800 | 640 | 0.160 | 136 |" in text


def test_an_ordering_broken_anywhere_does_not_hold_and_a_missing_row_is_not_measured(tmp_path):
  calls = {
    "ours": [_calls("ours", 0, 400)],
    "spsa_gc": [_calls("spsa_gc", 0, 160)],
    "spsa": [_calls("spsa", 0, 480)],
  }
  assert "ours < SPSA-GC < SPSA**: does not hold" in _report(tmp_path, calls)
  del calls["spsa"]
  assert (
    "ours < SPSA-GC < SPSA**: not measured (median calls to the validation target: ours 400, spsa_gc 160, spsa n/a)"
    in _report(tmp_path, calls)
  )


def test_the_surrogate_guided_row_must_halve_both_spsa_and_spsa_gc(tmp_path):
  calls = {
    "ours": [_calls("ours", 0, 400)],
    "spsa_gc": [_calls("spsa_gc", 0, 160)],
    "spsa": [_calls("spsa", 0, 480)],
    "guided_surrogate": [_calls("guided_surrogate", 0, 100)],
  }
  text = _report(tmp_path, calls)
  assert (
    "**guided (online surrogate) needs ≤ ½ the calls of SPSA and SPSA-GC**: does not hold "
    "(spsa ÷ guided = 4.80, spsa_gc ÷ guided = 1.60)" in text
  )
  calls["guided_surrogate"] = [_calls("guided_surrogate", 0, 80)]
  assert "SPSA and SPSA-GC**: holds (spsa ÷ guided = 6.00, spsa_gc ÷ guided = 2.00)" in _report(
    tmp_path, calls
  )
