"""The step of a surrogate-model baseline: exact gradients through a white-box utility model.

The anonymizer (the U-Net, or BDQ's encoder) is trained on the run's two objectives with the
black box replaced by the surrogate s_φ of `anonymax.surrogate_utility`, so both gradients are
exact and no oracle is called:

  L_utility(θ) = z*_utility + mean_b [ℓ_s(f_A(x_b; θ), q_b) − ℓ_s(x_b, q_b)],
  g_k = ∇_θ L_utility,   h_k = ∇_θ L_Privacy   (exact, through f_P ∘ f_A),
  d_k = precondition(scalarization((g_k, ρ h_k), losses=(L_utility, L_Privacy))),
  θ_{k+1} = θ_k − a_k d_k,

with the run's scalarization, preconditioner and gains. The surrogate's excess loss over raw
inputs is placed at the black box's ideal z*_utility (its raw-input loss), so the Tchebycheff
selection compares the same quantity as in the method's step; the gradient is ∇ℓ_s unchanged.
The critical history is not used: it stabilises zeroth-order estimates, and g_k is exact.
The reviewer alternates as in the full step.

With `ExactUtility` in s_φ's place (`config.objective = "exact_utility"`), ℓ_s is the reference
black box's own loss, so g_k is the true utility gradient that the method's step estimates:
a diagnostic upper bound (no real black box has a gradient), not a baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from anonymax.step import parts
from anonymax.step.state import TrainState


class ExactUtility(NamedTuple):
  """The reference black box's differentiable loss (`ReferenceOracle.differentiable_nll` of the
  utility split's queries) in the surrogate's place: `losses(x, rows)` = L(x_i, q_rows_i)."""

  nll: Callable

  def losses(self, visuals: jax.Array, example_ids: jax.Array) -> jax.Array:
    return self.nll(visuals, example_ids)


def make_white_box_step(
  anonymizer,
  reviewer,
  optimizer,
  reviewer_tx,
  surrogate,
  *,
  privacy_loss: str,
  utility_ideal: float,
):
  """`step(state, u_visuals, u_ids, p_visuals, p_labels, *, next_visuals=None)` → (state, metrics).

  Args:
    anonymizer, reviewer: the modules f_A and f_P.
    optimizer: the run's `anonymax.optim.MultiObjectiveOptimizer` (its estimator is not used).
    reviewer_tx: the reviewer's optax optimizer.
    surrogate: the fitted `anonymax.surrogate_utility.SurrogateUtility` of the utility split.
    privacy_loss: the kind of L_Privacy (`anonymax.losses.PRIVACY_LOSSES`).
    utility_ideal: z*_utility, the black box's loss on raw inputs (the scalarization's ideal).
  """
  opt = optimizer

  @jax.jit
  def update(state: TrainState, u_visuals, u_ids, p_visuals, p_labels):
    theta, s = state.params, state.opt_state
    x_u, x_p = parts.to_unit(u_visuals), parts.to_unit(p_visuals)
    raw_loss = jnp.mean(surrogate.losses(x_u, u_ids))

    def surrogate_loss(params):
      return jnp.mean(surrogate.losses(anonymizer.apply({"params": params}, x_u), u_ids))

    l_surrogate, g = jax.value_and_grad(surrogate_loss)(theta)
    l_privacy, h = parts.privacy_value_and_grad(
      anonymizer, reviewer, privacy_loss, theta, state.reviewer_vars, x_p, p_labels
    )
    flat_theta, unflatten = ravel_pytree(theta)
    g = ravel_pytree(g)[0]
    h = ravel_pytree(h)[0] * opt.privacy_grad_scale
    l_utility = utility_ideal + (l_surrogate - raw_loss)
    d_k, scalarization_state = opt.scalarization.update(
      (g, h), s.scalarization, flat_theta, losses=(l_utility, l_privacy)
    )
    d_k, precondition_state = opt.precondition.update(d_k, s.precondition, flat_theta)
    updates = -opt.learning_rate(s) * d_k
    new_s = opt.next_state(s, s.utility, scalarization_state, precondition_state)
    reviewer_vars, reviewer_opt_state, bce = parts.reviewer_update(
      anonymizer, reviewer, reviewer_tx, theta, state.reviewer_vars, state.reviewer_opt_state,
      x_p, p_labels,
    )  # fmt: skip
    new_state = state.replace(
      step=state.step + 1,
      params=unflatten(optax.apply_updates(flat_theta, updates)),
      opt_state=new_s,
      reviewer_vars=reviewer_vars,
      reviewer_opt_state=reviewer_opt_state,
    )
    metrics = {
      "l_surrogate": l_surrogate,
      "l_surrogate_raw": raw_loss,
      "l_privacy": l_privacy,
      "reviewer_bce": bce,
      "utility_grad_norm": optax.tree.norm(g),
      "privacy_grad_norm": optax.tree.norm(h),
      "update_norm": optax.tree.norm(updates),
      "selected": new_s.selected,
      "pairs_scored": jnp.zeros((), jnp.int32),
    }
    return new_state, metrics

  def step(state, u_visuals, u_ids, p_visuals, p_labels, *, next_visuals=None):
    del next_visuals  # nothing to prepare: no oracle call to overlap
    return update(state, u_visuals, u_ids, p_visuals, p_labels)

  step.update = update
  return step
