"""The paper's whole optimizer, assembled from a config (Eqs. 7-12).

The config's ``zo_method`` chooses, in one table, the zeroth-order estimator that turns the
black box's 2q losses into ĝ_k (``optimizer.estimator``, ask/tell, see
:mod:`anonymax.optim.estimators`) and the transform applied to ĝ_k:

  zo_method   estimator    transform of ĝ_k
  "ours"      "spsa"       critical history (Eqs. 8-10)
  "spsa"      "spsa"       none
  "spsa_gc"   "spsa_gc"    SPSA-GC momentum (BlackVIP)
  "es"        "es"         none
  "cma_es"    "cma_es"     none (evosax's CMA-ES; ĝ_k is its mean shift over s², see cma_es.py)
  "reinforce" "reinforce"  none (REINFORCE with a running-mean baseline, see reinforce.py)
  "guided"    "guided"     none (Guided ES over the subspace of recent estimates, see guided.py)

One step, given the utility estimate ĝ_k (from the estimator, through the black box), the
privacy gradient h_k (exact, through the reviewer) and the losses (L_MLLM, L_Privacy) at θ_k:

  G_utility = (1 + I_k)·g̃_k           critical history, Eqs. 8-10 (zo_method="ours"),
            = ĝ_k                      plain SPSA or ES (zo_method="spsa" or "es"),
            = ĝ_k + β m_k              SPSA-GC (zo_method="spsa_gc");
  G_privacy = ρ h_k                    ρ = privacy_grad_scale (1 in Eq. 11);
  d_k = λ_{i*} G_{i*} + σ Σ_i λ_i G_i  augmented Tchebycheff, Eq. 11 (or another scalarization);
  θ_{k+1} = θ_k − a_k d_k              Eq. 12, a_k = a / (A + k)^α.

An SPSA estimate's norm is about √D times that of the gradient it estimates, so ρ > 1 brings
the exact h_k to a comparable size; the selection i* still uses the raw losses.

Optionally (``precondition.kind="adam"``, not in the paper) d_k is first rescaled per parameter by
Adam's moment estimates (Kingma & Ba 2015; with SPSA directions this is ZO-AdaMM, Chen et al.,
NeurIPS 2019): m ← b1 m + (1 − b1) d_k, v ← b2 v + (1 − b2) d_k², d_k ← m̂ / (√v̂ + eps). Step
sizes then no longer depend on each parameter group's gradient scale, which differs by orders of
magnitude between, e.g., a mask head and the convolutions below it.

Config (a dict or ``ml_collections.ConfigDict``; missing keys take these defaults, unknown keys
are an error)::

  zo_method: "ours"          # "ours" | "spsa" | "spsa_gc" | "es" | "cma_es" | "reinforce"
                             # | "guided"
  num_samples: 1             # q ≥ 1: perturbation pairs per step (2q black-box evaluations)
  perturb: ""                # regex on '/'-joined parameter paths to perturb ("": all of them)
  privacy_grad_scale: 1.0    # ρ > 0, multiplies h_k before the scalarization
  history: {memory_size: 5, decay: 0.9, gamma: 0.5, b: 1.0, selection: "critical",
            adjust_direction: True, adjust_step: True}
  spsa_gc: {beta: 0.9}
  cma_es: {covariance: "diagonal"}    # | "full"
  reinforce: {baseline_decay: 0.9}
  guided: {source: "history", subspace_dim: 4, alpha: None, alpha_min: 0.02,
           agreement_decay: 0.9, history_decay: 0.9, switch_at: 3.0}   # alpha None: adaptive
  scalarization: {kind: "augmented_tchebycheff",  # | "tchebycheff" | "weighted_sum"
                                                  # | "smooth_tchebycheff"
                  weights: (0.5, 0.5), ideal: (0.0, 0.0), eps: 1e-3, sigma: 0.1, mu: 0.1,
                  track_ideal: False}
  gains: {a: 0.01, A: 10.0, alpha: 0.602, c: 0.01, gamma: 0.101}
  precondition: {kind: "none", b1: 0.9, b2: 0.999, eps: 1e-8}   # kind: "none" | "adam"

References:
  Hui et al., "When Visual Privacy Protection Meets Multimodal Large Language Models",
  IJCV 2026 (Eqs. 7-12).
  Spall, IEEE Trans. Automatic Control, 1992. Oh et al., CVPR 2023 (BlackVIP).
  Lin et al., ICML 2024 (smooth Tchebycheff).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from anonymax.optim.ask_tell import check_mask
from anonymax.optim.critical_history import critical_history
from anonymax.optim.estimators import ZOEstimator, zo_estimator
from anonymax.optim.scalarization import smooth_tchebycheff, tchebycheff, weighted_sum
from anonymax.optim.spsa import spall_learning_rate, spall_perturbation
from anonymax.optim.spsa_gc import spsa_gc

PyTree = Any

DEFAULT_CONFIG: dict[str, Any] = {
  "zo_method": "ours",
  "num_samples": 1,
  "perturb": "",
  "privacy_grad_scale": 1.0,
  "history": {
    "memory_size": 5,
    "decay": 0.9,
    "gamma": 0.5,
    "b": 1.0,
    "selection": "critical",
    "adjust_direction": True,
    "adjust_step": True,
  },
  "spsa_gc": {"beta": 0.9},
  "cma_es": {"covariance": "diagonal"},
  "reinforce": {"baseline_decay": 0.9},
  "guided": {
    "source": "history",
    "subspace_dim": 4,
    "alpha": None,
    "alpha_min": 0.02,
    "agreement_decay": 0.9,
    "history_decay": 0.9,
    "switch_at": 3.0,
  },
  "scalarization": {
    "kind": "augmented_tchebycheff",
    "weights": (0.5, 0.5),
    "ideal": (0.0, 0.0),
    "eps": 1e-3,
    "sigma": 0.1,
    "mu": 0.1,
    "track_ideal": False,
  },
  "gains": {"a": 0.01, "A": 10.0, "alpha": 0.602, "c": 0.01, "gamma": 0.101},
  "precondition": {"kind": "none", "b1": 0.9, "b2": 0.999, "eps": 1e-8},
}
PRECONDITIONERS = ("none", "adam")
SCALARIZATIONS = ("augmented_tchebycheff", "tchebycheff", "weighted_sum", "smooth_tchebycheff")


class MultiObjectiveState(NamedTuple):
  """State of the optimizer built by :func:`make_optimizer`; read the step's status from it."""

  utility: Any  # state of the utility transform (CriticalHistoryState, SpsaGcState, EmptyState).
  scalarization: Any  # TchebycheffState, SmoothTchebycheffState or EmptyState.
  precondition: Any  # optax.ScaleByAdamState for precondition.kind="adam", else EmptyState.
  count: jax.Array  # [] int32: updates done; the coming step is k = count + 1.
  indicator: jax.Array  # [] float32: I_k of the last update (0 unless zo_method="ours").
  selected: jax.Array  # [] int32: objective chosen by the last update (0 utility, 1 privacy;
  #   argmax of the softmax weights for smooth Tchebycheff; −1 for weighted sum / before step 1).


class MultiObjectiveOptimizer(NamedTuple):
  """The two-objective optimizer: ``init``, ``update`` and the gains for the coming step.

  Attributes:
    init: ``params -> MultiObjectiveState``.
    update: ``(utility_grad, privacy_grad, state, params=None, *, losses) -> (updates, state)``;
      ``updates`` already include −a_k (apply with ``optax.apply_updates``).
    perturbation_scale: ``state -> c_k``, the scale to pass to ``estimator.ask`` for the coming
      step (ES uses it as σ).
    learning_rate: ``state -> a_k`` for the coming step.
    estimator: the :class:`~anonymax.optim.estimators.ZOEstimator` of ``zo_method`` (with
      ``num_samples`` pairs and the ``perturb`` mask) that gives ``utility_grad`` = ĝ_k: ask for
      the 2q parameter sets, have the black box score them, tell the 2q losses.
    utility, scalarization, precondition: the stages ``update`` chains, for code that writes
      the step out equation by equation: ĝ_k → G_utility (Eqs. 8-10), (G_utility, ρ h_k) → d_k
      (Eq. 11), d_k → its Adam-scaled form (identity unless ``precondition.kind="adam"``).
    privacy_grad_scale: ρ, the factor ``update`` applies to h_k.
    next_state: ``(state, utility_state, scalarization_state, precondition_state) ->`` the
      ``MultiObjectiveState`` after a step (count + 1, I_k, i*), as ``update`` returns it.

  Example:
    >>> opt = make_optimizer({"zo_method": "spsa_gc", "num_samples": 3, "perturb": "^dec/"})
    >>> params = {"dec": jnp.zeros(2), "enc": jnp.zeros(4)}
    >>> sets, asked = opt.estimator.ask(
    ...     jax.random.key(0), params, opt.estimator.init(params),
    ...     scale=opt.perturbation_scale(opt.init(params)))
    >>> opt.estimator.num_evaluations, sets["dec"].shape, bool(jnp.all(sets["enc"] == 0))
    (6, (6, 2), True)
  """

  init: Callable[[PyTree], MultiObjectiveState]
  update: Callable[..., tuple[PyTree, MultiObjectiveState]]
  perturbation_scale: Callable[[MultiObjectiveState], jax.Array]
  learning_rate: Callable[[MultiObjectiveState], jax.Array]
  estimator: ZOEstimator
  utility: optax.GradientTransformation
  scalarization: optax.GradientTransformationExtraArgs
  precondition: optax.GradientTransformation
  privacy_grad_scale: float
  next_state: Callable[..., MultiObjectiveState]


def resolve_config(config: Mapping[str, Any] | Any | None) -> dict[str, Any]:
  """Returns ``config`` merged over :data:`DEFAULT_CONFIG` as a plain dict.

  Args:
    config: a dict, an ``ml_collections.ConfigDict`` or None (all defaults).

  Returns:
    The complete config.

  Raises:
    ValueError: naming an unknown key or a section that is not a mapping.
  """
  if config is None:
    config = {}
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  if not isinstance(config, Mapping):
    raise ValueError(f"config must be a dict or ConfigDict, got {type(config).__name__}")
  merged = copy.deepcopy(DEFAULT_CONFIG)
  for key, value in config.items():
    if key not in merged:
      raise ValueError(f"config: unknown key {key!r}; expected one of {sorted(merged)}")
    if isinstance(merged[key], dict):
      if hasattr(value, "to_dict"):
        value = value.to_dict()
      if not isinstance(value, Mapping):
        raise ValueError(f"config.{key} must be a mapping, got {type(value).__name__}")
      for sub_key, sub_value in value.items():
        if sub_key not in merged[key]:
          raise ValueError(
            f"config.{key}: unknown key {sub_key!r}; expected one of {sorted(merged[key])}"
          )
        merged[key][sub_key] = sub_value
    else:
      merged[key] = value
  return merged


def _section_errors(section: str, build: Callable[[], Any]) -> Any:
  # Hyperparameter names repeat across sections (gamma, c, ...): say which one is wrong.
  try:
    return build()
  except ValueError as e:
    raise ValueError(f"config.{section}: {e}") from e


def perturbation_schedule(config: Mapping[str, Any] | Any | None = None) -> optax.Schedule:
  """c_k = c / k^γ (``config.gains``) as an ``optax.Schedule`` of the 0-based step count."""
  g = resolve_config(config)["gains"]
  return _section_errors("gains", lambda: spall_perturbation(g["c"], g["gamma"]))


def learning_rate_schedule(config: Mapping[str, Any] | Any | None = None) -> optax.Schedule:
  """a_k = a / (A + k)^α (``config.gains``; BlackVIP's a/(k + o)^α with o = A)."""
  g = resolve_config(config)["gains"]
  return _section_errors("gains", lambda: spall_learning_rate(g["a"], g["A"], g["alpha"]))


def _history_transform(cfg: dict[str, Any]) -> optax.GradientTransformation:
  h = cfg["history"]
  return _section_errors(
    "history",
    lambda: critical_history(
      h["memory_size"],
      h["decay"],
      h["gamma"],
      h["b"],
      selection=h["selection"],
      adjust_direction=bool(h["adjust_direction"]),
      adjust_step=bool(h["adjust_step"]),
    ),
  )


def _spsa_gc_transform(cfg: dict[str, Any]) -> optax.GradientTransformation:
  return _section_errors("spsa_gc", lambda: spsa_gc(cfg["spsa_gc"]["beta"]))


def _no_transform(cfg: dict[str, Any]) -> optax.GradientTransformation:
  del cfg
  return optax.identity()


class _ZoMethod(NamedTuple):
  estimator: str  # the name in anonymax.optim.estimators.ZO_ESTIMATORS that gives ĝ_k.
  utility: Callable[[dict[str, Any]], optax.GradientTransformation]  # config -> transform of ĝ_k.
  section: str | None = None  # the config section holding the estimator's own hyperparameters.


# The one place a zeroth-order method is chosen: its estimator and what is done with ĝ_k.
_ZO_METHOD_TABLE: dict[str, _ZoMethod] = {
  "ours": _ZoMethod("spsa", _history_transform),
  "spsa": _ZoMethod("spsa", _no_transform),
  "spsa_gc": _ZoMethod("spsa_gc", _spsa_gc_transform),
  "es": _ZoMethod("es", _no_transform),
  "cma_es": _ZoMethod("cma_es", _no_transform, "cma_es"),
  "reinforce": _ZoMethod("reinforce", _no_transform, "reinforce"),
  "guided": _ZoMethod("guided", _no_transform, "guided"),
}
ZO_METHODS: tuple[str, ...] = tuple(_ZO_METHOD_TABLE)


def _zo_method(cfg: dict[str, Any]) -> _ZoMethod:
  method = cfg["zo_method"]
  if method not in _ZO_METHOD_TABLE:
    raise ValueError(f"config.zo_method must be one of {ZO_METHODS}, got {method!r}")
  return _ZO_METHOD_TABLE[method]


def _estimator(cfg: dict[str, Any], method: _ZoMethod) -> ZOEstimator:
  q = cfg["num_samples"]
  if isinstance(q, bool) or not isinstance(q, numbers.Integral) or q < 1:
    raise ValueError(f"config.num_samples must be an integer >= 1, got {q!r}")
  perturb = cfg["perturb"]
  if perturb is not None and not isinstance(perturb, str):
    raise ValueError(
      f"config.perturb must be a regex on parameter paths ('' for all), got {perturb!r}"
    )
  _section_errors("perturb", lambda: check_mask(perturb or None))  # a bad regex is perturb's
  hyper = dict(cfg[method.section]) if method.section else {}
  return _section_errors(
    method.section or "perturb",
    lambda: zo_estimator(method.estimator, num_samples=int(q), mask=perturb or None, **hyper),
  )


def _privacy_grad_scale(cfg: dict[str, Any]) -> float:
  scale = cfg["privacy_grad_scale"]
  if (
    isinstance(scale, bool)
    or not isinstance(scale, numbers.Real)
    or not math.isfinite(scale)
    or not scale > 0
  ):
    raise ValueError(f"config.privacy_grad_scale must be a finite number > 0, got {scale!r}")
  return float(scale)


def _precondition_transform(cfg: dict[str, Any]) -> optax.GradientTransformation:
  p = cfg["precondition"]
  if p["kind"] not in PRECONDITIONERS:
    raise ValueError(
      f"config.precondition.kind must be one of {PRECONDITIONERS}, got {p['kind']!r}"
    )
  if p["kind"] == "none":
    return optax.identity()
  for key in ("b1", "b2"):
    if not 0.0 <= p[key] < 1.0:
      raise ValueError(f"config.precondition.{key} must be in [0, 1), got {p[key]!r}")
  if not p["eps"] > 0:
    raise ValueError(f"config.precondition.eps must be > 0, got {p['eps']!r}")
  return optax.scale_by_adam(b1=p["b1"], b2=p["b2"], eps=p["eps"])


def _scalarization_transform(cfg: dict[str, Any]) -> optax.GradientTransformationExtraArgs:
  s = cfg["scalarization"]
  kind = s["kind"]
  if kind not in SCALARIZATIONS:
    raise ValueError(f"config.scalarization.kind must be one of {SCALARIZATIONS}, got {kind!r}")
  weights = tuple(s["weights"])
  if len(weights) != 2:
    raise ValueError(
      f"config.scalarization.weights must have 2 entries (utility, privacy), got {weights!r}"
    )
  ideal = None if s["ideal"] is None else tuple(s["ideal"])
  if kind == "augmented_tchebycheff" and not s["sigma"] > 0:
    raise ValueError(
      f"config.scalarization.sigma must be > 0 for augmented_tchebycheff, got {s['sigma']!r}"
    )

  def build():
    if kind == "weighted_sum":
      return weighted_sum(weights)
    if kind == "smooth_tchebycheff":
      return smooth_tchebycheff(weights, ideal, s["mu"])
    sigma = s["sigma"] if kind == "augmented_tchebycheff" else 0.0
    return tchebycheff(weights, ideal, s["eps"], sigma, track_ideal=bool(s["track_ideal"]))

  return _section_errors("scalarization", build)


def make_optimizer(config: Mapping[str, Any] | Any | None = None) -> MultiObjectiveOptimizer:
  """Builds the utility/privacy optimizer of the paper (or an ablation/baseline) from a config.

  Args:
    config: see the module docstring; None gives the paper's method with default values.

  Returns:
    A :class:`MultiObjectiveOptimizer`. The last I_k, the selected objective and the step count
    are ``state.indicator``, ``state.selected`` and ``state.count``.

  Raises:
    ValueError: naming the config field that is unknown or out of range.

  Example:
    >>> opt = make_optimizer({"history": {"memory_size": 3}, "num_samples": 2})
    >>> params = {"w": jnp.zeros(2)}
    >>> state, est = opt.init(params), opt.estimator
    >>> black_box = lambda p: jnp.sum((p["w"] - 1.0) ** 2)  # stands in for the MLLM loss
    >>> sets, asked = est.ask(jax.random.key(0), params, est.init(params),
    ...     scale=opt.perturbation_scale(state))
    >>> losses = jax.vmap(black_box)(sets)  # the 2q = 4 answers of the black box
    >>> g_hat, _ = est.tell(est.init(params), losses, asked)
    >>> l_mllm = jnp.mean(losses)
    >>> l_privacy, h = jax.value_and_grad(lambda p: jnp.sum(p["w"] ** 2))(params)
    >>> updates, state = opt.update(g_hat, h, state, params, losses=(l_mllm, l_privacy))
    >>> params = optax.apply_updates(params, updates)
    >>> int(state.count), int(state.selected)  # L_MLLM ≈ 2 is further from z* than L_Privacy = 0
    (1, 0)
  """
  cfg = resolve_config(config)
  method = _zo_method(cfg)
  utility_tx = method.utility(cfg)
  estimator = _estimator(cfg, method)
  privacy_scale = _privacy_grad_scale(cfg)
  scalarization_tx = _scalarization_transform(cfg)
  precondition_tx = _precondition_transform(cfg)
  lr = learning_rate_schedule(cfg)
  c_schedule = perturbation_schedule(cfg)
  with_indicator = cfg["zo_method"] == "ours"

  def init_fn(params):
    return MultiObjectiveState(
      utility=utility_tx.init(params),
      scalarization=scalarization_tx.init(params),
      precondition=precondition_tx.init(params),
      count=jnp.zeros((), jnp.int32),
      indicator=jnp.zeros((), jnp.float32),
      selected=jnp.full((), -1, jnp.int32),
    )

  def next_state(state, utility_state, scalarization_state, precondition_state):
    indicator = utility_state.indicator if with_indicator else jnp.zeros((), jnp.float32)
    selected = getattr(scalarization_state, "selected", jnp.full((), -1, jnp.int32))
    return MultiObjectiveState(
      utility=utility_state,
      scalarization=scalarization_state,
      precondition=precondition_state,
      count=optax.safe_increment(state.count),
      indicator=indicator,
      selected=selected,
    )

  def update_fn(utility_grad, privacy_grad, state, params=None, *, losses=None, **extra_args):
    if losses is None:
      raise ValueError("losses=(L_MLLM, L_Privacy) must be passed as a keyword argument")
    g_utility, utility_state = utility_tx.update(utility_grad, state.utility, params)
    if privacy_scale != 1.0:  # Eq. 11 as written is 1.0: leave h_k untouched then
      privacy_grad = jax.tree.map(lambda x: (privacy_scale * x).astype(x.dtype), privacy_grad)
    direction, scalarization_state = scalarization_tx.update(
      (g_utility, privacy_grad), state.scalarization, params, losses=losses, **extra_args
    )
    direction, precondition_state = precondition_tx.update(direction, state.precondition, params)
    a_k = lr(state.count)
    updates = jax.tree.map(lambda d: (-a_k * d).astype(d.dtype), direction)
    new_state = next_state(state, utility_state, scalarization_state, precondition_state)
    return updates, new_state

  return MultiObjectiveOptimizer(
    init=init_fn,
    update=update_fn,
    perturbation_scale=lambda state: c_schedule(state.count),
    learning_rate=lambda state: lr(state.count),
    estimator=estimator,
    utility=utility_tx,
    scalarization=scalarization_tx,
    precondition=precondition_tx,
    privacy_grad_scale=privacy_scale,
    next_state=next_state,
  )
