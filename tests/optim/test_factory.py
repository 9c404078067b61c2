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
    ({"num_samples": 0}, r"config.num_samples must be an integer >= 1"),
    ({"num_samples": 1.5}, r"config.num_samples must be an integer >= 1"),
    ({"num_samples": True}, r"config.num_samples must be an integer >= 1"),
    ({"num_samples": "2"}, r"config.num_samples must be an integer >= 1"),
    ({"privacy_grad_scale": 0.0}, r"config.privacy_grad_scale must be a finite number > 0"),
    ({"privacy_grad_scale": -1.0}, r"config.privacy_grad_scale"),
    ({"privacy_grad_scale": float("nan")}, r"config.privacy_grad_scale"),
    ({"privacy_grad_scale": "10"}, r"config.privacy_grad_scale"),
    ({"perturb": "dec("}, r"config.perturb: mask: invalid regular expression"),
    ({"perturb": 3}, r"config.perturb must be a regex"),
  ],
)
def test_config_errors(config, match):
  with pytest.raises(ValueError, match=match):
    optim.make_optimizer(config)


def test_update_requires_losses():
  opt = optim.make_optimizer(None)
  with pytest.raises(ValueError, match="losses"):
    opt.update(STEPS[0][0], STEPS[0][1], opt.init(PARAMS), PARAMS)


@pytest.mark.parametrize(
  "zo_method, draw",
  [
    ("ours", optim.rademacher_like),
    ("spsa", optim.rademacher_like),
    ("spsa_gc", optim.uniform_rademacher_like),
    ("es", optim.normal_like),
  ],
)
def test_estimator_matches_zo_method(zo_method, draw):
  opt = optim.make_optimizer({"zo_method": zo_method, "num_samples": 2, "perturb": "^w$"})
  est = opt.estimator
  assert isinstance(est, optim.ZOEstimator) and est.num_evaluations == 4
  key, tree = jax.random.key(0), {"w": jnp.zeros(500), "b": jnp.ones(3)}
  sets, asked = est.ask(key, tree, est.init(tree), scale=1.0)
  # θ_w = 0, s = 1: the sets are ±Δ_i with Δ_i = draw(split(key, 2)[i], θ, mask="^w$").
  for i, k in enumerate(jax.random.split(key, 2)):
    delta = draw(k, tree, mask="^w$")
    np.testing.assert_array_equal(sets["w"][i], delta["w"])
    np.testing.assert_array_equal(sets["w"][2 + i], -delta["w"])
  np.testing.assert_array_equal(sets["b"], 1.0)  # outside the perturb mask: θ itself
  g, _ = est.tell(est.init(tree), jnp.array([1.0, 2.0, 0.5, 1.0]), asked)
  np.testing.assert_array_equal(g["b"], 0.0)
  assert float(jnp.abs(g["w"]).min()) > 0


def test_zo_methods_and_the_optimizer_fields():
  assert optim.ZO_METHODS == ("ours", "spsa", "spsa_gc", "es", "cma_es", "reinforce", "guided")
  assert optim.MultiObjectiveOptimizer._fields == (
    "init",
    "update",
    "perturbation_scale",
    "learning_rate",
    "estimator",
    "utility",
    "scalarization",
    "precondition",
    "privacy_grad_scale",
    "next_state",
  )
  cfg = optim.DEFAULT_CONFIG
  assert (cfg["num_samples"], cfg["perturb"], cfg["privacy_grad_scale"]) == (1, "", 1.0)
  assert optim.make_optimizer(None).estimator.num_evaluations == 2


def test_accepts_the_whole_trainer_section_as_a_config_dict():
  section = ml_collections.ConfigDict()
  section.zo_method = "es"
  section.num_samples = 3
  section.privacy_grad_scale = 300.0
  section.perturb = "^(up_0|mask_out|fill)"
  section.history = dict(memory_size=5, decay=0.9, gamma=0.5, b=1.0, selection="critical")
  section.spsa_gc = dict(beta=0.9)
  section.scalarization = dict(kind="augmented_tchebycheff", weights=(0.97, 0.03))
  section.gains = dict(a=0.02, A=10.0, alpha=0.602, c=1e-2, gamma=0.101)
  section.precondition = dict(kind="adam", b1=0.9, b2=0.999, eps=1e-8)
  opt = optim.make_optimizer(section)
  assert opt.estimator.num_evaluations == 6
  params = {"mask_out": jnp.zeros(2), "enc": jnp.ones(2)}
  sets, _ = opt.estimator.ask(jax.random.key(0), params, opt.estimator.init(params), scale=0.1)
  np.testing.assert_array_equal(sets["enc"], 1.0)  # not matched by the perturb regex
  assert float(jnp.abs(sets["mask_out"]).min()) > 0


def test_privacy_grad_scale_multiplies_h():
  base = {"scalarization": {"kind": "weighted_sum", "weights": (0.3, 0.7)}, "zo_method": "spsa"}
  g, h, losses = STEPS[0]
  scaled_h = jax.tree.map(lambda x: 4.0 * x, h)

  def first_update(config, h):
    opt = optim.make_optimizer(config)
    return opt.update(g, h, opt.init(PARAMS), PARAMS, losses=losses)[0]

  got = first_update(dict(base, privacy_grad_scale=4.0), h)
  _assert_tree_close(got, first_update(base, scaled_h))
  plain = first_update(base, h)
  assert not np.allclose(got["w"], plain["w"])
  # By hand: −a_1 (0.3 ĝ + 0.7·4 h).
  a1 = 0.01 / 11**0.602
  np.testing.assert_allclose(got["w"], -a1 * (0.3 * g["w"] + 2.8 * h["w"]), rtol=1e-5)


def test_privacy_grad_scale_leaves_the_selection_to_the_raw_losses():
  # Tchebycheff picks i* from the losses, not from h: scaling h changes the step, not i*.
  opt1 = optim.make_optimizer({"privacy_grad_scale": 1.0})
  opt9 = optim.make_optimizer({"privacy_grad_scale": 9.0})
  g, h, losses = STEPS[1]  # privacy is selected at this step
  u1, s1 = opt1.update(g, h, opt1.init(PARAMS), PARAMS, losses=losses)
  u9, s9 = opt9.update(g, h, opt9.init(PARAMS), PARAMS, losses=losses)
  assert int(s1.selected) == int(s9.selected) == 1
  assert not np.allclose(u1["w"], u9["w"])


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


def test_adam_preconditioner_jits_and_keeps_dtype(count_compilations):
  opt = optim.make_optimizer({"precondition": {"kind": "adam"}})
  params = {"w": jnp.ones(3, jnp.bfloat16)}
  state = opt.init(params)
  g = {"w": jnp.array([1.0, -2.0, 3.0], jnp.bfloat16)}
  update = jax.jit(lambda g, h, s: opt.update(g, h, s, params, losses=(1.0, 0.5)))
  with count_compilations() as first:
    updates, state = update(g, g, state)
  with count_compilations() as second:
    updates, state = update(g, g, state)
  assert updates["w"].dtype == jnp.bfloat16
  assert len(first) > 0 and second == []


@pytest.mark.parametrize("zo_method", ["ours", "spsa_gc"])
def test_update_is_its_stages_in_order(zo_method):
  """`update` = utility stage (Eqs. 8-10) → ρ·h → scalarization (Eq. 11) → precondition → −a_k,
  as code writing the step out equation by equation runs it (bit for bit)."""
  opt = optim.make_optimizer(
    {"zo_method": zo_method, "privacy_grad_scale": 3.0, "precondition": {"kind": "adam"}}
  )
  theta = jnp.linspace(-1.0, 1.0, 6)
  state = opt.init(theta)
  for k in range(3):
    g = jnp.sin(theta * (k + 1))
    h = jnp.cos(theta + k)
    losses = (jnp.float32(0.9 - 0.1 * k), jnp.float32(-0.2))
    updates, new_state = opt.update(g, h, state, theta, losses=losses)
    g_u, u_state = opt.utility.update(g, state.utility, theta)
    d, s_state = opt.scalarization.update(
      (g_u, opt.privacy_grad_scale * h), state.scalarization, theta, losses=losses
    )
    d, p_state = opt.precondition.update(d, state.precondition, theta)
    np.testing.assert_array_equal(updates, -opt.learning_rate(state) * d)
    staged = opt.next_state(state, u_state, s_state, p_state)
    for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(staged)):
      np.testing.assert_array_equal(a, b)
    assert int(new_state.count) == k + 1
    state, theta = new_state, theta + updates
