"""The paper's training step, as written: Eq. 7, then Eqs. 8–10, 11 and 12, in one function.

This is the step to read. It is one jitted program whose oracle call waits for the answer, so
the devices idle for the oracle's whole latency; `anonymax.step.pipelined` computes exactly the
same (tested bit for bit on the CPU) with the waiting hidden, and is what training runs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from anonymax.online_surrogate import NO_SURROGATE
from anonymax.optim.guided import GuidedAsked
from anonymax.oracles.bridge import OracleBridge
from anonymax.step import parts
from anonymax.step.state import TrainState, flat_parameters, step_key


def make_reference_step(
  anonymizer,
  reviewer,
  optimizer,
  reviewer_tx,
  bridge: OracleBridge,
  *,
  privacy_loss: str,
  surrogate=NO_SURROGATE,
):
  """Returns the jitted `reference_step(state, u_visuals, u_ids, p_visuals, p_labels)`.

  Args:
    anonymizer, reviewer: the modules f_A and f_P.
    optimizer: the `anonymax.optim.MultiObjectiveOptimizer` of the run (its `estimator` asks
      and tells the zeroth-order estimate).
    reviewer_tx: the reviewer's optax optimizer.
    bridge: the black box, called from inside the program.
    privacy_loss: the kind of L_Privacy (`anonymax.losses.PRIVACY_LOSSES`).
    surrogate: the online surrogate of the black box whose gradient guides the estimator
      (`anonymax.online_surrogate`), or none.
  """
  estimator, opt = optimizer.estimator, optimizer

  @jax.jit
  def reference_step(state: TrainState, u_visuals, u_ids, p_visuals, p_labels):
    """Step k: (state k, a utility batch, a privacy batch) → (state k + 1, metrics)."""
    theta, s = state.params, state.opt_state
    x_u, x_p = parts.to_unit(u_visuals), parts.to_unit(p_visuals)

    # Eq. 7, SPSA: Δ_k from the step's key and the 2q anonymizers θ_k ± c_k Δ_k; one oracle call
    # for their 2qB outputs (never a raw visual); ĝ_k = (L⁺ − L⁻)/(2c_k)·Δ_k⁻¹ over the pairs it
    # scored, and L_MLLM(θ_k) ≈ the mean of the perturbed losses (no third call).
    # With an online surrogate s_φ of the black box, its gradient through f_A guides Δ_k.
    c_k = opt.perturbation_scale(s)
    guide = surrogate.guide(anonymizer, theta, state.zo_state, x_u)
    param_sets, asked = estimator.ask(
      step_key(state.rng, state.step),
      theta,
      surrogate.estimator_state(state.zo_state),
      scale=c_k,
      guide=guide,
    )
    anonymized = parts.anonymize_all(anonymizer, param_sets, x_u)
    num_sets = estimator.num_evaluations
    sample_losses, status = bridge(anonymized, jnp.tile(u_ids, num_sets))
    answers = parts.per_set_losses(sample_losses, status, num_sets, antithetic=estimator.antithetic)
    g_hat, estimator_state = estimator.tell(
      surrogate.estimator_state(state.zo_state), answers.losses, asked
    )
    # s_φ learns from the answers just paid for (no extra call).
    zo_state, surrogate_fit = surrogate.fit(
      surrogate.with_estimator_state(state.zo_state, estimator_state),
      anonymized, sample_losses, status, num_sets, c_k,
    )  # fmt: skip

    # L_Privacy(θ_k) and h_k, its exact gradient through f_P ∘ f_A, scaled to meet ĝ_k's size.
    l_privacy, h = parts.privacy_value_and_grad(
      anonymizer, reviewer, privacy_loss, theta, state.reviewer_vars, x_p, p_labels
    )
    g_hat, h = flat_parameters(g_hat), flat_parameters(h) * opt.privacy_grad_scale
    flat_theta = flat_parameters(theta)
    losses = (answers.l_mllm, l_privacy)

    # Eqs. 8–10: the critical history turns ĝ_k into the utility direction (1 + I_k)·g̃_k.
    g_utility, utility_state = opt.utility.update(g_hat, s.utility, flat_theta)
    # Eq. 11: the (augmented) Tchebycheff direction d_k of (1 + I_k)·g̃_k and h_k.
    d_k, scalarization_state = opt.scalarization.update(
      (g_utility, h), s.scalarization, flat_theta, losses=losses
    )
    # Not in the paper, optional (config.optim.precondition): Adam's moment scaling of d_k.
    d_k, precondition_state = opt.precondition.update(d_k, s.precondition, flat_theta)
    # Eq. 12: θ_{k+1} = θ_k − a_k·d_k.
    updates = -opt.learning_rate(s) * d_k
    new_theta = optax.apply_updates(flat_theta, updates)
    new_s = opt.next_state(s, utility_state, scalarization_state, precondition_state)

    # The reviewer f_P takes one BCE step on f_A(x; θ_k) (the adversarial alternation).
    reviewer_vars, reviewer_opt_state, bce = parts.reviewer_update(
      anonymizer, reviewer, reviewer_tx, theta, state.reviewer_vars, state.reviewer_opt_state,
      x_p, p_labels,
    )  # fmt: skip

    # A step with no usable answer leaves the anonymizer and its optimizer as they were.
    _, unflatten = ravel_pytree(theta)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(answers.any_usable, a, b), new, old)
    new_state = state.replace(
      step=state.step + 1,
      params=unflatten(keep(new_theta, flat_theta)),
      opt_state=keep(new_s, s),
      zo_state=keep(zo_state, state.zo_state),
      reviewer_vars=reviewer_vars,
      reviewer_opt_state=reviewer_opt_state,
      oracle_samples=state.oracle_samples + answers.sent,
      skipped=state.skipped + (answers.sent - answers.scored),
    )
    updates = jnp.where(answers.any_usable, updates, 0.0)
    metrics = parts.step_metrics(
      answers, l_privacy, bce, c_k, g_hat, h, updates, new_state.opt_state
    )
    if surrogate_fit is not None:
      metrics["surrogate_fit"] = surrogate_fit
    if isinstance(asked, GuidedAsked):  # how much the guided estimator trusts its subspace
      metrics["guided_alpha"] = asked.alpha
      metrics["guided_agreement"] = asked.agreement  # ρ̂, the measured share in the subspace
    return new_state, metrics

  return reference_step
