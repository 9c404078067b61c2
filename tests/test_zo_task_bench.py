"""benchmarks/zo_task.py: calls to a validation target with the real trainer, tuned per method."""

import re

import jax
import numpy as np
import pytest

from anonymax import calls_to_target
from tests import benchmark_scripts

bench = benchmark_scripts.load("zo_task")


@pytest.mark.slow
def test_each_method_is_tuned_on_seed_0_and_reported_on_the_others(tmp_path, capsys):
  steps, eval_every, batch = 4, 2, 8
  out = bench.main(
    ["--smoke", "--steps", str(steps), "--eval_every", str(eval_every), "--seeds", "1",
     "--tune_seeds", "1", "--extensions", "0",
     "--grid", "0.01,0.04", "--methods", "spsa,ours", "--progress", "0.002",
     "--validation", "16", "--batch_size", str(batch),
     "--data_dir", str(tmp_path / "tfds"), "--cache_dir", str(tmp_path / "reference"),
     "--plot", str(tmp_path / "calls.png")]
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
  printed = capsys.readouterr().out
  last = printed.strip().splitlines()[-1]
  assert (tmp_path / "calls.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  # The same summary again from the printed lines, without training.
  log = tmp_path / "log"
  log.write_text(printed)
  again = bench.main(["--from_log", str(log)])
  assert again["median_calls"] == out["median_calls"] and again["chosen_a"] == out["chosen_a"]
  assert again["line"] == out["line"]
  assert re.fullmatch(r"spsa_over_ours=\d+\.\d\d( \(missed the target.*\))?", last)
  assert "guided" not in last  # not asked for: no guided ratios
  assert last.startswith(f"spsa_over_ours={ratio:.2f}")


@pytest.mark.parametrize(
  "argv",
  [
    ["--grid", "-0.01"],
    ["--progress", "0"],
    ["--steps", "0"],
    ["--progress", "1.5"],
    ["--tune_seeds", "0"],
    ["--extensions", "-1"],
    ["--replay", "-1"],
    ["--fit_steps", "0"],
  ],
)
def test_bad_arguments_stop_with_usage(argv):
  with pytest.raises(SystemExit) as e:
    bench.parse_args(argv)
  assert e.value.code == 2


def test_tuning_extends_the_grid_beyond_the_edge_where_the_best_lies():
  # Calls fall with a up to a = 0.9, then rise: from the grid (0.1, 0.3) it extends to 0.9, then
  # 2.7 (worse): 0.9 is interior and chosen.
  calls = {0.1: 500, 0.3: 300, 0.9: 100, 2.7: 400}
  tried = []

  def try_a(a):
    tried.append(a)
    key = min(calls, key=lambda c: abs(c - a))
    return [{"a": a, "seed": s, "calls_counted": calls[key]} for s in (0, 1)]

  best, runs = calls_to_target.tune(try_a, [0.1, 0.3], extensions=3)
  assert best == pytest.approx(0.9) and len(tried) == 4 and tried[-1] == pytest.approx(2.7)
  assert len(runs) == 8
  # At the low edge it extends downwards; with no extensions the grid's best is kept.
  best, _ = calls_to_target.tune(
    lambda a: [{"calls_counted": 10 if a < 0.05 else 100}], [0.1, 0.3], 1
  )
  assert best == pytest.approx(0.1 / 3)
  best, _ = calls_to_target.tune(
    lambda a: [{"calls_counted": 10 if a < 0.05 else 100}], [0.1, 0.3], 0
  )
  assert best == 0.1


def test_from_log_without_reported_runs_is_a_clear_error(tmp_path):
  log = tmp_path / "log"
  log.write_text('{"phase": "tune", "method": "spsa", "a": 0.1, "calls_counted": 3}\n')
  with pytest.raises(SystemExit, match="has no reported runs"):
    bench.main(["--from_log", str(log)])


def test_the_two_guided_rows_differ_only_in_their_guide_source():
  args = bench.parse_args(["--smoke"])
  guided, history = bench.base_config(args, "guided"), bench.base_config(args, "guided_history")
  assert guided.optim.zo_method == history.optim.zo_method == "guided"
  assert (guided.optim.guided.source, history.optim.guided.source) == ("guide", "history")
  history.optim.guided.source = "guide"
  assert history.to_dict() == guided.to_dict()
  assert bench.base_config(args, "spsa_gc").optim.zo_method == "spsa_gc"
  assert guided.optim.precondition.kind == "adam"
  plain = bench.base_config(bench.parse_args(["--smoke", "--plain"]), "spsa")
  assert plain.optim.precondition.kind == "none"
  replaying = bench.base_config(
    bench.parse_args(["--smoke", "--replay=8", "--fit_steps=4"]), "guided"
  )
  assert (replaying.online_surrogate.replay, replaying.online_surrogate.fit_steps) == (8, 4)
  assert (guided.online_surrogate.replay, guided.online_surrogate.fit_steps) == (0, 1)


def test_the_noisy_start_moves_only_the_perturbed_parameters_the_same_way_per_seed(tmp_path):
  from anonymax import experiment
  from anonymax.optim.flat_subset import covered_leaves

  args = bench.parse_args(
    ["--smoke", "--start_noise", "3", "--mask_init_logit", "-3", "--data_dir", str(tmp_path)]
  )
  config = calls_to_target.task_config(
    bench.base_config(args, "spsa"), bench.task(args), a=0.1, seed=4
  )
  params = experiment.build(config).init_state().params
  noisy = calls_to_target.noisy_start(config, params, 3.0)
  again = calls_to_target.noisy_start(config, params, 3.0)
  flags = covered_leaves(config.optim.perturb or None, params, "test")
  moved = []
  for before, after, same, perturbed in zip(
    jax.tree.leaves(params), jax.tree.leaves(noisy), jax.tree.leaves(again), flags
  ):
    np.testing.assert_array_equal(np.asarray(after), np.asarray(same))
    if perturbed:
      moved.append(np.ravel(np.asarray(after) - np.asarray(before)))
    else:
      np.testing.assert_array_equal(np.asarray(after), np.asarray(before))
  assert moved and len(moved) < len(flags)
  assert np.std(np.concatenate(moved)) == pytest.approx(3.0, rel=0.1)
  other_seed = config.copy_and_resolve_references()
  other_seed.seed = 5
  elsewhere = calls_to_target.noisy_start(other_seed, params, 3.0)
  assert any(
    not np.array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree.leaves(noisy), jax.tree.leaves(elsewhere))
  )
  with pytest.raises(ValueError, match="start_noise must be ≥ 0"):
    calls_to_target.Task(start_noise=-1.0)
  with pytest.raises(SystemExit):
    bench.parse_args(["--start_noise", "-1"])


def test_the_validation_loss_averages_only_what_the_black_box_scored(tmp_path):
  from anonymax.configs import synthetic
  from anonymax.oracles import STATUS_FAILED, STATUS_OK, Oracle, OracleOutput

  class HalfFailing(Oracle):
    """Scores 1.0 on even samples; odd ones fail (loss 0, as the contract has it)."""

    def __init__(self):
      super().__init__(name="half", loss="nll")

    def query(self, visuals, queries):
      n = len(queries)
      status = np.where(np.arange(n) % 2 == 0, STATUS_OK, STATUS_FAILED).astype(np.int32)
      losses = np.where(status == STATUS_OK, 1.0, 0.0).astype(np.float32)
      return OracleOutput(losses, status, [""] * n)

  config = synthetic.get_config("smoke,scenes=v2")
  config.data.data_dir = str(tmp_path)
  validation = calls_to_target.Validation(config, HalfFailing(), 8)
  assert validation.loss(validation.visuals) == 1.0  # not 0.5


def test_the_privacy_only_start_is_a_privacy_only_run_shared_by_every_method(tmp_path):
  from anonymax import experiment
  from tests.test_train import SpyOracle

  argv = ["--smoke", "--start", "privacy_only", "--start_steps", "3", "--weights", "0.7,0.3",
          "--data_dir", str(tmp_path)]  # fmt: skip
  args = bench.parse_args(argv)
  task = bench.task(args)
  assert (task.start, task.start_steps) == ("privacy_only", 3)
  spy = SpyOracle()
  starts = {}
  for method in ("spsa", "guided"):
    config = calls_to_target.task_config(bench.base_config(args, method), task, a=0.3, seed=2)
    # The run keeps its own trade-off and mask (no utility-first override), and the tuned a.
    assert tuple(config.optim.scalarization.weights) == (0.7, 0.3)
    assert config.anonymizer.mask_init_logit == bench.base_config(args, method).anonymizer.get(
      "mask_init_logit"
    )
    assert config.optim.gains.a == 0.3
    fresh = experiment.build(config, oracle=spy).init_state()
    starts[method] = (fresh, calls_to_target.privacy_only_start(config, task, fresh, spy))
  assert spy.received == []  # a privacy-only start calls no black box

  # By hand: three privacy-only steps at the task's step size from the same seed.
  c = calls_to_target.task_config(bench.base_config(args, "spsa"), task, a=task.start_a, seed=2)
  c.objective = "privacy_only"
  exp = experiment.build(c, oracle=spy)
  want, step = exp.init_state(), exp.train_step()
  for k in range(3):
    want, _ = step(want, *exp.batch(k))
  for fresh, got in starts.values():
    for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(want.params)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    for a, b in zip(jax.tree.leaves(got.reviewer_vars), jax.tree.leaves(want.reviewer_vars)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    moved = [np.abs(np.asarray(a) - np.asarray(b)).max()
             for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(fresh.params))]  # fmt: skip
    assert max(moved) > 0
    # The method's own optimizer and estimator states stay those of a fresh run.
    for a, b in zip(jax.tree.leaves(got.zo_state), jax.tree.leaves(fresh.zo_state)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
  "kwargs, match",
  [({"start": "trained"}, "start must be one of"), ({"start_steps": 0}, "start_steps must be")],
)
def test_bad_starts_are_refused(kwargs, match):
  with pytest.raises(ValueError, match=match):
    calls_to_target.Task(**kwargs)


@pytest.mark.parametrize(
  "argv", [["--weights", "0.9"], ["--weights", "a,b"], ["--start_steps", "0"]]
)
def test_bad_trade_off_flags_stop_with_usage(argv):
  with pytest.raises(SystemExit):
    bench.parse_args(argv)
