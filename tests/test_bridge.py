"""The host-callback bridge: never raises, marks bad samples, passes exactly what it is given."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anonymax.oracles import (
  STATUS_FAILED,
  STATUS_INVALID,
  STATUS_OK,
  OracleOutput,
  OracleStats,
  Query,
)
from anonymax.oracles.bridge import OracleBridge


class MeanBrightnessOracle:
  """Loss = |mean pixel / 255 − target|, target parsed from the answer; records what it receives."""

  name = "mean-brightness"
  loss = "vqa"

  def __init__(self, fail_ids=(), nan_ids=(), explode=False):
    self.stats = OracleStats()
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


def test_correct_choice_is_the_majority_answer_among_the_options():
  from anonymax.oracles.base import correct_choice

  q = Query("How many?", ("2", "two", "two", "three", "two"), ("one", "two", "three"))
  assert correct_choice(q) == "two"  # "2" is not an option; "two" outvotes "three"
  assert (
    correct_choice(Query("?", ("three", "two"), ("two", "three"))) == "three"
  )  # tie: first listed
  assert correct_choice(Query("?", ("blue",), ("red",))) is None


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
