"""Tests for anonymax.loss_landscape (the paper's Fig. 3): real optimizers, honest figure."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anonymax import loss_landscape as ll
from anonymax import optim

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def short():
  return ll.trajectories(steps=6, seed=3, a=0.1, c=0.1, noise=0.05)


@pytest.fixture(scope="module")
def noiseless():
  return ll.trajectories(steps=150, seed=0, noise=0.0, radius=0.5)


def test_both_paths_start_at_the_same_point_and_have_steps_plus_one_points(short):
  assert set(short["paths"]) == {"spsa", "ours"}
  for method in ("spsa", "ours"):
    path, losses = short["paths"][method], short["losses"][method]
    assert path.shape == (7, 2) and losses.shape == (7,)
    np.testing.assert_array_equal(path[0], np.asarray(ll.START, np.float32))
    np.testing.assert_allclose(losses, np.asarray(ll.loss(path)), rtol=1e-6)
  np.testing.assert_array_equal(short["target"], np.asarray(ll.TARGET, np.float32))
  # The two methods really differ after the first step (the history changes the update).
  assert not np.allclose(short["paths"]["spsa"][1:], short["paths"]["ours"][1:])


def test_the_target_is_the_minimiser_of_the_loss():
  target = jnp.asarray(ll.TARGET)
  assert float(ll.loss(target)) == 0.0
  assert float(jnp.linalg.norm(jax.grad(ll.loss)(target))) == 0.0
  for d in ([0.1, 0.0], [0.0, -0.1], [0.05, 0.05]):
    assert float(ll.loss(target + jnp.asarray(d))) > 0


def test_both_methods_descend_without_noise(noiseless):
  for method, losses in noiseless["losses"].items():
    assert losses[-1] < 0.01 * losses[0], (method, losses[0], losses[-1])


def test_same_seed_same_paths_other_seed_other_paths(short):
  again = ll.trajectories(steps=6, seed=3, a=0.1, c=0.1, noise=0.05)
  other = ll.trajectories(steps=6, seed=4, a=0.1, c=0.1, noise=0.05)
  for method in ("spsa", "ours"):
    np.testing.assert_array_equal(again["paths"][method], short["paths"][method])
    assert not np.allclose(other["paths"][method], short["paths"][method])


def test_spsa_path_matches_a_hand_computed_spsa_from_the_public_functions(short):
  # The module's documented protocol, recomputed from anonymax.optim.spsa's functions: key_k =
  # fold_in(key(seed), k) split into (Δ key, noise key); the estimator draws Δ from split(·, 1)[0].
  s, gains = short["settings"], optim.DEFAULT_CONFIG["gains"]
  lr = optim.spall_learning_rate(s["a"], gains["A"], gains["alpha"])
  c_schedule = optim.spall_perturbation(s["c"], gains["gamma"])
  theta = jnp.asarray(ll.START, jnp.float32)
  for k in range(2):
    key_delta, key_noise = jax.random.split(jax.random.fold_in(jax.random.key(s["seed"]), k))
    delta = optim.rademacher_like(jax.random.split(key_delta, 1)[0], theta)
    plus, minus = optim.perturb(theta, delta, c_schedule(k))
    eps = s["noise"] * jax.random.normal(key_noise, (2,))
    g_hat = optim.spsa_estimate(
      ll.loss(plus) + eps[0], ll.loss(minus) + eps[1], delta, c_schedule(k)
    )
    theta = theta - lr(k) * g_hat
    np.testing.assert_allclose(short["paths"]["spsa"][k + 1], theta, rtol=1e-5, atol=1e-6)


def test_first_step_of_ours_is_spsa_scaled_by_one_plus_the_indicator(short):
  # Empty history: g̃_1 = ĝ_1, cos φ = 1, so Eq. 10 gives (1 + (b/π)·arctan(2π))·ĝ_1.
  b = optim.DEFAULT_CONFIG["history"]["b"]
  scale = 1 + (b / math.pi) * math.atan(2 * math.pi)
  start = short["start"]
  spsa_step = short["paths"]["spsa"][1] - start
  ours_step = short["paths"]["ours"][1] - start
  np.testing.assert_allclose(ours_step, scale * spsa_step, rtol=1e-5)


def test_steps_to_target_is_the_first_step_within_the_radius(noiseless):
  far = ll.trajectories(steps=3, seed=0, radius=100.0)
  assert far["steps_to_target"] == {"spsa": 0, "ours": 0}
  tiny = ll.trajectories(steps=3, seed=0, radius=1e-6)
  assert tiny["steps_to_target"] == {"spsa": None, "ours": None}
  for method, path in noiseless["paths"].items():
    dist = np.linalg.norm(path - noiseless["target"], axis=1)
    k = noiseless["steps_to_target"][method]
    assert k is not None, method
    assert dist[k] <= 0.5 and np.all(dist[:k] > 0.5), (method, k)


def test_main_writes_a_png_and_prints_both_methods(tmp_path, capsys):
  out = tmp_path / "landscape.png"
  assert ll.main([f"--out={out}", "--steps=20", "--seed=1"]) == 0
  data = out.read_bytes()
  assert data[:8] == PNG_SIGNATURE and len(data) > 10_000
  printed = capsys.readouterr().out.splitlines()
  assert printed[0].startswith("SPSA (Eq. 7): ")
  assert printed[1].startswith("ours: SPSA + critical history (Eqs. 8-10): ")
  assert all("of the target" in line for line in printed[:2])


@pytest.mark.parametrize(
  "argv, flag",
  [(["--steps=0"], "--steps"), (["--noise=-1"], "--noise"), (["--a=0"], "--a"),
   (["--c=nan"], "--c"), (["--steps=x"], "--steps")],
)  # fmt: skip
def test_bad_arguments_are_one_line_errors_naming_the_flag(tmp_path, capsys, argv, flag):
  out = tmp_path / "x.png"
  with pytest.raises(SystemExit) as e:
    ll.main([f"--out={out}", *argv])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert flag in err.splitlines()[-1] and "Traceback" not in err
  assert not out.exists()


@pytest.mark.parametrize(
  "kwargs", [{"steps": 0}, {"noise": -0.1}, {"a": 0.0}, {"c": -1.0}, {"radius": math.inf}]
)
def test_trajectories_refuses_out_of_range_arguments(kwargs):
  name = next(iter(kwargs))
  with pytest.raises(ValueError, match=name):
    ll.trajectories(**kwargs)
