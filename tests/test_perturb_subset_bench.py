"""benchmarks/perturb_subset.py: the perturbed counts, and one candidate trained and scored."""

import numpy as np
import pytest

from tests import benchmark_scripts

bench = benchmark_scripts.load("perturb_subset")


def test_perturbed_count_selects_as_the_optimizer_does():
  params = {
    "mask_out": {"kernel": np.zeros((1, 1, 64, 1)), "bias": np.zeros(1)},
    "fill": np.zeros(3),
    "up_0": {"norm_1": {"scale": np.zeros(64), "bias": np.zeros(64)}, "conv_1": {"kernel": np.zeros((3, 3, 64, 64))}},
    "down_3": {"norm_0": {"scale": np.zeros(512), "bias": np.zeros(512)}},
  }  # fmt: skip
  count = {name: bench.perturbed_count(params, rx) for name, rx in bench.CANDIDATES.items()}
  assert count["head"] == 64 + 1 + 3
  assert count["head+last_norm"] == 68 + 128
  assert count["head+norms"] == 68 + 128 + 1024  # every norm, the encoder's too
  assert count["head+up_0"] == 68 + 128 + 9 * 64 * 64
  assert count["all"] == 68 + 128 + 9 * 64 * 64 + 1024


TINY = ["--smoke", "--features", "8,16"]  # the real-data U-Net's layout at tiny widths


def test_a_candidate_is_trained_and_scored_on_validation(tmp_path, capsys):
  (row,) = bench.main(
    [*TINY, "--measure", "train", "--steps", "2", "--candidates", "head",
     "--workdir", str(tmp_path / "runs"),
     "--data_dir", str(tmp_path / "tfds")]
  )  # fmt: skip
  assert row["perturbed"] == 8 + 1 + 3  # the mask head over the 8-channel last decoder block
  config = bench.sweep_config("", steps=2, seed=0, data_dir=None, smoke=True)
  assert tuple(config.anonymizer.features) == bench.REAL_DATA_FEATURES  # the default widths
  assert config.optim.perturb == "" and config.optim.privacy_grad_scale == 10.0  # real-data's
  assert row["oracle_calls"] == 2 * 2 * config.optim.num_samples * config.batch_size
  assert 0.0 <= row["vqa"] <= 100.0 and row["per_question_type"]
  assert capsys.readouterr().out.splitlines()[-1] == f"best=head vqa={row['vqa']:.1f}"


def test_gradient_merits_split_the_utility_gradient_over_nested_subsets(tmp_path, capsys):
  rows = {
    r["candidate"]: r for r in bench.main([*TINY, "--batches", "1", "--data_dir", str(tmp_path)])
  }
  assert set(rows) == set(bench.CANDIDATES)
  assert rows["all"]["energy_share"] == 1.0 and rows["head"]["merit_vs_head"] == 1.0
  nested = ["head", "head+last_norm", "head+up_0", "head+up_0+down_0", "all"]
  shares = [rows[n]["energy_share"] for n in nested]
  sizes = [rows[n]["perturbed"] for n in nested]
  assert shares == sorted(shares) and sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
  for r in rows.values():  # merit = share · E‖g‖² / |S|, so merit·|S| / share is one constant
    ratio = r["merit"] * r["perturbed"] / r["energy_share"]
    assert ratio == pytest.approx(rows["all"]["merit"] * rows["all"]["perturbed"], rel=1e-6)
  best = max(rows.values(), key=lambda r: r["merit"])["candidate"]
  assert capsys.readouterr().out.splitlines()[-1].startswith(f"best={best} ")
