"""Several processes train one run: two CPU processes on 127.0.0.1 against one process.

Each process is its own interpreter (`jax.distributed.initialize` with a free port, one CPU device
each, gloo collectives); the smoke config's global batch is the same as in the one-process run.
The helpers of `anonymax.distributed`, `anonymax.parallel` and `anonymax.step.process_shards` are
also checked here within one process.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec

from anonymax import anonymizer, checkpoint, distributed, parallel
from anonymax.oracles.base import Query
from anonymax.oracles.bridge import OracleBridge, quantize
from anonymax.step.process_shards import ProcessShards
from tests.test_train import SpyOracle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One process of a run: argv = tfds dir, workdir, coordinator port, process count, process id,
# steps. With two processes it also checks the cross-process helpers, then trains `steps - 1`
# steps and resumes from that checkpoint for the last one (a multi-process restore).
SCRIPT = textwrap.dedent(
  """
  import json, os, sys
  tfds_dir, workdir, port = sys.argv[1], sys.argv[2], sys.argv[3]
  count, pid, steps = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
  from anonymax import distributed
  if count > 1:
    distributed.initialize(distributed.settings(f"127.0.0.1:{port}", count, pid))
  import jax, numpy as np
  jax.config.update("jax_disable_most_optimizations", True)
  from anonymax import experiment, train
  from anonymax.configs import synthetic
  from tests.test_train import SpyOracle

  out = {"process": jax.process_index(), "processes": jax.process_count()}
  if count > 1:
    marker = os.path.join(workdir + ".marker")
    def build():
      seen = os.path.exists(marker)
      open(marker, "a").close()
      return seen
    out["saw_marker"] = distributed.primary_first(build, "marker")
    out["any"] = distributed.any_process(pid == 1)
    out["sums"] = distributed.sum_over_processes({"calls": pid + 1, "cost": 0.25})
    paid = synthetic.get_config("smoke,oracle=openai,base_url=http://127.0.0.1:9/v1")
    paid.oracle.openai.budget_calls, paid.oracle.openai.budget_cost = 101, 3.0
    own = train.process_oracle(paid, workdir + ".paid")
    out["paid"] = [own.cache.path, own.oracle.usage_path, own.oracle.budget.calls,
                   own.oracle.budget.cost]

  config = synthetic.get_config("smoke")
  config.data.data_dir = tfds_dir
  config.checkpoint_every = config.log_every = 1
  oracle = SpyOracle()
  exp = experiment.build(config, oracle=oracle)
  rows = lambda x: [s.data.shape[0] for s in x.addressable_shards] if count > 1 else [len(x)]
  out["batch_rows"] = [rows(x) for x in exp.batch(0)]
  parts = [steps - 1, steps] if count > 1 else [steps]
  for total in parts:
    config.total_steps = total
    state = train.train_and_evaluate(config, workdir, oracle=oracle)
  leaves = jax.tree.leaves((state.params, state.reviewer_vars))
  out["replicated"] = all(x.sharding.is_fully_replicated for x in leaves)
  out["leaves"] = [np.asarray(x).ravel().tolist() for x in leaves]
  out["received"] = [r.shape[0] for r in oracle.received]
  out["brightness"] = [r.reshape(r.shape[0], -1).mean(-1).tolist() for r in oracle.received]
  print(json.dumps(out))
  """
)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(tmp_path, name, count, pid, port, steps):
  env = {
    **os.environ,
    "JAX_PLATFORMS": "cpu",
    "PYTHONPATH": ROOT,
    "OPENAI_API_KEY": "sk-not-used",  # the paid oracle is built, never asked
  }
  env.pop("XLA_FLAGS", None)  # one CPU device per process
  args = [str(tmp_path / "tfds"), str(tmp_path / name), str(port), str(count), str(pid), str(steps)]
  # Output to files, not pipes: a process blocked on a full pipe would stall its peer's
  # collectives until the coordination service gives up on both.
  log = tmp_path / f"{name}.{pid}"
  with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
    proc = subprocess.Popen(
      [sys.executable, "-c", SCRIPT, *args], env=env, cwd=ROOT, stdout=out, stderr=err
    )
  return proc, log


def _result(started):
  proc, log = started
  proc.wait(timeout=600)
  assert proc.returncode == 0, open(f"{log}.err").read()[-4000:]
  return json.loads(open(f"{log}.out").read().strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """One process and two processes, each training the smoke config for 3 steps (the two resume
  from their checkpoint of step 2 for the third). The data set is built once, first."""
  tmp = tmp_path_factory.mktemp("multihost")
  from anonymax.configs import synthetic  # noqa: PLC0415
  from anonymax.experiment import load_split  # noqa: PLC0415

  config = synthetic.get_config("smoke")
  config.data.data_dir = str(tmp / "tfds")
  load_split(config, "train")  # so that the three processes only read it
  port = _free_port()
  procs = [_start(tmp, "one", 1, 0, 0, 3)] + [_start(tmp, "two", 2, i, port, 3) for i in (0, 1)]
  one, *two = [_result(p) for p in procs]
  return tmp, one, two


@pytest.mark.slow
def test_two_processes_train_like_one(runs):
  tmp, one, two = runs
  assert one["processes"] == 1 and [r["processes"] for r in two] == [2, 2]
  assert [r["process"] for r in two] == [0, 1]
  # Each process reads and places only its half of every batch (8 utility, 8 privacy rows).
  assert one["batch_rows"] == [[8]] * 4 and all(r["batch_rows"] == [[4]] * 4 for r in two)
  # Each process's black box scores its rows under both perturbations: 2 x 4 of the 2 x 8.
  assert one["received"] == [16, 16, 16] and all(r["received"] == [8, 8, 8] for r in two)
  for k in range(3):
    b0, b1 = (np.asarray(r["brightness"][k]).reshape(2, 4) for r in two)
    joined = np.concatenate([b0, b1], axis=1).ravel()  # set-major, rows in batch order
    np.testing.assert_allclose(joined, one["brightness"][k], atol=1.0)  # uint8 ±1
  # The same parameters (anonymizer and reviewer), replicated on both processes.
  assert two[0]["replicated"] and two[0]["leaves"] == two[1]["leaves"]
  for a, b in zip(one["leaves"], two[0]["leaves"]):
    scale = max(1.0, max(abs(x) for x in a))
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-4 * scale


@pytest.mark.slow
def test_two_processes_write_each_file_once(runs):
  tmp, one, two = runs
  workdir = tmp / "two"
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == [1, 2, 3]  # the primary's lines only
  single = [json.loads(line) for line in (tmp / "one" / "metrics.jsonl").read_text().splitlines()]
  for a, b in zip(rows, single):
    assert a["oracle_samples"] == b["oracle_samples"] == 16 * a["step"]  # global counts
    assert a["l_mllm"] == pytest.approx(b["l_mllm"], rel=1e-4)
  assert json.loads((workdir / "config.json").read_text())["reviewer"]["num_classes"] == 7
  if (workdir / "tensorboard").is_dir():  # one event file per run of the loop, the primary's
    assert len(os.listdir(workdir / "tensorboard")) == 2
  mgr = checkpoint.manager(str(workdir), read_only=True)
  assert sorted(mgr.all_steps())[-1] == 3
  meta = checkpoint.read_meta(mgr, 3)
  assert meta["processes"] == 2 and meta["oracle_samples"] == 48
  # The black boxes' counters are summed over the processes: 8 samples each per step, 3 steps.
  assert meta["oracle_stats"]["calls"] == 2 * 8 * 3
  # One process reads the checkpoint the two wrote: the anonymizer of step 3, as trained.
  restored = anonymizer.restore(str(workdir))
  for a, b in zip(jax.tree.leaves(restored.params), two[0]["leaves"]):
    np.testing.assert_array_equal(np.asarray(a).ravel(), np.asarray(b, np.float32))


@pytest.mark.slow
def test_the_cross_process_helpers(runs):
  tmp, _, two = runs
  # The primary built first; the other found what it wrote.
  assert [r["saw_marker"] for r in two] == [False, True]
  assert [r["any"] for r in two] == [True, True]
  assert all(r["sums"] == {"calls": 3, "cost": 0.5} for r in two)
  # Each process's paid black box: its own cache and usage file, half of each budget.
  for i, r in enumerate(two):
    own = tmp / "two.paid" / "processes" / str(i)
    assert r["paid"] == [
      str(own / "oracle_cache.sqlite"),
      str(own / "oracle_usage.json"),
      50,
      1.5,
    ]


def test_settings_from_flags_and_environment():
  env = {
    distributed.ENV_COORDINATOR: "10.0.0.1:8476",
    distributed.ENV_NUM_PROCESSES: "4",
    distributed.ENV_PROCESS_ID: "3",
  }
  s = distributed.settings(environ=env)
  assert (s.coordinator_address, s.num_processes, s.process_id, s.several) == (
    "10.0.0.1:8476",
    4,
    3,
    True,
  )
  # A flag wins over its environment variable.
  s = distributed.settings("h:1", 2, 0, environ=env)
  assert (s.coordinator_address, s.num_processes, s.process_id) == ("h:1", 2, 0)
  # Nothing given, or one process: no jax.distributed at all.
  assert not distributed.settings(environ={}).several
  assert not distributed.settings(num_processes=1, process_id=0, environ={}).several
  assert distributed.initialize(distributed.settings(environ={})) is False
  # --distributed leaves everything to the cluster's detection.
  assert distributed.settings(auto=True, environ={}) == distributed.Settings(auto=True)


@pytest.mark.parametrize(
  "kwargs, env, message",
  [
    (dict(num_processes=2, process_id=0), {}, r"needs --coordinator_address \(or \$JAX_COORD"),
    (dict(coordinator_address="h:1", num_processes=2), {}, r"also needs --process_id"),
    (dict(num_processes=2, process_id=2, coordinator_address="h:1"), {}, r"in \[0, 2\)"),
    (dict(process_id=1), {}, r"--process_id=1 needs --num_processes"),
    (dict(num_processes=0), {}, r"--num_processes=0 .* at least 1"),
    (dict(coordinator_address="10.0.0.1", num_processes=2, process_id=0), {}, r"HOST:PORT"),
    ({}, {distributed.ENV_NUM_PROCESSES: "two"}, r"ANONYMAX_NUM_PROCESSES='two' is not an int"),
  ],
)
def test_wrong_settings_name_the_flag(kwargs, env, message):
  with pytest.raises(ValueError, match=message):
    distributed.settings(**kwargs, environ=env)


def test_the_launcher_refuses_incomplete_settings_in_one_line():
  proc = subprocess.run(
    [sys.executable, "launch/train.py", "--num_processes=2", "--process_id=1"],
    cwd=ROOT,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
    "error: --num_processes=2 also needs --coordinator_address (or $JAX_COORDINATOR_ADDRESS), "
    "or --distributed to detect them from the cluster (Slurm, Open MPI, Cloud TPU)"
  )


def test_one_process_helpers_need_no_collective(tmp_path):
  assert distributed.is_primary()
  assert distributed.any_process(True) and not distributed.any_process(False)
  assert distributed.sum_over_processes({"calls": 3}) == {"calls": 3}
  assert distributed.primary_first(lambda: 7) == 7
  assert distributed.process_workdir(str(tmp_path)) == str(tmp_path)


def test_budgets_are_divided_among_the_processes():
  oracle = ml_collections.ConfigDict(
    dict(
      kind="openai",
      openai=dict(budget_calls=101, budget_cost=3.0, budget_tokens=None, model="m"),
      hf=dict(batch_size=8),
    )
  )
  shared = distributed.divide_budgets(oracle, 2)
  assert (shared.openai.budget_calls, shared.openai.budget_cost) == (50, 1.5)  # 50 + 50 <= 101
  assert shared.openai.budget_tokens is None and shared.hf.batch_size == 8
  assert oracle.openai.budget_calls == 101  # the run's config is left as it was


def _one_device_mesh():
  return Mesh(np.asarray(jax.devices()[:1]), (parallel.DATA_AXIS,))


def test_rows_of_a_process_and_back():
  mesh = _one_device_mesh()
  assert parallel.process_rows(None, 8) == slice(0, 8)
  assert parallel.process_rows(mesh, 8) == slice(0, 8)  # one process holds every row
  x = np.arange(24, dtype=np.float32).reshape(2, 12)
  (g,) = parallel.global_batch(mesh, (x,), (12,), axis=1)
  assert g.shape == (2, 12) and g.sharding.spec == PartitionSpec(None, parallel.DATA_AXIS)
  np.testing.assert_array_equal(parallel.local_rows(g, axis=1), x)
  assert not parallel.spans_processes(mesh) and not parallel.spans_processes(None)


def test_process_shards_send_rows_and_gather_answers():
  """On one process the shards are the whole batch: the oracle gets the S·B uint8 visuals
  set-major with the ids tiled, and the answers come back as [S, B]."""
  mesh = _one_device_mesh()
  queries = [Query(prompt=f"q{i}", answers=("a",)) for i in range(6)]
  spy = SpyOracle()
  shards = ProcessShards(OracleBridge(spy, queries), mesh, num_sets=2)
  anonymized = jax.random.uniform(jax.random.key(0), (2, 3, 4, 4, 3))  # [S, B, H, W, C]
  laid_out = jax.jit(shards.layout)(anonymized)
  assert laid_out.dtype == jnp.uint8
  assert laid_out.sharding.is_equivalent_to(parallel.batch_sharded(mesh, axis=1), 5)
  np.testing.assert_array_equal(np.asarray(laid_out), np.asarray(quantize(anonymized)))
  (ids,) = parallel.global_batch(mesh, (np.array([5, 0, 2], np.int32),), (3,))
  shards.send(laid_out, ids)
  losses, status = shards.receive(timeout=30)
  assert losses.shape == status.shape == (2, 3)
  np.testing.assert_array_equal(spy.received[0], np.asarray(laid_out).reshape(6, 4, 4, 3))
  expected = np.asarray(laid_out).reshape(2, 3, -1).mean(-1) / 255.0  # the spy's brightness
  np.testing.assert_allclose(np.asarray(losses), expected, rtol=1e-6)
  assert np.all(np.asarray(status) == 0)
  with pytest.raises(RuntimeError, match="no send"):
    shards.receive()
