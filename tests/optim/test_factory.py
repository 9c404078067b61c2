"""Tests for make_optimizer: equals the hand-composed pipeline, config handling, accessors."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from anonymax import optim

PARAMS = {"w": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array([0.1])}
STEPS = [
  # (utility ĝ_k, privacy h_k, (L_MLLM, L_Privacy))
  (
    {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([0.3])},
    {"w": jnp.ones(3), "b": -jnp.ones(1)},
    (2.0, 1.0),
  ),
  (
    {"w": jnp.array([-0.5, 1.0, 1.5]), "b": jnp.array([0.2])},
    {"w": -jnp.ones(3), "b": jnp.ones(1)},
    (0.4, 1.2),
  ),
]


def _assert_tree_close(actual, expected):
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), actual, expected)


def _run_factory(config):
  opt = optim.make_optimizer(config)
  state = opt.init(PARAMS)
  updates_seq = []
  for g, h, losses in STEPS:
    updates, state = opt.update(g, h, state, PARAMS, losses=losses)
    updates_seq.append(updates)
  return opt, updates_seq, state


def test_default_equals_hand_composed_pipeline_for_two_steps():
  _, got, state = _run_factory(None)
  ch = optim.critical_history(5, 0.9, 0.5, 1.0)
  at = optim.tchebycheff((0.5, 0.5), (0.0, 0.0), 1e-3, 0.1)
  lr = optim.spall_learning_rate(0.01, 10.0, 0.602)
  ch_state, at_state = ch.init(PARAMS), at.init(PARAMS)
  for k, ((g, h, losses), updates) in enumerate(zip(STEPS, got)):
    g_util, ch_state = ch.update(g, ch_state)
    d, at_state = at.update((g_util, h), at_state, losses=losses)
    _assert_tree_close(updates, optax.tree.scale(-lr(k), d))
  assert int(state.count) == 2
  np.testing.assert_allclose(state.indicator, ch_state.indicator)
  # Step 1 chose utility (0.5·2.001 > 0.5·1.001), step 2 privacy (0.5·0.401 < 0.5·1.201).
  assert int(state.selected) == 1 == int(at_state.selected)
  assert float(state.indicator) != 0.0


def test_first_update_by_hand():
  _, (u1, _), _ = _run_factory({"history": {"b": 1.0}})
  i1 = math.atan(2 * math.pi) / math.pi
  a1 = 0.01 / 11**0.602
  # i* = utility: d = λ_1(1+I)ĝ + σ(λ_1(1+I)ĝ + λ_2 h) = 0.55(1+I)ĝ + 0.05h.
  g, h, _ = STEPS[0]
  expected = -a1 * (0.55 * (1 + i1) * np.asarray(g["w"]) + 0.05 * np.asarray(h["w"]))
  np.testing.assert_allclose(u1["w"], expected, rtol=1e-5)


@pytest.mark.parametrize(
  "config, utility",
  [
    ({"zo_method": "spsa"}, optax.identity()),
    ({"zo_method": "spsa_gc", "spsa_gc": {"beta": 0.8}}, optim.spsa_gc(0.8)),
    (
      {"history": {"selection": "latest", "memory_size": 1, "adjust_step": False}},
      optim.critical_history(1, 0.9, 0.5, 1.0, selection="latest", adjust_step=False),
    ),
  ],
  ids=["spsa", "spsa_gc", "latest-ablation"],
)
def test_utility_variants_equal_hand_composition(config, utility):
  config = dict(config, scalarization={"kind": "weighted_sum", "weights": (0.3, 0.7)})
  _, got, state = _run_factory(config)
  ws = optim.weighted_sum((0.3, 0.7))
  lr = optim.spall_learning_rate(0.01, 10.0, 0.602)
  u_state = utility.init(PARAMS)
  for k, ((g, h, _), updates) in enumerate(zip(STEPS, got)):
    g_util, u_state = utility.update(g, u_state)
    d, _ = ws.update((g_util, h), ws.init(None))
    _assert_tree_close(updates, optax.tree.scale(-lr(k), d))
  assert int(state.selected) == -1
  if config.get("zo_method") in ("spsa", "spsa_gc"):
    assert float(state.indicator) == 0.0


@pytest.mark.parametrize(
  "kind, hand",
  [
    ("tchebycheff", optim.tchebycheff((0.5, 0.5), (0.0, 0.0), 1e-3)),
    ("smooth_tchebycheff", optim.smooth_tchebycheff((0.5, 0.5), (0.0, 0.0), 0.1)),
  ],
)
def test_scalarization_kinds(kind, hand):
  _, got, _ = _run_factory({"zo_method": "spsa", "scalarization": {"kind": kind}})
  lr = optim.spall_learning_rate(0.01, 10.0, 0.602)
  s = hand.init(None)
  for k, ((g, h, losses), updates) in enumerate(zip(STEPS, got)):
    d, s = hand.update((g, h), s, losses=losses)
    _assert_tree_close(updates, optax.tree.scale(-lr(k), d))


def test_gains_accessors():
  opt = optim.make_optimizer({"gains": {"a": 0.2, "A": 1.0, "alpha": 1.0, "c": 0.3, "gamma": 1.0}})
  state = opt.init(PARAMS)
  np.testing.assert_allclose(opt.perturbation_scale(state), 0.3)  # c_1 = c / 1
  np.testing.assert_allclose(opt.learning_rate(state), 0.1)  # a_1 = 0.2 / (1 + 1)
  _, state = opt.update(*STEPS[0][:2], state, PARAMS, losses=STEPS[0][2])
  np.testing.assert_allclose(opt.perturbation_scale(state), 0.15)  # c_2 = 0.3 / 2
  np.testing.assert_allclose(opt.learning_rate(state), 0.2 / 3)
  schedule = optim.perturbation_schedule({"gains": {"c": 0.3, "gamma": 1.0}})
  np.testing.assert_allclose(schedule(1), 0.15)


def test_config_dict_and_defaults():
  cfg = ml_collections.ConfigDict({"zo_method": "spsa_gc", "spsa_gc": {"beta": 0.5}})
  resolved = optim.resolve_config(cfg)
  assert resolved["spsa_gc"]["beta"] == 0.5
  assert resolved["history"]["memory_size"] == 5
  assert resolved["scalarization"]["kind"] == "augmented_tchebycheff"
  opt = optim.make_optimizer(cfg)
  assert isinstance(opt.init(PARAMS).utility, optim.SpsaGcState)


@pytest.mark.parametrize(
  "config, match",
  [
    ({"zo_method": "adam"}, "config.zo_method"),
    ({"histroy": {}}, "unknown key 'histroy'"),
    ({"history": {"size": 3}}, r"config.history: unknown key 'size'"),
    ({"history": {"gamma": 1.5}}, r"config.history: gamma"),
    ({"gains": {"gamma": -1.0}}, r"config.gains: gamma"),
    ({"gains": {"a": 0.0}}, r"config.gains: a must"),
    ({"spsa_gc": {"beta": 1.0}, "zo_method": "spsa_gc"}, r"config.spsa_gc: beta"),
    ({"scalarization": {"kind": "max"}}, "config.scalarization.kind"),
    ({"scalarization": {"weights": (0.5, 0.3)}}, r"config.scalarization: weights must sum"),
    ({"scalarization": {"weights": (1.0,)}}, "2 entries"),
    ({"scalarization": {"sigma": 0.0}}, "sigma must be > 0 for augmented"),
    ({"history": 5}, "config.history must be a mapping"),
    ({"precondition": {"kind": "rmsprop"}}, "config.precondition.kind"),
    ({"precondition": {"kind": "adam", "b2": 1.0}}, r"config.precondition.b2 must be in"),
    ({"precondition": {"kind": "adam", "eps": 0.0}}, r"config.precondition.eps must be > 0"),
  ],
)
def test_config_errors(config, match):
  with pytest.raises(ValueError, match=match):
    optim.make_optimizer(config)


def test_update_requires_losses():
  opt = optim.make_optimizer(None)
  with pytest.raises(ValueError, match="losses"):
    opt.update(STEPS[0][0], STEPS[0][1], opt.init(PARAMS), PARAMS)


def test_perturbation_matches_zo_method():
  key, tree = jax.random.key(0), {"w": jnp.zeros(500)}
  ours = optim.make_optimizer({"zo_method": "ours"}).perturbation(key, tree)
  np.testing.assert_array_equal(np.abs(ours["w"]), 1.0)
  gc = optim.make_optimizer({"zo_method": "spsa_gc"}).perturbation(key, tree, mask=None)
  magnitudes = np.abs(np.asarray(gc["w"]))
  assert magnitudes.min() >= 0.5 and magnitudes.max() <= 1.0 and magnitudes.std() > 0.1
  assert optim.make_optimizer({"zo_method": "es"}).perturbation is None


def test_adam_preconditioner_by_hand():
  """precondition.kind="adam": d_k → m̂/(√v̂ + eps) per parameter, then −a_k (two steps)."""
  config = {"precondition": {"kind": "adam", "b1": 0.9, "b2": 0.99, "eps": 1e-8}}
  _, got, state = _run_factory(config)
  _, plain, _ = _run_factory(None)  # the same directions without the preconditioner
  lr = optim.spall_learning_rate(0.01, 10.0, 0.602)
  m = v = {k: np.zeros_like(np.asarray(x)) for k, x in PARAMS.items()}
  for k, (p_upd, a_upd) in enumerate(zip(plain, got)):
    t = k + 1
    d = {key: -np.asarray(u) / float(lr(k)) for key, u in p_upd.items()}  # recover d_k
    m = {key: 0.9 * m[key] + 0.1 * d[key] for key in d}
    v = {key: 0.99 * v[key] + 0.01 * d[key] ** 2 for key in d}
    for key in d:
      m_hat, v_hat = m[key] / (1 - 0.9**t), v[key] / (1 - 0.99**t)
      want = -float(lr(k)) * m_hat / (np.sqrt(v_hat) + 1e-8)
      np.testing.assert_allclose(a_upd[key], want, rtol=1e-5)
  # The first step moves every coordinate by a_1 exactly (|m̂/√v̂| = 1), whatever its scale.
  np.testing.assert_allclose(np.abs(got[0]["w"]), float(lr(0)), rtol=1e-5)
  assert int(state.precondition.count) == 2


def test_adam_preconditioner_jits_and_keeps_dtype():
  opt = optim.make_optimizer({"precondition": {"kind": "adam"}})
  params = {"w": jnp.ones(3, jnp.bfloat16)}
  state = opt.init(params)
  g = {"w": jnp.array([1.0, -2.0, 3.0], jnp.bfloat16)}
  update = jax.jit(lambda g, h, s: opt.update(g, h, s, params, losses=(1.0, 0.5)))
  updates, state = update(g, g, state)
  updates, state = update(g, g, state)
  assert updates["w"].dtype == jnp.bfloat16
  assert update._cache_size() == 1
