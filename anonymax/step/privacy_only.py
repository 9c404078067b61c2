"""The step of a privacy-only anonymizer (utility weight 0): no black box, exact gradients only.

With λ_utility = 0 every scalarization's direction is the privacy gradient alone (weighted sum:
d_k = ρh_k; augmented Tchebycheff: i* = privacy and d_k = (1 + σ)ρh_k, the same direction),
so no oracle call is needed:

  d_k = precondition(ρ h_k),   θ_{k+1} = θ_k − a_k d_k,

with the run's preconditioner (Adam's scaling makes the constant factor irrelevant) and gains.
The reviewer alternates as in the full step. It trains the reference row that shows what
privacy costs when utility is ignored.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from anonymax.step import parts
from anonymax.step.state import TrainState


def make_privacy_only_step(anonymizer, reviewer, optimizer, reviewer_tx, *, privacy_loss: str):
  """`step(state, u_visuals, u_ids, p_visuals, p_labels, *, next_visuals=None)` → (state, metrics).

  The utility batch is accepted (the loop hands every step both batches) and not used.
  """

  @jax.jit
  def update(state: TrainState, p_visuals, p_labels):
    theta, s = state.params, state.opt_state
    x_p = parts.to_unit(p_visuals)
    l_privacy, h = parts.privacy_value_and_grad(
      anonymizer, reviewer, privacy_loss, theta, state.reviewer_vars, x_p, p_labels
    )
    flat_theta, unflatten = ravel_pytree(theta)
    h = ravel_pytree(h)[0] * optimizer.privacy_grad_scale
    d_k, precondition_state = optimizer.precondition.update(h, s.precondition, flat_theta)
    updates = -optimizer.learning_rate(s) * d_k
    new_s = optimizer.next_state(s, s.utility, s.scalarization, precondition_state)
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
      "l_privacy": l_privacy,
      "reviewer_bce": bce,
      "privacy_grad_norm": optax.tree.norm(h),
      "update_norm": optax.tree.norm(updates),
      "pairs_scored": jnp.zeros((), jnp.int32),
    }
    return new_state, metrics

  def step(state, u_visuals, u_ids, p_visuals, p_labels, *, next_visuals=None):
    del u_visuals, u_ids, next_visuals
    return update(state, p_visuals, p_labels)

  step.update = update
  return step
