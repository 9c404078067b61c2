r"""The same training steps on two backends (e.g. the CPU and a GPU), compared number by number.

A zeroth-order step is sensitive to numerics in a way a gradient step is not: ĝ = (L⁺ − L⁻)/(2c)·Δ
divides a difference of two nearly equal losses by a small c, and the oracle only sees the
anonymized pixels after quantisation to uint8, where one rounding can flip. This script starts both
backends from one state, feeds them the same batches and the same deterministic black box, and
reports how far apart they drift:

  python benchmarks/backend_agreement.py                          # cpu vs the default backend
  python benchmarks/backend_agreement.py --precision highest      # no TF32 on the accelerator
  python benchmarks/backend_agreement.py --backends cpu,cpu       # determinism: must print 0

Columns per step: L_MLLM and L_Privacy on each backend, the relative difference of ‖ĝ‖ and the
share of the uint8 pixels sent to the oracle that differ. Last line: `max_rel_param_diff=<x>`, the
largest max|θ_a − θ_b| / max|θ_a| over parameter leaves after the last step.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import jax
import numpy as np

from anonymax import experiment
from anonymax.configs import synthetic
from anonymax.oracles import Oracle, OracleOutput


class MeanPixelOracle(Oracle):
  """A deterministic black box: each sample's loss is its mean uint8 pixel value / 255.

  It keeps the uint8 visuals of every call, so two runs can compare what the oracle was sent.
  """

  def __init__(self):
    super().__init__(name="mean_pixel", loss="nll")
    self.received: list[np.ndarray] = []

  def query(self, visuals, queries):
    visuals = np.asarray(visuals)
    self.received.append(visuals.copy())
    n = len(queries)
    self.stats.calls += n
    losses = visuals.reshape(n, -1).astype(np.float64).mean(axis=1) / 255.0
    return OracleOutput(losses.astype(np.float32), np.zeros(n, np.int32), ["x"] * n)


def run_on(device, config, steps: int):
  """`steps` training steps from the config's initial state, every array on `device`."""
  with jax.default_device(device):
    oracle = MeanPixelOracle()
    exp = experiment.build(config, oracle=oracle)
    state = jax.device_put(exp.init_state(), device)
    step_fn = exp.train_step()
    history = []
    for k in range(steps):
      state, metrics = step_fn(state, *jax.device_put(exp.batch(k), device))
      history.append({k: float(v) for k, v in jax.device_get(metrics).items()})
    params = jax.device_get(state.params)
  return history, params, oracle.received


def relative(a: float, b: float) -> float:
  return abs(a - b) / max(abs(a), 1e-30)


def main(argv=None):
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--steps", type=int, default=3, help="training steps on each backend")
  parser.add_argument("--variant", default="smoke", help="configs/synthetic.py variant string")
  parser.add_argument(
    "--backends", default="cpu,default", help="two of cpu, gpu, default (comma-separated)"
  )
  parser.add_argument(
    "--precision",
    default=None,
    choices=("default", "high", "highest"),
    help="jax_default_matmul_precision for convolutions and matmuls (default: JAX's own)",
  )
  parser.add_argument("--data-dir", default=None, help="TFDS data dir (default: a temporary one)")
  args = parser.parse_args(argv)
  if args.precision:
    jax.config.update("jax_default_matmul_precision", args.precision)

  names = [b.strip() for b in args.backends.split(",")]
  if len(names) != 2:
    parser.error(f"--backends needs two names, got {args.backends!r}")
  devices = [jax.devices()[0] if b == "default" else jax.devices(b)[0] for b in names]

  config = synthetic.get_config(args.variant)
  config.data.data_dir = args.data_dir or os.path.join(tempfile.gettempdir(), "anonymax_bench_tfds")

  (hist_a, params_a, sent_a), (hist_b, params_b, sent_b) = (
    run_on(d, config, args.steps) for d in devices
  )
  label_a, label_b = (f"{d.platform}:{d.id}" for d in devices)
  print(f"backends: a={label_a} ({devices[0].device_kind}), b={label_b} ({devices[1].device_kind})")
  print(f"jax {jax.__version__}, matmul precision: {args.precision or 'JAX default'}")
  print(
    f"{'step':>4} {'l_mllm_a':>10} {'l_mllm_b':>10} {'l_priv_a':>10} {'l_priv_b':>10} "
    f"{'rel_g_hat':>10} {'pixels_differ':>14}"
  )
  for k, (ma, mb, xa, xb) in enumerate(zip(hist_a, hist_b, sent_a, sent_b)):
    differ = float(np.mean(xa != xb))
    print(
      f"{k:>4} {ma['l_mllm']:>10.6f} {mb['l_mllm']:>10.6f} {ma['l_privacy']:>10.6f} "
      f"{mb['l_privacy']:>10.6f} {relative(ma['g_hat_norm'], mb['g_hat_norm']):>10.2e} "
      f"{differ:>14.2e}"
    )
  diffs = jax.tree.leaves(
    jax.tree.map(
      lambda a, b: float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), 1e-30)),
      params_a,
      params_b,
    )
  )
  print(f"max_rel_param_diff={max(diffs):.3e}")
  return max(diffs)


if __name__ == "__main__":
  main()
