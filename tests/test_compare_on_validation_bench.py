"""benchmarks/compare_on_validation.py on a smoke scenes-v2 run."""

import json

import pytest

from anonymax import anonymizer, black_boxes, evaluate, experiment, train
from anonymax.configs import synthetic
from tests import benchmark_scripts

bench = benchmark_scripts.load("compare_on_validation")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  root = tmp_path_factory.mktemp("compare")
  config = synthetic.get_config("smoke,scenes=v2")
  config.data.data_dir = str(root / "tfds")
  config.oracle.reference.cache_dir = str(root / "reference")
  train.train_and_evaluate(config, str(root / "w"))
  return config, str(root / "w")


def test_runs_are_scored_on_validation_beside_raw(run, capsys):
  config, workdir = run
  args = [workdir, "--judge_steps_scale=0.01", "--max_utility_drop=100"]
  raw, ours = bench.main(args)
  lines = capsys.readouterr().out.splitlines()
  printed = [json.loads(line) for line in lines if line.startswith("{")]
  assert [row["run"] for row in printed] == ["raw", workdir] and printed == [raw, ours]
  assert lines[-1] == f"best={workdir}"
  # The accuracy is the black box's on the anonymized validation split, as launch/eval.py scores.
  split = experiment.load_split(config, "validation")
  want = evaluate.utility(
    black_boxes.make_oracle(config), anonymizer.load_anonymizer(workdir)(split.visuals), split
  )
  assert ours["utility"] == round(want["accuracy"], 2)
  assert set(ours["per_attribute_ap"]) == set(split.attribute_names)
  assert raw["chance_cmap"] == ours["chance_cmap"] and 0 <= ours["privacy_cmap_max"] <= 100
  # No run within -100 points of raw: none is eligible.
  bench.main([workdir, "--judge_steps_scale=0.01", "--max_utility_drop=-100"])
  assert capsys.readouterr().out.splitlines()[-1] == "best=none"
