r"""Several processes, each asking its own black box about its rows: the step time beside one process.

A black box that takes `--ms-per-sample` per sample it scores (as a local MLLM does, one forward
pass per image) answers every process; the same global batch is trained by 1 and by P processes
on 127.0.0.1 (each its own interpreter, `jax.distributed.initialize`, one CPU device each), and
the steady-state time per step is measured in each:

  speedup = step time with 1 process / step time with P processes

With each process scoring its B/P rows (`anonymax.step.process_shards`) the oracle's part of a
step shrinks P-fold; a call for the global batch from process 0 would keep the 1-process oracle
time and add the transfers of every image to process 0 and of every answer back. What the
processes add is their collectives (gradients and BatchNorm statistics over TCP here) and, on a
shared CPU, their competition for its cores.

  python benchmarks/multihost_oracle.py                         # smoke model, 2 processes
  python benchmarks/multihost_oracle.py --ms-per-sample 20 --steps 10

Last line: `speedup=<x>`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def worker(args) -> None:
  """One process of a run: trains `--steps` timed steps and prints its timings as JSON."""
  from anonymax import distributed  # noqa: PLC0415 — before anything else touches JAX

  if args.num_processes > 1:
    distributed.initialize(
      distributed.settings(args.coordinator, args.num_processes, args.process_id)
    )
  import jax  # noqa: PLC0415

  from anonymax import experiment  # noqa: PLC0415
  from anonymax.configs import synthetic  # noqa: PLC0415
  from anonymax.oracles import Oracle, OracleOutput  # noqa: PLC0415

  class PerSampleOracle(Oracle):
    """A black box that takes a fixed time per sample and answers a constant."""

    def __init__(self, seconds_per_sample: float):
      super().__init__(name="per_sample", loss="nll")
      self.seconds_per_sample = seconds_per_sample

    def query(self, visuals, queries):
      n = len(queries)
      time.sleep(self.seconds_per_sample * n)
      self.stats.calls += n
      losses = visuals.reshape(n, -1).mean(-1).astype(np.float32) / 255.0
      return OracleOutput(losses, np.zeros(n, np.int32), ["x"] * n)

  config = synthetic.get_config(args.variant)
  config.data.data_dir = args.data_dir
  config.batch_size = config.privacy_batch_size = args.batch_size
  exp = experiment.build(config, oracle=PerSampleOracle(args.ms_per_sample / 1000.0))
  state, step_fn = exp.init_state(), exp.train_step()
  batches = [exp.batch(k) for k in range(args.steps + 2)]
  state, _ = step_fn(state, *batches[0], next_visuals=batches[1][0])  # compile
  jax.block_until_ready(state)
  oracle_before, start = exp.bridge.seconds, time.perf_counter()
  for k in range(1, args.steps + 1):
    state, metrics = step_fn(state, *batches[k], next_visuals=batches[k + 1][0])
  jax.block_until_ready((state, metrics))
  step_s = (time.perf_counter() - start) / args.steps
  oracle_s = (exp.bridge.seconds - oracle_before) / args.steps
  print(json.dumps({"step_s": step_s, "oracle_s": oracle_s, "samples": exp.bridge.samples}))


def run(args, num_processes: int) -> list[dict]:
  """Starts `num_processes` workers and returns their timings."""
  address = f"127.0.0.1:{free_port()}"
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
  common = [
    sys.executable, __file__, "--worker", "--num-processes", str(num_processes),
    "--coordinator", address, "--steps", str(args.steps), "--variant", args.variant,
    "--ms-per-sample", str(args.ms_per_sample), "--batch-size", str(args.batch_size),
    "--data-dir", args.data_dir,
  ]  # fmt: skip
  procs = [
    subprocess.Popen(
      [*common, "--process-id", str(i)],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )  # fmt: skip
    for i in range(num_processes)
  ]
  out = []
  for p in procs:
    stdout, stderr = p.communicate(timeout=900)
    if p.returncode:
      raise SystemExit(f"a worker failed:\n{stderr[-3000:]}")
    out.append(json.loads(stdout.strip().splitlines()[-1]))
  return out


def main():
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--processes", type=int, default=2, help="P, compared with one process")
  parser.add_argument("--ms-per-sample", type=float, default=10.0, help="oracle time per sample")
  parser.add_argument("--steps", type=int, default=10, help="timed steps (after one warm-up)")
  parser.add_argument("--batch-size", type=int, default=8, help="global utility/privacy batch")
  parser.add_argument("--variant", default="smoke", help="configs/synthetic.py variant string")
  parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "anonymax_tfds"))
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--num-processes", type=int, default=1, help=argparse.SUPPRESS)
  parser.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
  parser.add_argument("--coordinator", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    return worker(args)

  one = run(args, 1)[0]
  several = run(args, args.processes)
  step_p = max(r["step_s"] for r in several)
  print(f"1 process:   {1000 * one['step_s']:.1f} ms/step, oracle {1000 * one['oracle_s']:.1f} ms")
  for i, r in enumerate(several):
    print(
      f"{args.processes} processes, #{i}: {1000 * r['step_s']:.1f} ms/step, "
      f"oracle {1000 * r['oracle_s']:.1f} ms ({r['samples']} samples scored here)"
    )
  print(f"speedup={one['step_s'] / step_p:.2f}")


if __name__ == "__main__":
  main()
