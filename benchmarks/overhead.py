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
import tempfile
import time

import jax
import numpy as np

from anonymax import experiment
from anonymax.compile_counter import CompileCounter
from anonymax.configs import synthetic
from anonymax.oracles import Oracle, OracleOutput


class SleepingOracle(Oracle):
  """A black box with a fixed latency per call and a constant answer."""

  def __init__(self, latency_s: float):
    super().__init__(name="sleep", loss="nll")
    self.latency_s = latency_s

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
  oracle = SleepingOracle(args.latency_ms / 1000.0)
  exp = experiment.build(config, oracle=oracle)
  state = exp.init_state()
  step_fn, bridge = exp.train_step(), exp.bridge

  # As the training loop runs it: each step also gets the next step's utility visuals, and
  # computes their perturbed anonymizations along with its update (`anonymax.step.pipelined`).
  batches = [exp.batch(k) for k in range(args.steps + 2)]

  def run_steps(state):
    for k in range(1, args.steps + 1):
      state, metrics = step_fn(state, *batches[k], next_visuals=batches[k + 1][0])
    return jax.block_until_ready((state, metrics))

  state, _ = step_fn(state, *batches[0], next_visuals=batches[1][0])  # compile
  jax.block_until_ready(state)
  compiles = CompileCounter().start()  # compilations after the first step (0: none)
  bridge.seconds = 0.0
  start = time.perf_counter()
  state, metrics = run_steps(state)
  wall = time.perf_counter() - start
  oracle_seconds = bridge.seconds  # before the calls below add to it
  # The serial floor: Δ, both perturbed anonymizations and the callback, with an oracle that
  # answers at once. Nothing can overlap it, since it needs θ_k.
  oracle.latency_s = 0.0

  def serial_part():  # `perturb` and `send` on their own (nothing is prepared for batch 0)
    anonymized, *_ = step_fn.perturb(
      state.params, state.opt_state, state.zo_state, state.rng, state.step, batches[0][0]
    )
    jax.block_until_ready(step_fn.send(anonymized, batches[0][1]))
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
    f"{'serial_ms':>10} {'after_idle':>10} {'free_ms':>8} {'recompiles':>10}"
  )
  print(
    f"{args.variant or 'default':>10} {args.steps:>6} {args.latency_ms:>11.1f} "
    f"{1000 * wall / args.steps:>8.1f} {1000 * oracle_seconds / args.steps:>10.1f} "
    f"{1000 * serial:>10.1f} {1000 * serial_idle:>10.1f} {1000 * free:>8.1f} "
    f"{compiles.stop():>10}"
  )
  print(f"overhead_ratio={wall / oracle_seconds:.3f}")


if __name__ == "__main__":
  main()
