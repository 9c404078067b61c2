"""The experiment suites: rows reach the config they claim, and the report's figures and verdicts."""

import json

import pytest

from anonymax import optim, suite_report, suite_runner, suites


def _field(config, dotted: str):
  node = config
  for part in dotted.split("."):
    node = node[part]
  return tuple(node) if isinstance(node, tuple | list) else node


@pytest.mark.parametrize("row", suites.PAPER_ROWS, ids=lambda r: r.name)
def test_every_paper_row_parses_from_its_command_flags_into_a_buildable_optimizer(row):
  argv = suite_runner.row_argv(suites.BASE_CONFIGS["paper"], row, seed=2, quick=True)
  config = suite_runner.parse_config(argv)
  for field, value in row.overrides.items():
    assert _field(config, field) == value, field
  for field, value in suites.QUICK_OVERRIDES.items():
    assert _field(config, field) == value, field
  assert config.seed == 2
  assert config.data.scenes == "v2"
  # Every switch names something the optimizer factory accepts.
  optimizer = optim.make_optimizer(config.optim)
  assert optimizer.estimator is not None


def test_a_row_changes_only_the_fields_it_names():
  base = suite_runner.parse_config(["--config=" + suites.BASE_CONFIGS["paper"]])
  spsa = next(r for r in suites.PAPER_ROWS if r.name == "spsa")
  config = suite_runner.parse_config(
    suite_runner.row_argv(suites.BASE_CONFIGS["paper"], spsa, 0, quick=False)
  )
  flat = lambda c: json.dumps(c.to_dict(), sort_keys=True, default=str)  # noqa: E731
  assert config.optim.zo_method == "spsa" and base.optim.zo_method == "ours"
  config.optim.zo_method = "ours"
  assert flat(config) == flat(base)


def test_the_shown_command_holds_every_flag_the_run_was_parsed_from():
  row = next(r for r in suites.PAPER_ROWS if r.name == "paper_as_written")
  argv = suite_runner.row_argv(
    "configs/synthetic.py:scenes=v2", row, 1, quick=False, extra=["total_steps=7"]
  )
  command = suite_runner.train_command(argv, "/tmp/out/runs/paper_as_written/seed_1")
  assert command.startswith("python launch/train.py --config=configs/synthetic.py:scenes=v2 ")
  for flag in ("--config.optim.perturb=", "--config.optim.privacy_grad_scale=1.0",
               "'--config.optim.scalarization.weights=(0.5,0.5)'", "--config.total_steps=7",
               "--config.seed=1", "--workdir=/tmp/out/runs/paper_as_written/seed_1"):  # fmt: skip
    assert flag in command
  config = suite_runner.parse_config(argv)
  assert config.total_steps == 7 and config.optim.perturb == ""


def test_overrides_render_as_ml_collections_flags():
  flags = suites.override_flags(
    {"a.b": (0.9, 0.1), "c": False, "d": 5e-4, "e": "", "f": "^(up_0|conv_out)"}
  )
  assert flags == [
    "--config.a.b=(0.9,0.1)",
    "--config.c=False",
    "--config.d=0.0005",
    "--config.e=",
    "--config.f=^(up_0|conv_out)",
  ]


@pytest.mark.parametrize(
  "extra, message",
  [(["no_such_field=1"], "no_such_field"), (["total_steps=many"], "total_steps")],
)
def test_a_bad_override_is_one_error_naming_it(extra, message):
  argv = suite_runner.row_argv(
    "configs/synthetic.py:smoke", suites.PAPER_ROWS[0], 0, quick=False, extra=extra
  )
  with pytest.raises(ValueError, match=message):
    suite_runner.parse_config(argv)


def test_bad_suite_settings_are_refused(tmp_path):
  with pytest.raises(ValueError, match="--suite='tables'"):
    suites.suite_rows("tables")
  with pytest.raises(ValueError, match="--seeds=0"):
    suite_runner.run_suite("smoke", str(tmp_path), seeds=0)


def test_resuming_a_folder_of_another_suite_is_refused(tmp_path):
  suite_runner.check_same_suite(str(tmp_path), {"suite": "smoke", "quick": False, "set": []})
  suite_runner.check_same_suite(str(tmp_path), {"suite": "smoke", "quick": False, "set": []})
  with pytest.raises(ValueError, match="quick=False, not True"):
    suite_runner.check_same_suite(str(tmp_path), {"suite": "smoke", "quick": True, "set": []})


def test_spread_is_the_mean_and_sample_standard_deviation():
  assert suite_report.spread([40.0, 44.0, None]) == pytest.approx((42.0, 2.8284271, 2))
  assert suite_report.spread([50.0]) == (50.0, 0.0, 1)
  assert suite_report.spread([None]) is None


@pytest.mark.parametrize(
  "a, b, verdict",
  [
    ((60, 50), (55, 52), "holds"),
    ((60, 50), (60, 50), "holds"),
    ((60, 55), (55, 52), "mixed"),
    ((50, 55), (55, 52), "does not hold"),
    ((None, 55), (55, 52), "not measured"),
  ],
)
def test_compare_reads_both_axes(a, b, verdict):
  def s(x):
    return None if x is None else (float(x), 0.0, 1)

  one = {"utility": s(a[0]), "privacy_cmap_max": s(a[1])}
  two = {"utility": s(b[0]), "privacy_cmap_max": s(b[1])}
  assert suite_report.compare(one, two) == verdict


def _record(row, seed, utility, cmap, **more):
  return {
    "row": row, "seed": seed, "utility": utility, "privacy_cmap_max": cmap,
    "calls_per_sample": 0.6, "chance_cmap": 46.0, "utility_metric": "vqa_accuracy",
    "train_command": f"python launch/train.py --row={row} --config.seed={seed}", **more,
  }  # fmt: skip


def test_the_report_gives_means_over_seeds_the_paper_figures_and_each_claims_verdict(tmp_path):
  rows = suites.PAPER_ROWS
  table1 = lambda ours_u, ours_p: [  # noqa: E731
    {"name": "raw", "kind": "raw", "utility": 78.0, "privacy_cmap_max": 75.0},
    {"name": "blacken", "kind": "baseline", "utility": 37.0, "privacy_cmap_max": 45.0},
    {"name": "constant_mask", "kind": "reference", "utility": 80.0, "privacy_cmap_max": 60.0},
    {"name": "ours", "kind": "ours", "utility": ours_u, "privacy_cmap_max": ours_p},
  ]
  results = {
    "ours": [
      _record("ours", 0, 70.0, 62.0, evaluation_rows=table1(70.0, 62.0), eval_command="python launch/eval.py --workdir=W0"),
      _record("ours", 1, 74.0, 64.0, evaluation_rows=table1(74.0, 64.0)),
    ],
    "tchebycheff": [_record("tchebycheff", 0, 68.0, 66.0)],
    "weighted_sum": [_record("weighted_sum", 0, 69.0, 65.0)],
    "no_step": [_record("no_step", 0, 71.0, 65.0)],
    "latest_history": [_record("latest_history", 0, 73.0, 65.0)],
  }  # fmt: skip
  path = suite_report.write(str(tmp_path), "paper", rows, results, seeds=2, quick=True, base="B")
  text = open(path).read()
  assert f"6 of {2 * len(rows)} runs finished" in text
  # Ours over two seeds: 72.0 ± 2.8 / 63.0 ± 1.4, with the paper's 48.4 / 54.6 / 24 calls.
  assert "| Ours | 72.0 ± 2.8 | 63.0 ± 1.4 | 0.6 ± 0.0 | 2 | 48.4 | 54.6 | 24 |" in text
  assert "| constant_mask | reference | 80.0 ± 0.0 | 60.0 ± 0.0 |" in text
  # The constant mask has higher utility and lower cMAP than ours' mean: ours is dominated.
  assert (
    "**ours is not dominated by any Table 1 row**: does not hold (dominated by constant_mask"
    in text
  )
  # ours ≥ tchebycheff on both axes, but tchebycheff < weighted sum on both: mixed.
  assert "**augmented Tchebycheff ≥ Tchebycheff ≥ weighted sum**: mixed" in text
  assert "**w/o step size adjustment: the switch helps (ours ≥ this row)**: holds" in text
  assert "**w/o critical gradient collection: the switch helps (ours ≥ this row)**: mixed" in text
  assert "**calls to a fixed validation target: ours < SPSA-GC < SPSA**: not measured" in text
  assert "- ours: `python launch/train.py --row=ours --config.seed=0`" in text
  assert "  then `python launch/eval.py --workdir=W0`" in text
  assert "- es: not run yet" in text
  assert (tmp_path / "tradeoff.png").stat().st_size > 1000


def test_a_diverged_run_is_reported_as_such_and_left_out_of_the_figures(tmp_path):
  rows = suites.PAPER_ROWS
  failed = {"row": "no_adam", "seed": 1, "train_command": "python launch/train.py --x",
            "failed": "l_mllm is nan at step 40: lower config.optim.gains.a"}  # fmt: skip
  results = {"no_adam": [_record("no_adam", 0, 60.0, 58.0), failed]}
  text = open(
    suite_report.write(str(tmp_path), "paper", rows, results, seeds=2, quick=False, base="B")
  ).read()
  assert "| Ours, plain step (no Adam) | 60.0 | 58.0 | 0.6 | 1 |" in text
  assert "  seed 1 **diverged**: l_mllm is nan at step 40: lower config.optim.gains.a" in text
