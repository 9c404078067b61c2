r"""Framework overhead beside a fixed-latency black box.

The oracle only sleeps `--latency-ms` per call (one call per training step, for all 2B perturbed
samples). We time the whole jitted training step (anonymize ±, host callback, privacy gradient,
optimizer, reviewer update) and divide by the time spent inside the oracle, measured in the same run:

  overhead_ratio = step wall time / oracle time      (1.0 = the framework is free)

  python benchmarks/overhead.py                      # smoke model, 50 ms per call
  python benchmarks/overhead.py --latency-ms 200 --steps 20 --variant ""   # the default model

`serial_ms` is the utility part alone with an oracle that answers at once (Δ, both perturbed
anonymizations, the callback): it needs θ_k, so no overlap can hide it, and
(latency + serial_ms) / latency bounds the ratio from below. `after_idle` is the same part timed
after the latency's worth of idle (median), as a real step runs it: idle cores, or a GPU's
clocks, take a while to come back, and on a 2-core VM this alone adds 2 to 4 ms. `free_ms` is
the whole step with that free oracle: the work that the oracle's latency has to hide (privacy
gradient, reviewer, update).

Last line: `overhead_ratio=<x>`; the goal is ≤ 1.10 at 50 ms per call on the smoke model.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from anonymax import optim, train  # noqa: E402
from anonymax.data import pipeline  # noqa: E402
from anonymax.oracles import OracleOutput, OracleStats  # noqa: E402
from anonymax.oracles.bridge import OracleBridge  # noqa: E402
from configs import synthetic  # noqa: E402


class SleepingOracle:
  """A black box with a fixed latency per call and a constant answer."""

  name = "sleep"
  loss = "nll"

  def __init__(self, latency_s: float):
    self.latency_s = latency_s
    self.stats = OracleStats()

  def query(self, visuals, queries):
    time.sleep(self.latency_s)
    n = len(queries)
    self.stats.calls += n
    return OracleOutput(np.full(n, 1.0, np.float32), np.zeros(n, np.int32), ["x"] * n)


def main():
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--latency-ms", type=float, default=50.0, help="oracle latency per call")
  parser.add_argument("--steps", type=int, default=30, help="timed steps (after one warm-up step)")
  parser.add_argument("--variant", default="smoke", help="configs/synthetic.py variant string")
  parser.add_argument("--data-dir", default=None, help="TFDS data dir (default: a temporary one)")
  args = parser.parse_args()

  config = synthetic.get_config(args.variant)
  config.data.data_dir = args.data_dir or os.path.join(tempfile.gettempdir(), "anonymax_bench_tfds")
  split, _ = train.load_data(config)
  train.finalize_config(config, split)
  anonymizer, reviewer = train.build_models(config)
  optimizer = optim.make_optimizer(train.optimizer_config(config))
  state = train.create_state(config, anonymizer, reviewer, optimizer, split.visuals.shape[1:])
  oracle = SleepingOracle(args.latency_ms / 1000.0)
  bridge = OracleBridge(oracle, split.queries)
  step_fn = train.make_train_step(config, anonymizer, reviewer, optimizer, bridge)

  def batch(k):
    n = split.visuals.shape[0]
    u = pipeline.batch_indices(k, num_examples=n, batch_size=config.batch_size, seed=0)
    p = pipeline.batch_indices(k, num_examples=n, batch_size=config.privacy_batch_size, seed=1)
    return split.visuals[u], u.astype(np.int32), split.visuals[p], split.privacy[p]

  # As the training loop runs it: each step also gets the next step's utility visuals, and
  # computes their perturbed anonymizations along with its update (`train.TrainStep`).
  batches = [batch(k) for k in range(args.steps + 2)]

  def run_steps(state):
    for k in range(1, args.steps + 1):
      state, metrics = step_fn(state, *batches[k], next_visuals=batches[k + 1][0])
    return jax.block_until_ready((state, metrics))

  state, _ = step_fn(state, *batches[0], next_visuals=batches[1][0])  # compile
  jax.block_until_ready(state)
  bridge.seconds = 0.0
  start = time.perf_counter()
  state, metrics = run_steps(state)
  wall = time.perf_counter() - start
  oracle_seconds = bridge.seconds  # before the calls below add to it
  # The serial floor: Δ, both perturbed anonymizations and the callback, with an oracle that
  # answers at once. Nothing can overlap it, since it needs θ_k.
  oracle.latency_s = 0.0

  def serial_part():  # `perturb` runs: nothing was prepared for batch 0
    step_fn.start(state, *batches[0][:2])
    bridge.receive()

  serial_part()
  start = time.perf_counter()
  for _ in range(args.steps):
    serial_part()
  serial = (time.perf_counter() - start) / args.steps
  # The same after the latency's worth of idle, as in a real step: idle cores (or GPU clocks)
  # take a while to come back, so this is what the serial part costs after each oracle call.
  cold = []
  for _ in range(args.steps):
    time.sleep(args.latency_ms / 1000.0)
    start = time.perf_counter()
    serial_part()
    cold.append(time.perf_counter() - start)
  serial_idle = float(np.median(cold))
  # The whole step with that free oracle: what the step costs when nothing hides behind it.
  start = time.perf_counter()
  state, metrics = run_steps(state)
  free = (time.perf_counter() - start) / args.steps
  print(
    f"{'variant':>10} {'steps':>6} {'latency_ms':>11} {'step_ms':>8} {'oracle_ms':>10} "
    f"{'serial_ms':>10} {'after_idle':>10} {'free_ms':>8} {'compiles':>9}"
  )
  print(
    f"{args.variant or 'default':>10} {args.steps:>6} {args.latency_ms:>11.1f} "
    f"{1000 * wall / args.steps:>8.1f} {1000 * oracle_seconds / args.steps:>10.1f} "
    f"{1000 * serial:>10.1f} {1000 * serial_idle:>10.1f} {1000 * free:>8.1f} "
    f"{step_fn._cache_size():>9}"
  )
  print(f"overhead_ratio={wall / oracle_seconds:.3f}")


if __name__ == "__main__":
  main()
