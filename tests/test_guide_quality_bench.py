"""benchmarks/guide_quality.py and the reference black box's differentiable loss it rests on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anonymax import black_boxes, experiment
from anonymax.configs import synthetic
from anonymax.types import to_uint8
from tests import benchmark_scripts

bench = benchmark_scripts.load("guide_quality")


@pytest.fixture(scope="module")
def smoke_dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("guide")
  return str(root / "tfds"), str(root / "reference")


def test_the_differentiable_nll_is_the_oracles_own_loss(smoke_dirs):
  config = synthetic.get_config("smoke,scenes=v2")
  config.data.data_dir, config.oracle.reference.cache_dir = smoke_dirs
  oracle = black_boxes.make_oracle(config)
  split = experiment.load_split(config, "train")
  rows = np.arange(0, 24, 3)
  visuals = split.visuals[rows]
  queries = [split.queries[int(i)] for i in rows]
  nll = oracle.differentiable_nll(split.queries)
  mine = np.asarray(nll(jnp.asarray(visuals, jnp.float32) / 255.0, jnp.asarray(rows)))
  theirs = oracle.query(visuals, queries).losses
  # query floors log p at a small value; these raw images are far above it.
  np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5)
  # And it is differentiable: the gradient in the pixels is finite and not zero.
  grad = jax.grad(lambda x: nll(x, jnp.asarray(rows)).sum())(
    jnp.asarray(to_uint8(visuals), jnp.float32) / 255.0
  )
  assert np.isfinite(np.asarray(grad)).all() and float(jnp.abs(grad).max()) > 0
  with pytest.raises(ValueError, match="unknown question"):
    oracle.differentiable_nll([type(queries[0])("What is the airspeed of a swallow?", ("x",))])


@pytest.mark.slow
def test_the_benchmark_prints_both_cosines_each_step_and_their_medians(smoke_dirs, capsys):
  tfds, reference = smoke_dirs
  out = bench.main(
    ["--smoke", "--steps", "4", "--warmup", "1", "--data_dir", tfds, "--cache_dir", reference]
  )
  records = out["records"]
  assert [r["step"] for r in records] == [0, 1, 2, 3]
  for r in records:
    assert -1.0 <= r["guide_cosine"] <= 1.0 and -1.0 <= r["spsa_cosine"] <= 1.0
    assert 0.0 <= r["subspace_share"] <= 1.0 + 1e-9
    assert np.isfinite(r["surrogate_fit"]) and r["true_loss"] > 0
    assert 0.0 < r["alpha"] <= 1.0
  # The subspace fills up with one guide per step, up to k = 4.
  assert [round(r["random_share"] * out["dims"]) for r in records] == [1, 2, 3, 4]
  # One vector's share is its squared cosine.
  assert records[0]["subspace_share"] == pytest.approx(records[0]["guide_cosine"] ** 2, rel=1e-4)
  medians = out["medians"]
  assert medians["guide_abs_cosine_median"] == pytest.approx(
    np.median([abs(r["guide_cosine"]) for r in records[1:]])
  )
  # ρ̂, the estimator's own reading of the share: unmeasured at first, then a share.
  assert records[0]["agreement"] is None
  measured = [r["agreement"] for r in records[1:] if r["agreement"] is not None]
  assert all(0.0 <= a <= 1.0 for a in measured)
  assert measured and medians["agreement_median"] == pytest.approx(np.median(measured))
  last = capsys.readouterr().out.strip().splitlines()[-1]
  assert last == out["line"] and last.startswith("guide_abs_cosine_median=")
  assert last.endswith(f"dims={out['dims']}") and out["dims"] > 100


@pytest.mark.parametrize(
  "argv", [["--steps", "0"], ["--a", "0"], ["--warmup", "5", "--steps", "5"]]
)
def test_bad_arguments_stop_with_usage(argv):
  with pytest.raises(SystemExit) as e:
    bench.parse_args(argv)
  assert e.value.code == 2
