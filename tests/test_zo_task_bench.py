"""benchmarks/zo_task.py: calls to a validation target with the real trainer, tuned per method."""

import re

import pytest

from tests import benchmark_scripts

bench = benchmark_scripts.load("zo_task")


@pytest.mark.slow
def test_each_method_is_tuned_on_seed_0_and_reported_on_the_others(tmp_path, capsys):
  steps, eval_every, batch = 4, 2, 8
  out = bench.main(
    ["--smoke", "--steps", str(steps), "--eval_every", str(eval_every), "--seeds", "1",
     "--grid", "0.01,0.04", "--methods", "spsa,ours", "--progress", "0.002",
     "--validation", "16", "--batch_size", str(batch),
     "--data_dir", str(tmp_path / "tfds"), "--cache_dir", str(tmp_path / "reference")]
  )  # fmt: skip
  per_check = 2 * batch * eval_every  # 2q calls per sample, q = 1
  most = 2 * batch * steps
  for method in ("spsa", "ours"):
    tuning = out["tuning"][method]
    assert [r["a"] for r in tuning] == [0.01, 0.04] and all(r["seed"] == 0 for r in tuning)
    # The chosen step size is the tuning run with the fewest calls (ties: the smaller a).
    best = min(tuning, key=lambda r: (r["calls_counted"], r["a"]))
    assert out["chosen_a"][method] == best["a"]
    (report,) = out["runs"][method]
    assert report["seed"] == 1 and report["a"] == best["a"]
    for r in [*tuning, report]:
      assert r["target_nll"] == pytest.approx(
        r["start_nll"] - 0.002 * (r["start_nll"] - r["raw_nll"])
      )
      if r["calls_to_target"] is None:  # missed: counted at the most calls
        assert r["calls_counted"] == most
        assert r["curve"][-1][2] > r["target_nll"]
      else:  # reached at a check, the first one below the target
        assert r["calls_counted"] % per_check == 0 and r["calls_counted"] <= most
        losses = [loss for _, calls, loss in r["curve"] if calls <= r["calls_to_target"]]
        assert losses[-1] <= r["target_nll"] and all(x > r["target_nll"] for x in losses[:-1])
    assert out["median_calls"][method] == report["calls_counted"]
  ratio = out["median_calls"]["spsa"] / out["median_calls"]["ours"]
  last = capsys.readouterr().out.strip().splitlines()[-1]
  assert re.fullmatch(r"spsa_over_ours=\d+\.\d\d( \(missed the target.*\))?", last)
  assert last.startswith(f"spsa_over_ours={ratio:.2f}")


@pytest.mark.parametrize(
  "argv", [["--grid", "-0.01"], ["--progress", "0"], ["--steps", "0"], ["--progress", "1.5"]]
)
def test_bad_arguments_stop_with_usage(argv):
  with pytest.raises(SystemExit) as e:
    bench.parse_args(argv)
  assert e.value.code == 2
