"""Training and evaluation through the `openai` client against a real local HTTP server.

The server (`anonymax.oracles.server.serve`) fronts the synthetic benchmark's reference black box and
injects faults; the trainer must complete, count what it skipped, and — when the retries
succeed — end with exactly the parameters of a fault-free run.
"""

import json

import jax
import numpy as np
import pytest

from anonymax import black_boxes, evaluate, run_config, train
from anonymax.configs import synthetic
from anonymax.oracles.server import serve

KEY = "sk-test-not-a-real-key"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("openai_train")
  return str(root / "tfds"), str(root / "reference")


@pytest.fixture(scope="module")
def answerer(dirs):
  smoke = synthetic.get_config("smoke")
  return black_boxes.reference_oracle(
    cache_dir=dirs[1],
    image_size=smoke.data.image_size,
    num_train=smoke.oracle.reference.num_train,
    steps=smoke.oracle.reference.steps,
    progress=False,
  )


def _train(dirs, answerer, workdir, monkeypatch, faults=None, steps=2):
  monkeypatch.setenv("OPENAI_API_KEY", KEY)
  server, url = serve(answerer, api_key=KEY, faults=faults or {}, retry_after=0.05)
  try:
    config = synthetic.get_config(f"smoke,oracle=openai,base_url={url}")
    config.data.data_dir = dirs[0]
    config.total_steps = steps
    config.checkpoint_every = steps
    config.oracle.openai.timeout = 20.0
    state = train.train_and_evaluate(config, str(workdir))
    return config, state, server
  finally:
    server.close()


def test_retried_faults_give_exactly_the_fault_free_result(dirs, answerer, tmp_path, monkeypatch):
  _, clean, _ = _train(dirs, answerer, tmp_path / "clean", monkeypatch)
  faults = {1: "429", 4: "500", 9: "malformed", 20: "500"}
  _, faulty, server = _train(dirs, answerer, tmp_path / "faulty", monkeypatch, faults=faults)
  assert int(faulty.skipped) == 0 == int(clean.skipped)
  for a, b in zip(jax.tree.leaves(clean.params), jax.tree.leaves(faulty.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Every batch went over HTTP: 2·B requests per step plus one retry per injected fault.
  assert len(server.arrivals) == 2 * 2 * 8 + len(faults)


def test_unscorable_answers_are_skipped_counted_and_the_run_evaluates(
  dirs, answerer, tmp_path, monkeypatch
):
  faults = {n: "nan" for n in (0, 3, 7, 30)}
  config, state, _ = _train(dirs, answerer, tmp_path / "w", monkeypatch, faults=faults)
  assert int(state.step) == 2
  assert int(state.skipped) == len(faults)
  saved = (tmp_path / "w" / "config.json").read_text()
  assert KEY not in saved and "OPENAI_API_KEY" in saved

  server, url = serve(answerer, api_key=KEY)
  try:
    # The run's own config, at the server's new address (a runtime field).
    config.oracle.openai.base_url = url
    result = evaluate.evaluate(run_config.resolve(str(tmp_path / "w"), config), str(tmp_path / "w"))
  finally:
    server.close()
  assert result["oracle_loss"] == "choice"
  assert 0.0 <= result["utility"] <= 100.0
  # Raw test images are not sent to a remote black box unless asked: no raw utility figure.
  assert result["raw_utility"] is None
  assert result["raw_privacy_cmap"] is not None
  # Every other row is asked about each test image (the cache answers repeated images, such as
  # the blackened row's, once).
  sent = [r for r in result["rows"] if r["utility"] is not None]
  assert {r["name"] for r in sent} == {r["name"] for r in result["rows"]} - {"raw"}
  n = config.data.num_test
  assert n < result["eval_oracle_calls"] <= len(sent) * n
  on_disk = json.loads((tmp_path / "w" / "eval.json").read_text())
  assert on_disk["raw_utility"] is None
  for path in (tmp_path / "w").rglob("*"):
    if path.is_file():
      assert KEY.encode() not in path.read_bytes(), path
