"""An online surrogate of the black box's utility loss, whose gradient guides the estimator.

Every oracle answer the trainer already paid for is a labelled example of the black box's
utility loss on an anonymized input. A small CNN s_φ(x) (`LossSurrogate`) learns from them during
the run, with no extra call: at step k the 2q perturbed anonymizations of the utility batch,

  x⁺_ib = f_A(x_b; θ_k + c_k Δ_i),   x⁻_ib = f_A(x_b; θ_k − c_k Δ_i),   L^±_ib their losses,

give one Adam step on

  ℓ(φ) = w_d · mean_{(i,b) scored} [ (s_φ(x⁺_ib) − s_φ(x⁻_ib) − (L⁺_ib − L⁻_ib)) / (2 c_k) ]²
         + w_l · mean_{(i,b) scored, ±} (s_φ(x^±_ib) − L^±_ib)²,

the first term the directional derivatives the pairs measure (what a guide needs; a sample's
own offset, e.g. a hard question, cancels in the difference), the second the loss levels
(w_d = `diff_weight`, w_l = `level_weight`), which tie the pairs of different steps together.
With a replay memory of R steps (`replay`), the means run over this step's pairs and those of
the R steps before it (each with its own c_k), so φ is fitted on the answers of R + 1 steps
rather than forgetting all but the newest; `fit_steps` Adam steps are taken on them. The memory
holds R · 2q · B anonymizations in float32 inside the train state (so in every checkpoint too):
6 MB for R = 8 at q = 1, B = 8 on 64-px scenes, but about 0.7 GB at B = 32 on 336-px images.
The guide handed to the guided estimator's ``ask`` (``anonymax.optim.guided``,
``source="guide"``) at θ_k is

  g̃_k = ∇_θ mean_b s_φ(f_A(x_b; θ)) |_{θ_k},

one backward pass through the anonymizer, like the privacy gradient. It starts from a random
s_φ and earns its weight: the estimator measures how much of the SPSA pairs' signal lies in the
guide's span and moves α, the share of full-space pairs, accordingly.

The surrogate's state rides in the train state's ``zo_state`` (`WithSurrogate`: the estimator's
state and φ with its optimizer state), so it is checkpointed and resumed with the rest; runs
without it keep the estimator's state alone (`NO_SURROGATE`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from anonymax.types import STATUS_FAILED, STATUS_OK

DEFAULTS = {
  "width": 16, "learning_rate": 1e-3, "diff_weight": 1.0, "level_weight": 1.0, "replay": 0,
  "fit_steps": 1,
}  # fmt: skip
# The surrogate's initial φ comes from fold_in(key(seed), _KEY_SALT): the run's other keys (split
# from key(seed) into three) stay what they are without a surrogate.
_KEY_SALT = 0x5A11


class LossSurrogate(nn.Module):
  """s_φ(x): three strided 3×3 convolutions (GELU), a global mean, a linear read-out.

  Clips [B, T, H, W, C] are scored frame by frame and averaged over T.
  """

  width: int = 16

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    frames = x.shape[1] if x.ndim == 5 else None
    if frames is not None:
      x = x.reshape((-1, *x.shape[2:]))
    h = x
    for features in (self.width, 2 * self.width, 2 * self.width):
      h = nn.gelu(nn.Conv(features, (3, 3), strides=(2, 2))(h))
    out = nn.Dense(1)(h.mean(axis=(1, 2)))[:, 0]
    return out if frames is None else out.reshape((-1, frames)).mean(axis=1)


class Replay(NamedTuple):
  """The anonymizations and answers of the R steps before this one, newest first."""

  visuals: Any  # [R, N, ...] float32: each step's N = S·B perturbed anonymizations.
  losses: Any  # [R, N] float32: their per-sample losses.
  status: Any  # [R, N] int32: their statuses (an empty slot is not STATUS_OK: it weighs 0).
  c: Any  # [R] float32: each step's perturbation size c_k.


class SurrogateState(NamedTuple):
  params: Any  # φ
  opt_state: Any  # Adam's state over φ
  replay: Replay | None = None  # None without a replay memory


class WithSurrogate(NamedTuple):
  """``zo_state`` of a run with an online surrogate."""

  estimator: Any  # the zeroth-order estimator's own state
  surrogate: SurrogateState


@dataclasses.dataclass(frozen=True)
class NoSurrogate:
  """The interface of `OnlineSurrogate` for runs without one: ``zo_state`` is the estimator's."""

  enabled = False

  def init(self, seed: int, estimator_state, sample):
    del seed, sample
    return estimator_state

  def estimator_state(self, zo_state):
    return zo_state

  def with_estimator_state(self, zo_state, estimator_state):
    del zo_state
    return estimator_state

  def guide(self, anonymizer, params, zo_state, x):
    del anonymizer, params, zo_state, x
    return None

  def fit(self, zo_state, anonymized, sample_losses, status, num_sets, c_k):
    del anonymized, sample_losses, status, num_sets, c_k
    return zo_state, None


NO_SURROGATE = NoSurrogate()


@dataclasses.dataclass(frozen=True)
class OnlineSurrogate:
  """s_φ, its optimizer and the loss weights (the module docstring)."""

  model: LossSurrogate
  tx: optax.GradientTransformation
  level_weight: float = 1.0
  diff_weight: float = 1.0
  replay: int = 0  # R: past steps kept for the fit (0: this step's pairs only)
  step_size: int = 0  # N = S·B, the anonymizations of one step (needed when replay > 0)
  fit_steps: int = 1  # Adam steps on φ per training step
  enabled = True

  def __post_init__(self):
    if self.replay < 0 or self.fit_steps < 1 or (self.replay and self.step_size < 1):
      raise ValueError(
        f"OnlineSurrogate: replay ≥ 0, fit_steps ≥ 1 and, with a replay memory, step_size ≥ 1;"
        f" got replay={self.replay}, fit_steps={self.fit_steps}, step_size={self.step_size}"
      )

  def init(self, seed: int, estimator_state, sample) -> WithSurrogate:
    """The estimator's state with a fresh φ (initialised on one visual `sample` [1, ...]) and
    an empty replay memory."""
    key = jax.random.fold_in(jax.random.key(seed), _KEY_SALT)
    params = self.model.init(key, sample)["params"]
    replay = None
    if self.replay:
      r, n = self.replay, self.step_size
      replay = Replay(
        jnp.zeros((r, n, *sample.shape[1:]), jnp.float32),
        jnp.zeros((r, n), jnp.float32),
        jnp.full((r, n), STATUS_FAILED, jnp.int32),
        jnp.ones((r,), jnp.float32),
      )
    return WithSurrogate(estimator_state, SurrogateState(params, self.tx.init(params), replay))

  def estimator_state(self, zo_state: WithSurrogate):
    return zo_state.estimator

  def with_estimator_state(self, zo_state: WithSurrogate, estimator_state) -> WithSurrogate:
    return zo_state._replace(estimator=estimator_state)

  def predict(self, phi, x: jax.Array) -> jax.Array:
    """s_φ(x) per visual."""
    return self.model.apply({"params": phi}, x)

  def guide(self, anonymizer, params, zo_state: WithSurrogate, x: jax.Array):
    """g̃ = ∇_θ mean_b s_φ(f_A(x_b; θ)), a tree like θ (float visuals `x` in [0, 1])."""
    phi = zo_state.surrogate.params

    def predicted(theta):
      return jnp.mean(self.predict(phi, anonymizer.apply({"params": theta}, x)))

    return jax.grad(predicted)(params)

  def loss(self, phi, anonymized, sample_losses, status, num_sets: int, c_k) -> jax.Array:
    """ℓ(φ) of the module docstring on one step's [S·B, ...] anonymizations (set-major,
    pluses then minuses) and their per-sample losses and statuses [S·B], or on T steps of them
    stacked ([T, S·B, ...], [T, S·B], c_k [T]): the means then pool every step's terms."""
    lead = sample_losses.shape[:-1]  # () for one step, (T,) for T stacked
    q = num_sets // 2
    batch = sample_losses.shape[-1] // num_sets
    shape = (*lead, 2, q, batch)
    ok = status.reshape(shape) == STATUS_OK
    target = jnp.where(ok, sample_losses.reshape(shape), 0.0)
    visuals = anonymized.reshape((-1, *anonymized.shape[len(lead) + 1 :]))
    pred = self.predict(phi, visuals).reshape(shape)
    scale = 2.0 * jnp.asarray(c_k, jnp.float32)
    if lead:  # each stacked step's own c, broadcast over its pairs
      scale = scale.reshape((*lead, 1, 1))
    plus, minus = (..., 0, slice(None), slice(None)), (..., 1, slice(None), slice(None))
    diff = ((pred[plus] - pred[minus]) - (target[plus] - target[minus])) / scale
    pair = ok[plus] & ok[minus]
    diff_term = jnp.sum(jnp.where(pair, diff**2, 0.0)) / jnp.maximum(jnp.sum(pair), 1)
    level_term = jnp.sum(jnp.where(ok, (pred - target) ** 2, 0.0)) / jnp.maximum(jnp.sum(ok), 1)
    return self.diff_weight * diff_term + self.level_weight * level_term

  def fit(self, zo_state: WithSurrogate, anonymized, sample_losses, status, num_sets, c_k):
    """`fit_steps` Adam steps of φ on ℓ over this step and the replay memory, which then takes
    this step in; returns (the new zo_state, ℓ before the first step)."""
    s = zo_state.surrogate
    x = jax.lax.stop_gradient(anonymized.astype(jnp.float32))
    losses, c = sample_losses.astype(jnp.float32), c_k
    replay = s.replay
    if replay is not None:  # this step stacked before the memory's R: [R + 1, S·B, ...]
      x, losses = x[None], losses[None]
      status = jnp.asarray(status, jnp.int32)[None]
      c = jnp.reshape(jnp.asarray(c_k, jnp.float32), (1,))
      if replay.visuals.shape[1:] != x.shape[1:]:
        raise ValueError(
          f"OnlineSurrogate.fit: the replay memory holds steps of {replay.visuals.shape[1:]}"
          f" anonymizations, this step has {x.shape[1:]} (step_size = 2·num_samples·batch_size)"
        )
      x = jnp.concatenate([x, replay.visuals])
      losses = jnp.concatenate([losses, replay.losses])
      status = jnp.concatenate([status, replay.status])
      c = jnp.concatenate([c, replay.c])
      # Newest first; the oldest step falls out.
      replay = Replay(x[:-1], losses[:-1], status[:-1], c[:-1])

    def adam_step(carry, _):
      params, opt_state = carry
      value, grads = jax.value_and_grad(self.loss)(params, x, losses, status, num_sets, c)
      updates, opt_state = self.tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), value

    if self.fit_steps == 1:  # no loop: the same program, to the bit, as before fit_steps existed
      (params, opt_state), value = adam_step((s.params, s.opt_state), None)
    else:
      (params, opt_state), values = jax.lax.scan(
        adam_step, (s.params, s.opt_state), None, length=self.fit_steps
      )
      value = values[0]
    return zo_state._replace(surrogate=SurrogateState(params, opt_state, replay)), value


def from_config(config) -> NoSurrogate | OnlineSurrogate:
  """The run's surrogate: an `OnlineSurrogate` for the guided estimator with ``source="guide"``
  (settings from ``config.online_surrogate``, defaults `DEFAULTS`), else `NO_SURROGATE`."""
  optim_config = config.optim
  guided = optim_config.get("guided") or {}
  if optim_config.get("zo_method") != "guided" or guided.get("source", "history") != "guide":
    return NO_SURROGATE
  given = dict(config.get("online_surrogate") or {})
  unknown = sorted(set(given) - set(DEFAULTS))
  if unknown:
    raise ValueError(
      f"config.online_surrogate: unknown field(s) {', '.join(unknown)}; known: "
      f"{', '.join(DEFAULTS)}"
    )
  settings = DEFAULTS | given
  if int(settings["width"]) < 1 or not float(settings["learning_rate"]) > 0:
    raise ValueError(f"config.online_surrogate: width ≥ 1 and learning_rate > 0, got {settings}")
  for name in ("level_weight", "diff_weight", "replay"):
    if float(settings[name]) < 0:
      raise ValueError(f"config.online_surrogate.{name} must be ≥ 0, got {settings}")
  if int(settings["fit_steps"]) < 1:
    raise ValueError(f"config.online_surrogate.fit_steps must be ≥ 1, got {settings}")
  return OnlineSurrogate(
    LossSurrogate(width=int(settings["width"])),
    optax.adam(float(settings["learning_rate"])),
    float(settings["level_weight"]),
    float(settings["diff_weight"]),
    replay=int(settings["replay"]),
    step_size=2 * int(optim_config.num_samples) * int(config.batch_size),
    fit_steps=int(settings["fit_steps"]),
  )
