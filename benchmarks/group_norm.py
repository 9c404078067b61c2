r"""GroupNorm: anonymax's (per-channel, then per-group statistics) against flax.linen.GroupNorm.

Both compute the same function with the same parameters (tests/models/test_norm.py). This times
them side by side on the anonymizer's GroupNorm shapes (by default the smoke U-Net's widest one,
2qB = 16 images of 32×32×8 with 4 groups), forward and forward+backward, jitted:

  python benchmarks/group_norm.py
  python benchmarks/group_norm.py --shape 32,64,64,32 --groups 8

Last line: `speedup=<x>`, flax's forward time over ours (> 1: ours is faster).
"""

from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
import numpy as np

from anonymax.models.norm import GroupNorm


def seconds_per_call(fn, *args, repeats: int) -> float:
  """Median wall time of a jitted call, after a compile-and-warm-up call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def main():
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--shape", default="16,32,32,8", help="input shape, channels last")
  parser.add_argument("--groups", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=200)
  args = parser.parse_args()

  shape = tuple(int(s) for s in args.shape.split(","))
  x = jax.random.normal(jax.random.key(0), shape)
  weights = jax.random.normal(jax.random.key(1), shape)
  variables = nn.GroupNorm(num_groups=args.groups).init(jax.random.key(2), x)
  print(f"{'norm':>8} {'forward_us':>11} {'fwd+bwd_us':>11}")
  timings = {}
  for name, module in (
    ("flax", nn.GroupNorm(num_groups=args.groups)),
    ("anonymax", GroupNorm(num_groups=args.groups)),
  ):
    forward = jax.jit(module.apply)
    backward = jax.jit(jax.grad(lambda v, x, m=module: (m.apply(v, x) * weights).sum(), (0, 1)))
    timings[name] = (
      seconds_per_call(forward, variables, x, repeats=args.repeats),
      seconds_per_call(backward, variables, x, repeats=args.repeats),
    )
    print(f"{name:>8} {1e6 * timings[name][0]:>11.1f} {1e6 * timings[name][1]:>11.1f}")
  print(f"backward_speedup={timings['flax'][1] / timings['anonymax'][1]:.2f}")
  print(f"speedup={timings['flax'][0] / timings['anonymax'][0]:.2f}")


if __name__ == "__main__":
  main()
