"""Checkpoints: the whole state round-trips, secrets never reach disk, a killed run resumes exactly."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from anonymax import checkpoint, cli, experiment
from anonymax.configs import synthetic
from tests.test_train import SpyOracle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _state(tmp_path, zo="ours"):
  config = synthetic.get_config(f"smoke,zo={zo}")
  config.data.data_dir = str(tmp_path / "tfds")
  return experiment.build(config, oracle=SpyOracle()).init_state()


# The stateful estimators' states (evosax's CMA-ES state, the guided subspace, REINFORCE's
# baseline) are part of the checkpoint too.
@pytest.mark.parametrize("zo", ["ours", "cma_es", "guided", "reinforce"])
def test_round_trip_of_the_whole_state(tmp_path, zo):
  state = _state(tmp_path, zo)
  # Make every leaf distinctive so that a mix-up of two leaves would be caught.
  leaves, treedef = jax.tree.flatten(state)
  leaves = [
    np.asarray(x) + np.asarray(i + 1, np.asarray(x).dtype)
    if np.issubdtype(np.asarray(x).dtype, np.number)
    else x
    for i, x in enumerate(leaves)
  ]
  state = jax.tree.unflatten(treedef, leaves)
  mgr = checkpoint.manager(str(tmp_path / "w"))
  checkpoint.save(mgr, 7, state, {"step": 7, "config": {"api_key": "sk-secret"}}, {"model": {}})
  restored, meta = checkpoint.restore(
    checkpoint.manager(str(tmp_path / "w"), read_only=True), state
  )
  assert meta["step"] == 7
  assert meta["config"]["api_key"] == "<redacted>"
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.asarray(a).dtype == np.asarray(b).dtype
  files = "".join(
    open(os.path.join(d, f), errors="ignore").read()
    for d, _, fs in os.walk(tmp_path / "w")
    for f in fs
  )
  assert "sk-secret" not in files


def test_restore_of_an_empty_workdir_is_none(tmp_path):
  assert checkpoint.restore(checkpoint.manager(str(tmp_path)), {"x": np.zeros(2)}) is None


def test_read_only_manager_on_missing_dir_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoints"):
    checkpoint.manager(str(tmp_path / "nothing"), read_only=True)


def _train_cmd(workdir, data_dir, total):
  return [
    sys.executable,
    os.path.join(ROOT, "launch", "train.py"),
    "--config=" + os.path.join(ROOT, "configs", "synthetic.py") + ":smoke",
    f"--workdir={workdir}",
    f"--config.data.data_dir={data_dir}",
    f"--config.oracle.reference.cache_dir={data_dir}/reference",
    f"--config.total_steps={total}",
    "--config.checkpoint_every=2",
  ]


def _final_params(workdir):
  mgr = checkpoint.manager(str(workdir), read_only=True)
  step = mgr.latest_step()
  restored = mgr.restore(
    step,
    args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()),
  )
  return step, restored["state"]["params"]


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_parameters(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
  data_dir = str(tmp_path / "data")
  total = 8
  # Uninterrupted reference run (it also builds the dataset and the reference black box).
  subprocess.run(
    _train_cmd(tmp_path / "a", data_dir, total), check=True, env=env, capture_output=True
  )
  # Interrupted run: SIGKILL once the step-4 checkpoint exists (mid-step or mid-save, whatever comes).
  proc = subprocess.Popen(
    _train_cmd(tmp_path / "b", data_dir, total),
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  deadline = time.time() + 300
  while not os.path.isdir(tmp_path / "b" / "checkpoints" / "4") and time.time() < deadline:
    if proc.poll() is not None:
      break
    time.sleep(0.05)
  killed = proc.poll() is None
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert killed, "the run finished before it could be killed"
  subprocess.run(
    _train_cmd(tmp_path / "b", data_dir, total), check=True, env=env, capture_output=True
  )
  step_a, params_a = _final_params(tmp_path / "a")
  step_b, params_b = _final_params(tmp_path / "b")
  assert step_a == step_b == total
  for x, y in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_default_workdir_is_named_after_the_config_file():
  assert cli.default_workdir("configs/synthetic.py:smoke,zo=spsa") == os.path.join(
    "workdirs", "synthetic"
  )
  assert cli.default_workdir("/abs/okvqa.py") == os.path.join("workdirs", "okvqa")


def test_a_checkpoint_of_another_state_layout_is_a_clear_error(tmp_path):
  state = _state(tmp_path)
  mgr = checkpoint.manager(str(tmp_path / "w"))
  checkpoint.save(mgr, 1, state, {}, {"model": {}})
  # E.g. an earlier version's optimizer state, laid out per parameter leaf instead of flat.
  other = state.replace(opt_state=jax.tree.map(lambda x: np.zeros(3, np.float32), state.params))
  with pytest.raises(ValueError, match=r"checkpoint .*/1 does not match this version's training"):
    checkpoint.restore(checkpoint.manager(str(tmp_path / "w")), other)


def test_a_checkpoint_without_the_standalone_anonymizer_is_a_clear_error(tmp_path):
  """An earlier version wrote only the state and meta items."""
  state = _state(tmp_path)
  directory = str(tmp_path / "w" / "checkpoints")
  options = ocp.CheckpointManagerOptions(enable_async_checkpointing=False)
  old = ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))
  old.save(
    1, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave({}))
  )
  old.wait_until_finished()
  with pytest.raises(ValueError, match=r"checkpoint .*/1 holds no standalone anonymizer"):
    checkpoint.restore_anonymizer(checkpoint.manager(str(tmp_path / "w"), read_only=True))
