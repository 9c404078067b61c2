"""The host-callback bridge: never raises, marks bad samples, passes exactly what it is given."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anonymax.oracles import (
  STATUS_FAILED,
  STATUS_INVALID,
  STATUS_OK,
  Oracle,
  OracleOutput,
  Query,
)
from anonymax.oracles.bridge import OracleBridge


class MeanBrightnessOracle(Oracle):
  """Loss = |mean pixel / 255 − target|, target parsed from the answer; records what it receives."""

  def __init__(self, fail_ids=(), nan_ids=(), explode=False):
    super().__init__(name="mean-brightness", loss="vqa")
    self.received = []
    self.fail_ids, self.nan_ids, self.explode = set(fail_ids), set(nan_ids), explode

  def query(self, visuals, queries):
    if self.explode:
      raise RuntimeError("connection reset")
    self.received.append(np.array(visuals))
    n = len(queries)
    losses = np.zeros(n, np.float32)
    status = np.zeros(n, np.int32)
    for i, q in enumerate(queries):
      target = float(q.answers[0])
      losses[i] = abs(visuals[i].mean() / 255.0 - target)
      if q.prompt in self.fail_ids:
        status[i] = STATUS_FAILED
      if q.prompt in self.nan_ids:
        losses[i] = np.nan
    self.stats.calls += n
    return OracleOutput(losses, status, [str(v) for v in losses])


QUERIES = [Query(f"q{i}", (str(t),)) for i, t in enumerate([0.0, 0.5, 1.0, 0.25])]


def test_losses_inside_jit_match_hand_values():
  oracle = MeanBrightnessOracle()
  bridge = OracleBridge(oracle, QUERIES)
  visuals = jnp.stack([jnp.full((4, 4, 3), v) for v in (0.2, 0.2, 0.6, 1.0)])
  ids = jnp.array([0, 1, 2, 3], jnp.int32)
  losses, status = jax.jit(bridge)(visuals, ids)
  # uint8 quantisation: 0.2 → 51 → 0.2, 0.6 → 153 → 0.6, 1.0 → 255.
  np.testing.assert_allclose(np.asarray(losses), [0.2, 0.3, 0.4, 0.75], atol=1e-6)
  assert np.asarray(status).tolist() == [STATUS_OK] * 4
  assert oracle.received[0].dtype == np.uint8
  assert bridge.samples == 4


def test_failed_and_non_finite_samples_are_marked_and_zeroed():
  oracle = MeanBrightnessOracle(fail_ids={"q1"}, nan_ids={"q2"})
  bridge = OracleBridge(oracle, QUERIES)
  losses, status = bridge.host_fn(np.full((4, 2, 2, 3), 0.5, np.float32), np.arange(4))
  assert status.tolist() == [STATUS_OK, STATUS_FAILED, STATUS_INVALID, STATUS_OK]
  assert losses[1] == 0.0 and losses[2] == 0.0
  assert losses.dtype == np.float32 and status.dtype == np.int32


def test_an_oracle_exception_becomes_failed_status_not_a_crash():
  bridge = OracleBridge(MeanBrightnessOracle(explode=True), QUERIES)
  losses, status = jax.jit(bridge)(jnp.zeros((2, 2, 2, 3)), jnp.array([0, 1], jnp.int32))
  assert np.asarray(status).tolist() == [STATUS_FAILED, STATUS_FAILED]
  assert np.all(np.asarray(losses) == 0)


def test_out_of_range_ids_fail_without_raising():
  bridge = OracleBridge(MeanBrightnessOracle(), QUERIES)
  _, status = bridge.host_fn(np.zeros((2, 2, 2, 3), np.float32), np.array([0, 7]))
  assert status.tolist() == [STATUS_FAILED, STATUS_FAILED]


def test_mismatched_batch_is_a_clear_error():
  bridge = OracleBridge(MeanBrightnessOracle(), QUERIES)
  with pytest.raises(ValueError, match="3 samples but indices 2"):
    bridge(jnp.zeros((3, 2, 2, 3)), jnp.array([0, 1], jnp.int32))


def test_anything_but_an_oracle_is_refused_at_construction():
  class Lookalike:  # has query() but is no Oracle: inside a callback it would fail every sample
    name, loss = "lookalike", "vqa"

    def query(self, visuals, queries):
      return OracleOutput.failed(len(queries))

  with pytest.raises(TypeError, match="OracleBridge needs an anonymax.oracles.base.Oracle"):
    OracleBridge(Lookalike(), QUERIES)
  with pytest.raises(TypeError, match="got NoneType"):
    OracleBridge(None, QUERIES)
  assert OracleBridge(MeanBrightnessOracle(), QUERIES).oracle.name == "mean-brightness"


def test_the_oracle_base_class_holds_the_defaults():
  a, b = MeanBrightnessOracle(), MeanBrightnessOracle()
  assert a.stats is not b.stats and a.stats.calls == 0  # fresh counters per instance
  assert a.exhausted is False and a.cache_signature == ""
  a.close()  # a no-op, and the oracle stays usable
  assert a.query(np.zeros((1, 2, 2, 3), np.uint8), QUERIES[:1]).status.tolist() == [STATUS_OK]

  class Silent(Oracle):
    def query(self, visuals, queries):
      return OracleOutput.failed(len(queries))

  assert Silent(name="silent", loss="choice").loss == "choice"
  with pytest.raises(ValueError, match="oracle.loss"):
    Silent(name="silent", loss="bleu")  # the base class validates the loss of every oracle
  with pytest.raises(TypeError, match="abstract"):
    Oracle(name="x", loss="vqa")  # query() must be implemented


def test_call_started_is_signalled_when_the_host_is_reached():
  bridge = OracleBridge(MeanBrightnessOracle(), QUERIES)
  assert not bridge.call_started.is_set()
  jax.jit(bridge)(jnp.zeros((1, 2, 2, 3)), jnp.array([0], jnp.int32))
  assert bridge.call_started.is_set()


class GatedOracle(MeanBrightnessOracle):
  """Answers only once `gate` is set, so a test can see who waits for it."""

  def __init__(self):
    super().__init__()
    import threading

    self.gate = threading.Event()

  def query(self, visuals, queries):
    assert self.gate.wait(10), "the gate was never opened"
    return super().query(visuals, queries)


def test_send_returns_before_the_oracle_answers_and_receive_collects_the_answer():
  oracle = GatedOracle()
  bridge = OracleBridge(oracle, QUERIES)
  visuals = jnp.stack([jnp.full((4, 4, 3), v) for v in (0.2, 0.2, 0.6, 1.0)])
  ids = jnp.array([0, 1, 2, 3], jnp.int32)

  @jax.jit
  def program(v, i):
    bridge.send(v * 1.0, i)  # an anonymizer output, not the argument itself
    return v.sum()

  # The program finishes while the oracle is still blocked: the device does not wait for it.
  jax.block_until_ready(program(visuals, ids))
  assert bridge.call_started.is_set() and not oracle.received
  oracle.gate.set()
  losses, status = bridge.receive(timeout=10)
  np.testing.assert_allclose(losses, [0.2, 0.3, 0.4, 0.75], atol=1e-6)
  assert status.tolist() == [STATUS_OK] * 4
  assert oracle.received[0].dtype == np.uint8 and bridge.samples == 4
  with pytest.raises(RuntimeError, match="no send"):
    bridge.receive()  # each answer is collected once


def test_send_of_a_failing_oracle_receives_failed_status():
  bridge = OracleBridge(MeanBrightnessOracle(explode=True), QUERIES)
  jax.jit(bridge.send)(jnp.zeros((2, 2, 2, 3)), jnp.array([0, 1], jnp.int32))
  losses, status = bridge.receive(timeout=10)
  assert status.tolist() == [STATUS_FAILED] * 2 and losses.tolist() == [0.0, 0.0]


def test_send_rejects_mismatched_lengths():
  bridge = OracleBridge(MeanBrightnessOracle(), QUERIES)
  with pytest.raises(ValueError, match="3 samples but indices 2"):
    jax.jit(bridge.send)(jnp.zeros((3, 2, 2, 3)), jnp.array([0, 1], jnp.int32))


def test_quantize_on_the_device_matches_to_uint8_on_the_host():
  from anonymax.oracles.base import to_uint8
  from anonymax.oracles.bridge import quantize

  # Half steps (rounded to even), the ends, values outside [0, 1], NaN and ±inf.
  x = np.array(
    [0.0, 0.5 / 255, 1.5 / 255, 2.5 / 255, 0.5, 1.0, -0.2, 1.7, np.nan, np.inf, -np.inf],
    np.float32,
  )
  x = np.concatenate([x, np.random.default_rng(0).random(1000, np.float32)])
  with np.errstate(over="ignore", invalid="ignore"):  # inf · 255
    want = to_uint8(x)
  np.testing.assert_array_equal(np.asarray(jax.jit(quantize)(x)), want)
  u = np.arange(256, dtype=np.uint8)
  assert quantize(jnp.asarray(u)).dtype == jnp.uint8
  np.testing.assert_array_equal(np.asarray(quantize(jnp.asarray(u))), u)


@pytest.mark.parametrize("shape", [(3, 5, 7, 3), (2, 160, 160, 3), (1, 1, 1, 1)])
def test_chunks_are_small_and_reassemble_exactly(shape):
  from anonymax.oracles.bridge import CHUNK_BYTES, from_chunks, to_chunks

  x = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
  chunks = jax.jit(to_chunks)(x)
  assert all(c.nbytes <= CHUNK_BYTES for c in chunks)
  assert len(chunks) == -(-x.size // CHUNK_BYTES)
  back = from_chunks([np.asarray(c) for c in chunks], shape)
  np.testing.assert_array_equal(back, x)


ONE_CORE_SCRIPT = r"""
import os, sys
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # before JAX sizes its threads
import jax, jax.numpy as jnp, numpy as np
from anonymax.oracles import Oracle, OracleOutput, Query
from anonymax.oracles.bridge import OracleBridge

class Mean(Oracle):
  def query(self, visuals, queries):
    n = len(queries)
    return OracleOutput(visuals.reshape(n, -1).mean(1).astype(np.float32), np.zeros(n, np.int32),
                        [""] * n)

bridge = OracleBridge(Mean(name="mean", loss="vqa"), [Query("q", ("a",))] * 4)
send = jax.jit(lambda x, i: bridge.send(jnp.sin(x) * 0.5 + 0.5, i))
call = jax.jit(lambda x, i: bridge(jnp.sin(x) * 0.5 + 0.5, i))
x = np.random.default_rng(0).random((4, 256, 256, 3), np.float32) * 6  # 3 MB of floats
ids = np.arange(4, dtype=np.int32)
want = np.clip(np.rint((np.sin(x) * 0.5 + 0.5) * 255), 0, 255).reshape(4, -1).mean(1)
for _ in range(20):
  jax.block_until_ready(send(x, ids))
  sent, _ = bridge.receive(timeout=60)
  called, _ = call(x, ids)
  assert np.abs(sent - want).max() < 1e-3 and np.abs(np.asarray(called) - want).max() < 1e-3
print("one-core ok")
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_large_visuals_cross_the_callback_on_a_single_core():
  # Regression: JAX copies a callback's operands onto the CPU device, on the same thread pool the
  # callback runs on once they exceed ~100 KiB; with one core, reading them inside the callback
  # then waited forever. The bridge passes them in chunks below that size.
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  try:
    out = subprocess.run(
      [sys.executable, "-c", ONE_CORE_SCRIPT], env=env, capture_output=True, text=True, timeout=240
    )
  except subprocess.TimeoutExpired:
    pytest.fail("the bridge deadlocked on a single core")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "one-core ok" in out.stdout
