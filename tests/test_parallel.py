"""Data parallelism over simulated devices: the same training as on one device, and clear errors.

XLA's host device count is fixed when JAX starts, so the multi-device runs happen in a fresh
interpreter with XLA_FLAGS=--xla_force_host_platform_device_count=4."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from anonymax import parallel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
  """
  import json, sys
  import jax, numpy as np
  jax.config.update("jax_disable_most_optimizations", True)
  from anonymax import train
  from anonymax.configs import synthetic
  from tests.test_train import SpyOracle

  tfds_dir, workdir, num_devices = sys.argv[1], sys.argv[2], int(sys.argv[3])
  config = synthetic.get_config("smoke")
  config.data.data_dir = tfds_dir
  config.num_devices = num_devices
  config.total_steps = 2
  config.checkpoint_every = 1
  oracle = SpyOracle()
  state = train.train_and_evaluate(config, workdir, oracle=oracle)
  leaf = jax.tree.leaves(state.params)[0]
  print(json.dumps({
    "devices": len(jax.devices()),
    "param_devices": len(leaf.sharding.device_set),
    "replicated": bool(leaf.sharding.is_fully_replicated),
    "received": [r.shape[0] for r in oracle.received],
    "params": [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(state.params)],
    "reviewer": [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(state.reviewer_vars)],
  }))
  """
)


def _run(tmp_path, name, num_devices):
  env = {
    **os.environ,
    "JAX_PLATFORMS": "cpu",
    "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
    "PYTHONPATH": ROOT,
  }
  proc = subprocess.run(
    [sys.executable, "-c", SCRIPT, str(tmp_path / "tfds"), str(tmp_path / name), str(num_devices)],
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
    cwd=ROOT,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_four_devices_train_like_one(tmp_path):
  one = _run(tmp_path, "one", 1)
  four = _run(tmp_path, "four", 0)  # 0: all four simulated devices
  assert one["devices"] == four["devices"] == 4
  assert one["param_devices"] == 1 and four["param_devices"] == 4 and four["replicated"]
  # Still one oracle call per step for the whole batch (2·q·B samples), gathered from the devices.
  assert one["received"] == four["received"] == [16, 16]
  for a, b in zip(one["params"] + one["reviewer"], four["params"] + four["reviewer"]):
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-4 * max(1.0, max(abs(x) for x in a))
  # Resume on four devices from the checkpoint of step 1... of a one-device run: the layout
  # follows the mesh, not the checkpoint.
  resumed = _run(tmp_path, "one", 0)
  assert resumed["param_devices"] == 4


def test_mesh_and_batch_size_errors_name_the_field():
  assert parallel.make_mesh(1) is None and parallel.make_mesh(0) is None  # one CPU device here
  with pytest.raises(ValueError, match="config.num_devices=2 but only 1 cpu device"):
    parallel.make_mesh(2)
  with pytest.raises(ValueError, match="config.num_devices=-1"):
    parallel.make_mesh(-1)
  parallel.check_batch_sizes(None, batch_size=7)  # no mesh: anything goes


def test_batch_sizes_must_split_over_the_devices():
  class FakeMesh:  # only .devices.size is read
    class devices:
      size = 4

  parallel.check_batch_sizes(FakeMesh, batch_size=8, privacy_batch_size=12)
  with pytest.raises(ValueError, match="config.privacy_batch_size=6 does not split over 4"):
    parallel.check_batch_sizes(FakeMesh, batch_size=8, privacy_batch_size=6)
