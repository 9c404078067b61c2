"""Tests for the PyTorch U-Net replica in benchmarks/anonymizer_throughput.py and a smoke run."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from anonymax.models.unet import UNet  # noqa: E402

_PATH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "anonymizer_throughput.py"
_spec = importlib.util.spec_from_file_location("anonymizer_throughput", _PATH)
bench = importlib.util.module_from_spec(_spec)
sys.modules["anonymizer_throughput"] = bench
_spec.loader.exec_module(bench)


@pytest.mark.parametrize("head", ["residual", "masked_fill", "mask"])
@pytest.mark.parametrize(
  "features, groups",
  # (6, 12) with 4 groups clips to 3 groups at width 6 (4 does not divide 6) and 4 at 12.
  [((6, 12), 4), ((4, 8, 8), 3)],
)
def test_replica_matches_flax(head, features, groups):
  model = UNet(features=features, groups=groups, head=head, mask_init_logit=0.0)
  size = 2 ** (len(features) - 1) * 4
  x = jax.random.uniform(jax.random.key(0), (2, size, size, 3))
  params = model.init(jax.random.key(1), x)["params"]
  # Noise on every leaf (GroupNorm scales, biases, the fill colour, the small output conv) so
  # each layer moves the output: at init the heads are ~ the identity and would hide mistakes.
  rng = np.random.default_rng(2)
  params = jax.tree.map(lambda p: p + 0.3 * rng.standard_normal(p.shape, np.float32), params)
  y = np.asarray(model.apply({"params": params}, x))
  assert np.mean(np.abs(y - np.asarray(x))) > 0.05  # far from the identity

  replica = bench.torch_unet_from_flax(model, {"params": params})
  with torch.inference_mode():
    y_torch = replica(torch.from_numpy(np.array(x))).numpy()
  np.testing.assert_allclose(y_torch, y, atol=1e-5, rtol=0)


def test_replica_keeps_clip_shapes_and_rejects_other_dtypes():
  model = UNet(features=(4, 8), groups=2, head="masked_fill")
  clip = jax.random.uniform(jax.random.key(0), (2, 3, 8, 8, 3))
  params = model.init(jax.random.key(1), clip)["params"]
  replica = bench.torch_unet_from_flax(model, params)
  with torch.inference_mode():
    y_torch = replica(torch.from_numpy(np.array(clip))).numpy()
  np.testing.assert_allclose(y_torch, model.apply({"params": params}, clip), atol=1e-5, rtol=0)
  with pytest.raises(ValueError, match="float32"):
    bench.torch_unet_from_flax(model.clone(dtype=jax.numpy.bfloat16), params)


def test_main_prints_speedup_last(capsys):
  argv = ["--features", "4,8", "--groups", "2", "--image-size", "16", "--batch", "2"]
  bench.main(argv + ["--iters", "1", "--warmup", "0"])
  lines = capsys.readouterr().out.strip().splitlines()
  assert re.fullmatch(r"train_speedup=\d+(\.\d+)?", lines[-2])
  match = re.fullmatch(r"speedup=(\d+(?:\.\d+)?)", lines[-1])
  assert match and float(match.group(1)) > 0
