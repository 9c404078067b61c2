"""The surrogate-model baselines: a white-box utility model fitted on raw images, the exact-gradient
step through it, and the two reference rows (the U-Net and BDQ) trained without the black box."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from anonymax import anonymizer, evaluation_rows, experiment, surrogate_utility, train
from anonymax.oracles import reference_model
from anonymax.step import parts
from tests.test_train import SpyOracle, smoke_config


@pytest.fixture(scope="module")
def shared_dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("shared")
  return str(root / "tfds"), str(root / "reference")


def _surrogate_experiment(shared_dirs, tmp_path, **overrides):
  config = smoke_config(shared_dirs, objective="surrogate_model", **overrides)
  return experiment.build(config, workdir=str(tmp_path), oracle=SpyOracle())


def test_the_surrogate_fits_the_raw_split_and_is_read_back_from_its_cache(
  shared_dirs, tmp_path, monkeypatch
):
  exp = _surrogate_experiment(shared_dirs, tmp_path)
  split = exp.utility
  settings = surrogate_utility.settings(exp.config)
  fitted = surrogate_utility.fit(split, settings, cache_dir=str(tmp_path), progress=False)
  ids = np.arange(len(split.queries))
  loss = float(jnp.mean(fitted.losses(parts.to_unit(split.visuals), ids)))
  # Better than the best input-blind guess: the entropy-matched prior over the answers seen.
  prior = fitted.targets.mean(axis=0)
  blind = float(-(fitted.targets * np.log(np.maximum(prior, 1e-12))).sum(axis=1).mean())
  assert loss < blind - 0.1, (loss, blind)
  assert blind <= math.log(fitted.targets.shape[1]) + 1e-6
  # The second fit of the same split and settings trains nothing and gives the same model.
  files = [f for f in os.listdir(tmp_path) if f.startswith(surrogate_utility.CACHE_PREFIX)]
  assert len(files) == 1
  monkeypatch.setattr(reference_model, "train", lambda *a, **k: pytest.fail("fitted again"))
  again = surrogate_utility.fit(split, settings, cache_dir=str(tmp_path), progress=False)
  for a, b in zip(jax.tree.leaves(fitted.params), jax.tree.leaves(again.params), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Other answers are another split: another key.
  other = experiment.load_split(exp.config, "train")
  other.queries[0] = type(other.queries[0])(other.queries[0].prompt, ("something else",))
  assert surrogate_utility.cache_key(other, settings) != surrogate_utility.cache_key(
    split, settings
  )


def test_bad_surrogate_settings_are_one_line_errors():
  config = smoke_config(("x", "y"))
  config.surrogate.depth = 3
  with pytest.raises(ValueError, match=r"config.surrogate: unknown field\(s\) depth"):
    surrogate_utility.settings(config)


# A weighted sum without preconditioning, so one white-box step can be computed by hand.
_BY_HAND = {
  "optim.scalarization.kind": "weighted_sum",
  "optim.scalarization.weights": (0.75, 0.25),
  "optim.precondition.kind": "none",
  "optim.privacy_grad_scale": 2.0,
}


def _check_one_step_by_hand(exp, utility_losses):
  """Runs one white-box step and asserts θ₁ = θ₀ − a₀ (0.75 ∇L_u + 0.25 · 2 ∇L_Privacy) with
  L_u = mean utility_losses(f_A(x; θ₀), ids); returns (metrics, L_u, ∇L_u, the batch)."""
  state = exp.init_state()
  u_visuals, u_ids, p_visuals, p_labels = exp.batch(0)
  new_state, metrics = exp.train_step()(state, u_visuals, u_ids, p_visuals, p_labels)
  module, x_u = exp.anonymizer, parts.to_unit(u_visuals)
  l_u, g = jax.value_and_grad(
    lambda theta: jnp.mean(utility_losses(module.apply({"params": theta}, x_u), u_ids))
  )(state.params)
  _, h = parts.privacy_value_and_grad(
    module, exp.reviewer, exp.config.privacy_loss, state.params, state.reviewer_vars,
    parts.to_unit(p_visuals), p_labels,
  )  # fmt: skip
  a0 = float(exp.optimizer.learning_rate(state.opt_state))
  expected = jax.tree.map(
    lambda t, gu, gp: t - a0 * (0.75 * gu + 0.25 * 2.0 * gp), state.params, g, h
  )
  for got, want in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(float(metrics["l_surrogate"]), float(l_u), rtol=1e-5)
  assert int(new_state.oracle_samples) == 0
  return metrics, g, (x_u, u_ids)


def test_the_white_box_step_combines_the_exact_gradients(shared_dirs, tmp_path):
  """Weighted sum, no preconditioning: θ₁ = θ₀ − a₀ (λ_u ∇ℓ_s(f_A(x; θ₀)) + λ_p ρ ∇L_Privacy)."""
  exp = _surrogate_experiment(shared_dirs, tmp_path, **_BY_HAND)
  metrics, _, (x_u, u_ids) = _check_one_step_by_hand(exp, exp.surrogate.losses)
  raw = float(jnp.mean(exp.surrogate.losses(x_u, u_ids)))
  np.testing.assert_allclose(float(metrics["l_surrogate_raw"]), raw, rtol=1e-5)


def test_the_surrogate_rows_train_without_the_black_box_and_are_evaluated(shared_dirs, tmp_path):
  config = smoke_config(shared_dirs, total_steps=2, checkpoint_every=2)
  config.references = ("surrogate_model", "bdq")
  spy = SpyOracle()
  train.train_with_references(config, str(tmp_path), oracle=spy)
  assert len(spy.received) == 2  # the two steps of ours; the surrogate rows asked no one
  references = tmp_path / "references"
  # One surrogate, fitted once for both rows, in the folder they share.
  fitted = [f for f in os.listdir(references) if f.startswith(surrogate_utility.CACHE_PREFIX)]
  assert len(fitted) == 1
  for name in ("surrogate_model", "bdq"):
    saved = json.loads((references / name / "config.json").read_text())
    assert saved["objective"] == "surrogate_model" and saved["optim"]["privacy_grad_scale"] == 1.0
    rows = [
      json.loads(line) for line in (references / name / "metrics.jsonl").read_text().splitlines()
    ]
    assert rows[-1]["oracle_samples"] == 0 and np.isfinite(rows[-1]["l_surrogate"])
  bdq = anonymizer.restore(str(references / "bdq"))
  assert bdq.description["model"]["name"] == "bdq" and bdq.step == 2
  start = experiment.build(saved_config(references / "bdq"), oracle=spy).init_state().params
  assert any(
    not np.array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(bdq.params), strict=True)
  )
  names = [r.name for r in evaluation_rows.rows_for(config, str(tmp_path), has_regions=False)]
  assert names[-3:] == ["surrogate_model", "bdq", "ours"]


def saved_config(workdir):
  from anonymax import run_config  # noqa: PLC0415

  return run_config.load(str(workdir))


def test_the_exact_utility_step_descends_the_reference_black_box_s_own_gradient(
  shared_dirs, tmp_path
):
  """objective="exact_utility": g_k = ∇_θ mean_b L(f_A(x_b; θ)) of the reference black box's own
  loss (the upper bound of what the estimate could give), combined as in the white-box step, and
  no answer is asked for."""
  config = smoke_config(shared_dirs, objective="exact_utility", **_BY_HAND)
  exp = experiment.build(config, workdir=str(tmp_path))  # the config's reference black box
  assert not exp.needs_oracle
  _, g, _ = _check_one_step_by_hand(exp, exp.oracle.differentiable_nll(exp.utility.queries))
  assert float(optax.tree.norm(g)) > 0


def test_the_exact_utility_objective_refuses_a_black_box_without_a_gradient(shared_dirs, tmp_path):
  config = smoke_config(shared_dirs, objective="exact_utility")
  exp = experiment.build(config, workdir=str(tmp_path), oracle=SpyOracle())
  with pytest.raises(ValueError, match="needs the reference black box.*'spy'"):
    exp.train_step()
